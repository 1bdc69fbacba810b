"""Batch-1 inference latency of the exported policy on one CPU core, ONNX Runtime vs PyTorch, against 20 Hz.

Builds the default policy (``configs/policy/conv.yaml``) for each family's image size and
dimensions, perturbs its adapted parameters (as a deploy would), exports it with
``vision_gmps.export``, checks the ONNX actions against PyTorch's on random inputs, and times
both runtimes in interleaved calls on one pinned core. Writes a markdown table to stdout.

    OMP_NUM_THREADS=1 python benchmarks/export_latency.py [--runs 500] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from vision_gmps.config import load_config
from vision_gmps.export import export_onnx, latency, max_action_difference
from vision_gmps.policy import build_policy

SHAPES = {  # family: (image HxW, proprio_dim, action_dim), as the families build them
    "point": ((32, 32), 2, 2),
    "push": ((64, 64), 5, 3),
    "door": ((64, 64), 5, 4),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--checkpoint", help="also time this checkpoint's policy")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.manual_seed(0)
    cfg = load_config(["policy=conv"])
    policies = {}
    for family, ((h, w), p, a) in SHAPES.items():
        policies[f"{family} {h}x{w}"] = build_policy((h, w, 3), p, a, cfg.policy)
    if args.checkpoint:
        from vision_gmps.checkpoint import load_checkpoint, policy_from_checkpoint

        policies[f"checkpoint {Path(args.checkpoint).name}"], _ = policy_from_checkpoint(load_checkpoint(args.checkpoint))
    print("| policy | parameters | max abs diff vs PyTorch | ONNX Runtime p50 / p99 (ms) | PyTorch p50 / p99 (ms) "
          "| speed-up (p50) | budget at 20 Hz |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, policy in policies.items():
            adapted = {n: policy.params()[n].detach() + 0.05 * torch.randn_like(policy.params()[n]) for n in policy.adapted_names}
            path = export_onnx(policy, adapted, Path(tmp) / "p.onnx")
            diff = max_action_difference(path, policy, adapted, n=64)
            t = latency(path, policy, adapted, runs=args.runs)
            count = sum(v.numel() for v in policy.parameters())
            print(f"| {name} | {count} | {diff:.1e} | {t['onnxruntime_p50_ms']:.3f} / {t['onnxruntime_p99_ms']:.3f} "
                  f"| {t['pytorch_p50_ms']:.3f} / {t['pytorch_p99_ms']:.3f} "
                  f"| {t['pytorch_p50_ms'] / t['onnxruntime_p50_ms']:.1f}x | {t['budget_ms']:.0f} ms |")


if __name__ == "__main__":
    main()
