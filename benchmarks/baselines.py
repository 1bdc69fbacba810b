"""GMPS against its baselines under the evaluation protocol (``vision_gmps.evaluation``), on push or door.

Variants, all on the same tasks, seeds, policy, inner loop and budget (``+experiment=<family>_cpu``):

* ``gmps_no_dagger``  imitation outer loop on scripted-expert episodes (the main job's algorithm)
* ``gmps``            the same plus DAgger relabels
* ``maml``            policy-gradient outer loop on the adapted policies' own rollouts
* ``bc``              multi-task behaviour cloning, then the same PG steps at test time (fixed step size)

For each variant and training seed: meta-train, then adapt the last checkpoint on ``--tasks``
test-split tasks (``--eval-episodes`` starts each) for ``--steps`` steps, and run the
reward-shuffled control with the same steps. The table gives, per variant, the mean and
standard deviation over seeds of success before and after each step and of the gain, the
control's gain beside it, and one row per seed with 95% intervals (Wilson over episodes; gains:
paired bootstrap over tasks).

    python benchmarks/baselines.py --experiment push_cpu --seeds 0 1 2 -- torch_threads=1
    python benchmarks/baselines.py --experiment door_cpu --variants gmps_no_dagger --seeds 0
    python benchmarks/baselines.py --experiment push_cpu --adapt-only   # re-evaluate finished training runs
    python benchmarks/baselines.py --experiment push_cpu --table-only   # rebuild the table from finished runs

A finished training run can be reused by placing (or linking) it at ``<out>/<variant>/seed<k>``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import open_dict

from vision_gmps.adapt import adapt
from vision_gmps.checkpoint import load_checkpoint
from vision_gmps.checks import check_settings
from vision_gmps.config import load_config
from vision_gmps.evaluation import CONTROL, format_interval, protocol_rows, seed_summary
from vision_gmps.train import train

VARIANTS: dict[str, list[str]] = {
    "gmps_no_dagger": ["algo=gmps", "algo.dagger.enabled=false"],
    "gmps": ["algo=gmps"],
    "maml": ["algo=maml", "algo.outer_steps=5"],  # MAML's own PPO-style epochs per batch (algo/maml.yaml)
    "bc": ["algo=bc"],
}


def run_variant(name: str, seed: int, args: argparse.Namespace) -> None:
    out = args.out / name / f"seed{seed}"
    # Meta-test takes the experiment's step (push_cpu, door_cpu: natural); the tables in adaptation.md before
    # 2026-12-07 took the learned step sizes' gradient step: pass adapt.step_size=learned to repeat them.
    cfg = load_config([*VARIANTS[name], f"+experiment={args.experiment}", f"seed={seed}", "wandb.mode=disabled",
                       f"run_dir={out}", *args.overrides])
    last = out / "checkpoints" / "last.pt"
    adapt_cfg = cfg.copy()
    with open_dict(adapt_cfg):
        adapt_cfg.adapt.checkpoint = str(last)
        # Test tasks are a seeded stream (the first 20 of 50 are the experiment's 20), and training
        # never draws from that split: the table may use more of them than the experiment's config names.
        adapt_cfg.env.tasks.test = max(int(adapt_cfg.env.tasks.test), args.tasks)
        adapt_cfg.adapt.num_tasks = args.tasks
        adapt_cfg.adapt.steps = args.steps
        adapt_cfg.adapt.eval_episodes = args.eval_episodes
        adapt_cfg.adapt.control = True
        # BC has no learned step sizes: it is fine-tuned with the fixed one (algo.inner_lr).
        adapt_cfg.adapt.step_size = "fixed" if name == "bc" else cfg.adapt.step_size
        adapt_cfg.run_dir = str(out / f"adapt_{args.tasks}x{args.eval_episodes}")
    check_settings(adapt_cfg, "adapt")  # a bad evaluation setting is refused before the training, not after it
    env_episodes = int(load_checkpoint(last)["env_episodes"]) if args.adapt_only and last.is_file() else train(cfg).env_episodes
    results = adapt(adapt_cfg)
    summary = {mode: protocol_rows(r.rows, r.per_task_success) for mode, r in results.items()}
    (out / "protocol_summary.json").write_text(json.dumps({"env_episodes": env_episodes, "tasks": args.tasks,
                                                           "eval_episodes": args.eval_episodes, "runs": summary}))


def load_summaries(name: str, args: argparse.Namespace) -> dict[int, dict]:
    found = {}
    for seed in args.seeds:
        path = args.out / name / f"seed{seed}" / "protocol_summary.json"
        if path.is_file():
            found[seed] = json.loads(path.read_text())
    return found


def _mean_sd(values: list[float]) -> str:
    """Mean ± sd over seeds; one seed has no spread to show, so it prints the value alone."""
    s = seed_summary(values)
    return f"{s['mean']:.2f} ± {s['std']:.2f}" if s["seeds"] > 1 else f"{s['mean']:.2f}"


def table(args: argparse.Namespace) -> str:
    lines = [f"{args.experiment}: {args.tasks} test-split tasks x {args.eval_episodes} starts, {args.steps} steps; "
             f"overrides: {' '.join(args.overrides) or 'none'}", "",
             "Mean ± standard deviation over the seeds listed (success; gain = after last step - before):", "",
             "| variant | seeds | meta-training episodes | before | " + " | ".join(f"after {k}" for k in range(1, args.steps + 1))
             + " | gain | control gain |",
             "|---|---|---|---|" + "---|" * args.steps + "---|---|"]
    per_seed = ["", "Per seed, with 95% intervals (success: Wilson over episodes; gains: paired bootstrap over tasks):", "",
                "| variant | seed | before | after last step | improved / same / worse | gain | control: after last step | control gain |",
                "|---|---|---|---|---|---|---|---|"]
    for name in VARIANTS:
        runs = load_summaries(name, args)
        if not runs:
            continue
        real = {s: next(v for k, v in r["runs"].items() if k != CONTROL) for s, r in runs.items()}
        ctrl = {s: r["runs"].get(CONTROL) for s, r in runs.items()}
        steps = [_mean_sd([real[s][k]["success"] for s in runs]) for k in range(args.steps + 1)]
        ctrl_gain = [ctrl[s][-1]["gain"] for s in runs if ctrl[s]]
        lines.append(f"| {name} | {', '.join(map(str, runs))} | {seed_summary([r['env_episodes'] for r in runs.values()])['mean']:,.0f} | "
                     + " | ".join(steps) + f" | {_mean_sd([real[s][-1]['gain'] for s in runs])} | "
                     + (_mean_sd(ctrl_gain) if ctrl_gain else "not run") + " |")
        for s in runs:
            r0, rk, c = real[s][0], real[s][-1], ctrl[s]
            w = lambda row: format_interval(row["success"], (row["success_wilson_low"], row["success_wilson_high"]))  # noqa: E731
            g = lambda row: format_interval(row["gain"], (row["gain_low"], row["gain_high"]))  # noqa: E731
            per_seed.append(f"| {name} | {s} | {w(r0)} | {w(rk)} | {rk['improved']} / {rk['same']} / {rk['worse']} | {g(rk)} | "
                            + (f"{w(c[-1])} | {g(c[-1])} |" if c else "not run | not run |"))
    return "\n".join(lines + per_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="push_cpu", help="configs/experiment/<name>.yaml: push_cpu or door_cpu")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    parser.add_argument("--tasks", type=int, default=50, help="test-split tasks in the adaptation table")
    parser.add_argument("--eval-episodes", type=int, default=2, help="evaluation starts per task")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="default: runs/bench_<experiment>")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from finished runs in --out")
    parser.add_argument("--adapt-only", action="store_true", help="reuse a variant's finished training run in --out")
    parser.add_argument("overrides", nargs="*", help="hydra overrides applied to every variant")
    args = parser.parse_args()
    args.out = args.out or Path("runs") / f"bench_{args.experiment}"
    if not args.table_only:
        for seed in args.seeds:
            for name in args.variants:
                run_variant(name, seed, args)
    text = table(args)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
