"""Export an (adapted) policy to ONNX for control-rate inference, check it, time it.

The exported graph is the deterministic action: the policy mean at the given parameters
(the meta-trained ones with a task's adapted values substituted), from a uint8 image
[B, H, W, 3] and float32 proprio [B, P] to float32 actions [B, A], batch size dynamic.
We use torch's TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs
onnxscript, and this small conv/MLP graph needs nothing it adds.

    vgmps export CHECKPOINT [--params run/adapted_params.pt --task 0] [--output policy.onnx] [--bench]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vision_gmps.policy import ConvGaussianPolicy, Params

CONTROL_HZ = 20.0


class MeanPolicy(nn.Module):
    """The policy with ``params`` baked in, as a plain module whose forward ONNX can trace."""

    def __init__(self, policy: ConvGaussianPolicy, params: Params | None = None) -> None:
        super().__init__()
        self.policy = copy.deepcopy(policy).float().eval()
        if params:
            with torch.no_grad():
                own = dict(self.policy.named_parameters())
                for name, value in params.items():
                    own[name].copy_(value.detach().to(own[name].dtype))

    def forward(self, image: Tensor, proprio: Tensor) -> Tensor:
        # ConvGaussianPolicy.mean, with the modules called directly: the tracer cannot follow
        # torch.func.functional_call. The export test checks the two agree within 1e-5.
        p = self.policy
        x = image.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        features = p.keypoints(p.encoder(x))
        bias = p.bias_transform.expand(features.shape[0], -1)
        mean = p.head(torch.cat([features, proprio.float(), bias], dim=-1))
        return mean + p.action_offset if p.has_offset else mean


def export_onnx(policy: ConvGaussianPolicy, params: Params | None, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = MeanPolicy(policy, params)
    h, w, c = policy.spec.image_shape
    example = (torch.zeros(1, h, w, c, dtype=torch.uint8), torch.zeros(1, policy.spec.proprio_dim))
    tmp = path.with_name(path.name + ".tmp")
    torch.onnx.export(module, example, str(tmp), dynamo=False, input_names=["image", "proprio"], output_names=["action"],
                      dynamic_axes={"image": {0: "batch"}, "proprio": {0: "batch"}, "action": {0: "batch"}})
    os.replace(tmp, path)
    return path


def onnx_session(path: str | Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def random_inputs(policy: ConvGaussianPolicy, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w, c = policy.spec.image_shape
    return (rng.integers(0, 256, (n, h, w, c), dtype=np.uint8),
            rng.standard_normal((n, policy.spec.proprio_dim)).astype(np.float32))


def max_action_difference(path: str | Path, policy: ConvGaussianPolicy, params: Params | None, n: int = 32,
                          seed: int = 0) -> float:
    """Largest |ONNX - PyTorch| action over ``n`` random inputs (PyTorch at the policy's own dtype)."""
    image, proprio = random_inputs(policy, n, seed)
    (onnx_out,) = onnx_session(path).run(None, {"image": image, "proprio": proprio})
    with torch.no_grad():
        full = {**policy.params(), **(params or {})}
        dtype = policy.log_std.dtype
        torch_out = policy.mean(torch.from_numpy(image), torch.from_numpy(proprio).to(dtype), full).double().numpy()
    return float(np.abs(onnx_out.astype(np.float64) - torch_out).max())


def latency(path: str | Path, policy: ConvGaussianPolicy, params: Params | None, runs: int = 300) -> dict[str, float]:
    """Batch-1 latency on one CPU core, ONNX Runtime and PyTorch, in milliseconds (median and 99th percentile)."""
    image, proprio = random_inputs(policy, 1)
    session = onnx_session(path, threads=1)
    module = MeanPolicy(policy, params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timings: dict[str, list[float]] = {"onnxruntime": [], "pytorch": []}
    try:
        ti, tp = torch.from_numpy(image), torch.from_numpy(proprio)
        for k in range(runs + 20):  # the first 20 are warm-up
            t0 = time.perf_counter()
            session.run(None, {"image": image, "proprio": proprio})
            t1 = time.perf_counter()
            with torch.no_grad():
                module(ti, tp)
            t2 = time.perf_counter()
            if k >= 20:
                timings["onnxruntime"].append(1000 * (t1 - t0))
                timings["pytorch"].append(1000 * (t2 - t1))
    finally:
        torch.set_num_threads(threads)
    out = {"budget_ms": 1000.0 / CONTROL_HZ}
    for name, values in timings.items():
        out[f"{name}_p50_ms"] = float(np.percentile(values, 50))
        out[f"{name}_p99_ms"] = float(np.percentile(values, 99))
    return out


def export_main(argv: list[str]) -> int:
    from vision_gmps.checkpoint import CheckpointError, load_checkpoint, policy_from_checkpoint

    p = argparse.ArgumentParser(prog="vgmps export", description="export a policy (adapted or not) to ONNX")
    p.add_argument("checkpoint")
    p.add_argument("--params", help="adapted_params.pt written by vgmps deploy")
    p.add_argument("--task", type=int, default=0, help="which task's adapted parameters (default 0)")
    p.add_argument("--output", default="policy.onnx")
    p.add_argument("--bench", action="store_true", help="check against PyTorch and time batch-1 inference on one core")
    try:
        args = p.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        policy, _ = policy_from_checkpoint(load_checkpoint(args.checkpoint))
        params = None
        if args.params:
            saved = torch.load(args.params, map_location="cpu", weights_only=True)
            prefix = f"task{args.task}/"
            params = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
            if not params:
                raise CheckpointError(f"{args.params} has no parameters for task {args.task}")
    except (CheckpointError, OSError, RuntimeError) as err:
        print(f"vgmps export: {err}", file=sys.stderr)
        return 2
    path = export_onnx(policy, params, args.output)
    print(f"wrote {path}")
    if args.bench:
        print(f"max |onnx - pytorch| action on 32 random inputs: {max_action_difference(path, policy, params):.2e}")
        for k, v in latency(path, policy, params).items():
            print(f"{k}: {v:.3f}")
    return 0
