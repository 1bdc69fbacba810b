"""Meta-training episodes GMPS and MAML need to reach a held-out post-adaptation success threshold.

Both algorithms run on the same family, task splits, seeds, policy and inner loop;
every ``--eval-every`` iterations the current meta-parameters are adapted on the
held-out tasks (one policy-gradient step, reward only) and evaluated. The table
reports, per algorithm, the meta-training environment episodes at which the
post-adaptation success first reached ``--threshold``, and the ratio MAML : GMPS.

    python benchmarks/meta_efficiency.py --iterations 40 --threshold 0.6
    python benchmarks/meta_efficiency.py --table-only     # rebuild the table from finished runs

Prints a Markdown table and writes it (with the raw curves) to --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vision_gmps.config import load_config
from vision_gmps.run_logging import RunLogger
from vision_gmps.trainer import MetaTrainer


def train_run(algo: str, args: argparse.Namespace, out: Path) -> None:
    overrides = [
        f"algo={algo}",
        f"seed={args.seed}",
        f"train.iterations={args.iterations}",
        f"train.eval_every={args.eval_every}",
        f"train.eval_tasks={args.eval_tasks}",
        f"train.checkpoint_every={args.iterations}",
        "wandb.mode=disabled",
        f"run_dir={out / algo}",
        *args.overrides,
    ]
    cfg = load_config(overrides)
    trainer = MetaTrainer(cfg, out / algo)
    trainer.run(RunLogger(out / algo, cfg, "train"))
    trainer.sampler.close()


def summarise(algo: str, out: Path, threshold: float) -> dict:
    """Read a run's metrics back: the table can be rebuilt from finished runs (--table-only)."""
    metrics = [json.loads(line) for line in (out / algo / "train_metrics.jsonl").read_text().splitlines()]
    curve = [
        {"iteration": m["step"], "env_episodes": m["env_episodes"], "success_pre": m["eval/success_pre"],
         "success_post": m["eval/success_post"]}
        for m in metrics
        if "eval/success_post" in m
    ]
    reached = next((c["env_episodes"] for c in curve if c["success_post"] >= threshold), None)
    return {"algo": algo, "curve": curve, "episodes_to_threshold": reached, "iterations": metrics[-1]["step"],
            "final_post": curve[-1]["success_post"], "best_post": max(c["success_post"] for c in curve),
            "total_episodes": metrics[-1]["env_episodes"],
            "train_s": sum(m["time/iteration_s"] for m in metrics)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-tasks", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_meta_efficiency"))
    parser.add_argument("--algos", nargs="+", default=["gmps", "maml"], choices=["gmps", "maml"])
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from finished runs in --out")
    parser.add_argument("overrides", nargs="*", help="hydra overrides applied to both runs, e.g. env=point")
    args = parser.parse_args()
    if not args.table_only:
        for algo in args.algos:
            train_run(algo, args, args.out)
    results = [summarise(algo, args.out, args.threshold) for algo in ("gmps", "maml")]
    gmps, maml = results
    lines = [
        f"threshold: held-out success after 1 PG step >= {args.threshold} ({args.eval_tasks} tasks); "
        f"overrides: {' '.join(args.overrides) or 'none'}",
        "",
        "| algo | iterations | episodes to threshold | best post-adaptation success | final | total episodes | training time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['algo']} | {r['iterations']} | {r['episodes_to_threshold'] or 'not reached'} | "
                     f"{r['best_post']:.2f} | {r['final_post']:.2f} | {r['total_episodes']} | {r['train_s']:.0f} |")
    if gmps["episodes_to_threshold"] and maml["episodes_to_threshold"]:
        lines.append(f"\nMAML : GMPS episodes ratio = {maml['episodes_to_threshold'] / gmps['episodes_to_threshold']:.1f}")
    elif gmps["episodes_to_threshold"]:
        lines.append(f"\nMAML did not reach the threshold within {maml['total_episodes']} episodes; "
                     f"GMPS reached it in {gmps['episodes_to_threshold']} "
                     f"(ratio > {maml['total_episodes'] / gmps['episodes_to_threshold']:.1f})")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
