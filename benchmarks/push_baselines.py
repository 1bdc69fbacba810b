"""GMPS against its baselines on ``push`` with images: held-out success before and after 1-3 PG steps.

Variants, all on the same tasks, seeds, policy, inner loop and budget (``+experiment=push_cpu``
unless overridden):

* ``gmps``            imitation outer loop on scripted-expert episodes plus DAgger relabels
* ``gmps_no_dagger``  the same without DAgger (what the reference code actually ran)
* ``maml``            policy-gradient outer loop on the adapted policies' own rollouts
* ``bc``              multi-task behaviour cloning, then the same PG steps at test time (fixed step size)

Each variant meta-trains for ``--iterations`` (evaluating on held-out tasks every
``train.eval_every``), then its last checkpoint is adapted on ``--tasks`` held-out tasks for
``--steps`` steps. The table gives the meta-training environment episodes each used and the
episodes GMPS needed to reach MAML's final post-adaptation success (the issue's 10x claim).

    python benchmarks/push_baselines.py                        # all four, ~35 min on 2 cores
    python benchmarks/push_baselines.py --variants maml bc -- torch_threads=1   # some, with overrides after --
    python benchmarks/push_baselines.py --adapt-only           # only the final adaptation, on finished runs
    python benchmarks/push_baselines.py --table-only           # rebuild the table from finished runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import open_dict

from vision_gmps.adapt import adapt
from vision_gmps.checkpoint import load_checkpoint
from vision_gmps.config import load_config
from vision_gmps.train import train

VARIANTS: dict[str, list[str]] = {
    "gmps": ["algo=gmps"],
    "gmps_no_dagger": ["algo=gmps", "algo.dagger.enabled=false"],
    "maml": ["algo=maml", "algo.outer_steps=5"],  # MAML's own PPO-style epochs per batch (algo/maml.yaml)
    "bc": ["algo=bc"],
}


def run_variant(name: str, args: argparse.Namespace) -> None:
    out = args.out / name
    overrides = [*VARIANTS[name], "+experiment=push_cpu", f"seed={args.seed}", f"train.iterations={args.iterations}",
                 "wandb.mode=disabled", f"run_dir={out}", *args.overrides]
    cfg = load_config(overrides)
    last = out / "checkpoints" / "last.pt"
    if args.adapt_only and last.is_file():
        env_episodes = int(load_checkpoint(last)["env_episodes"])
    else:
        env_episodes = train(cfg).env_episodes
    adapt_cfg = cfg.copy()
    with open_dict(adapt_cfg):
        adapt_cfg.adapt.checkpoint = str(out / "checkpoints" / "last.pt")
        adapt_cfg.adapt.num_tasks = args.tasks
        adapt_cfg.adapt.steps = args.steps
        # BC has no learned step sizes: it is fine-tuned with the fixed one (algo.inner_lr).
        adapt_cfg.adapt.step_size = "fixed" if name == "bc" else "learned"
        adapt_cfg.run_dir = str(out / "adapt")
    result = next(iter(adapt(adapt_cfg).values()))
    (out / "summary.json").write_text(json.dumps({"env_episodes": env_episodes, "rows": result.rows}))


def summarise(name: str, out: Path) -> dict | None:
    path = out / name / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    metrics = [json.loads(line) for line in (out / name / "train_metrics.jsonl").read_text().splitlines()]
    curve = [(m["env_episodes"], m["eval/success_post"]) for m in metrics if "eval/success_post" in m]
    return {"name": name, **summary, "curve": curve}


def episodes_to_reach(curve: list[tuple[int, float]], level: float) -> int | None:
    return next((episodes for episodes, success in curve if success >= level), None)


def table(results: list[dict], args: argparse.Namespace) -> str:
    steps = len(results[0]["rows"]) - 1
    lines = [
        f"push, {args.tasks} held-out tasks, {args.rollouts} rollouts per adaptation step, seed {args.seed}; "
        f"overrides: {' '.join(args.overrides) or 'none'}",
        "",
        "| variant | meta-training episodes | before | " + " | ".join(f"after {k}" for k in range(1, steps + 1))
        + " | final distance after last step (m) |",
        "|---|---|---|" + "---|" * steps + "---|",
    ]
    for r in results:
        rows = r["rows"]
        lines.append(f"| {r['name']} | {r['env_episodes']} | " + " | ".join(f"{row['success']:.2f}" for row in rows)
                     + f" | {rows[-1].get('final_distance', float('nan')):.3f} |")
    by_name = {r["name"]: r for r in results}
    if "gmps" in by_name and "maml" in by_name:
        maml_final = by_name["maml"]["curve"][-1][1]
        gmps_at = episodes_to_reach(by_name["gmps"]["curve"], maml_final)
        maml_at = episodes_to_reach(by_name["maml"]["curve"], maml_final)
        lines.append("")
        if gmps_at and maml_at:
            lines.append(f"MAML's final held-out post-adaptation success during training ({maml_final:.2f}, "
                         f"`eval/success_post`): GMPS reached it at {gmps_at} episodes, MAML at {maml_at}; "
                         f"ratio MAML : GMPS = {maml_at / gmps_at:.1f}.")
        else:
            lines.append(f"MAML's final training-time post-adaptation success was {maml_final:.2f}; "
                         f"GMPS {'did not reach it' if not gmps_at else f'reached it at {gmps_at} episodes'}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=20, help="held-out tasks in the final adaptation table")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=40, help="informational: set by adapt.rollouts_per_task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_push_baselines"))
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from finished runs in --out")
    parser.add_argument("--adapt-only", action="store_true", help="reuse a variant's finished training run in --out")
    parser.add_argument("overrides", nargs="*", help="hydra overrides applied to every variant")
    args = parser.parse_args()
    if not args.table_only:
        for name in args.variants:
            run_variant(name, args)
    results = [r for r in (summarise(name, args.out) for name in VARIANTS) if r is not None]
    text = table(results, args)
    print(text)
    (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
