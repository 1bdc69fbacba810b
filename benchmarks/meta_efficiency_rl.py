"""Held-out post-adaptation success against meta-training episodes: GMPS (scripted or RL experts) vs MAML.

One command runs, for each seed, on identical task splits and policy:

* ``gmps-scripted``: GMPS with the family's scripted expert (expert episodes + DAgger labels);
* ``gmps-rl``: GMPS with an RL expert zoo (``vgmps experts train``, trained once here and shared by the
  seeds; its training steps are charged to this variant in the "with experts" ratio);
* ``maml``: MAML from scratch;
* ``maml-bc``: MAML from the behaviour-cloning warm start on the scripted expert episodes (``--bc-steps``
  Adam steps), those episodes counted in MAML's budget.

Every ``--eval-every`` iterations the meta-parameters are adapted on the validation split (one
policy-gradient step, reward only) and evaluated deterministically (``MetaTrainer.evaluate``).
The ratio: MAML's episodes to first reach its best mean post-adaptation success, over GMPS's episodes
to first reach the same mean success (curves averaged over seeds); "with experts" adds the RL
experts' own training steps, in episodes of the family's horizon, to GMPS-from-RL's count.

    python benchmarks/meta_efficiency_rl.py --seeds 0 1 2 --iterations 30 --eval-every 3
    python benchmarks/meta_efficiency_rl.py --table-only          # rebuild table and plot from finished runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from vision_gmps.config import load_config
from vision_gmps.run_logging import RunLogger
from vision_gmps.trainer import MetaTrainer

VARIANTS = ("gmps-scripted", "gmps-rl", "maml", "maml-bc")
# Point sized like tests/test_learning.py, so 3 seeds x 4 variants fit one CPU core in minutes.
POINT_FAST = ["env.kwargs.image_size=[16,16]", "policy.conv_channels=[8,8,8]", "env.tasks.train=10", "torch_threads=1"]


def overrides(variant: str, seed: int, args: argparse.Namespace, run_dir: Path) -> list[str]:
    algo = "maml" if variant.startswith("maml") else "gmps"
    extra = ["algo.expert.source=zoo", f"algo.expert.zoo={args.out / 'zoo'}"] if variant == "gmps-rl" else []
    return [f"algo={algo}", f"seed={seed}", f"train.iterations={args.iterations}", f"train.eval_every={args.eval_every}",
            f"train.eval_tasks={args.eval_tasks}", f"train.eval_episodes={args.eval_episodes}",
            f"train.checkpoint_every={args.iterations}", "wandb.mode=disabled", f"run_dir={run_dir}", *extra,
            "adapt.step_size=learned",  # the curves in rl_experts.md: the gradient step (override for natural steps)
            *args.overrides]


def bc_warm_start(maml: MetaTrainer, seed: int, args: argparse.Namespace) -> None:
    """Multi-task BC on the scripted expert episodes GMPS would collect, copied into MAML's policy; the episodes count."""
    bc_dir = args.out / f"maml-bc-warm-s{seed}"
    cfg = load_config(["algo=bc", f"seed={seed}", f"algo.pretrain_steps={args.bc_steps}", "wandb.mode=disabled",
                       f"run_dir={bc_dir}", *args.overrides])
    bc = MetaTrainer(cfg, bc_dir)
    bc.init_expert_data()
    bc.pretrain()
    bc.sampler.close()
    maml.policy.load_state_dict(bc.policy.state_dict())
    maml.env_episodes += bc.env_episodes
    maml.env_steps["expert_episodes"] += bc.env_steps["expert_episodes"]


def train_variant(variant: str, seed: int, args: argparse.Namespace) -> None:
    run_dir = args.out / f"{variant}-s{seed}"
    if (run_dir / "train_metrics.jsonl").is_file():
        return  # finished earlier: the table is rebuilt from it
    cfg = load_config(overrides(variant, seed, args, run_dir))
    trainer = MetaTrainer(cfg, run_dir)
    if variant == "maml-bc":
        bc_warm_start(trainer, seed, args)
    trainer.run(RunLogger(run_dir, cfg, "train"))
    trainer.sampler.close()


def train_zoo_once(args: argparse.Namespace) -> dict:
    from demos.collect import select_tasks
    from demos.rl.train import train_zoo
    from robot_envs import make_family

    folder = args.out / "zoo"
    if not (folder / "zoo.json").is_file():
        cfg = load_config(args.overrides)
        kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)  # nested lists too: zoo.json is plain JSON
        family = make_family(cfg.env.family, **kwargs)
        tasks = select_tasks(family, "train", int(cfg.env.tasks.train), int(cfg.env.tasks.seed))
        # a folder without zoo.json is this script's own interrupted attempt: retrain over it
        train_zoo(folder, args.zoo_mode, cfg.env.family, kwargs, tasks, args.zoo_steps, eval_episodes=5,
                  force=folder.exists())
    return json.loads((folder / "zoo.json").read_text())


def curve(run_dir: Path) -> list[dict]:
    metrics = [json.loads(line) for line in (run_dir / "train_metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"episodes": m["env_episodes"], "post": m["eval/success_post"], "pre": m["eval/success_pre"],
             "steps": m.get("steps/total")} for m in metrics if "eval/success_post" in m]


def first_reaching(xs: np.ndarray, ys: np.ndarray, level: float) -> float | None:
    hit = np.flatnonzero(ys >= level - 1e-9)
    return float(xs[hit[0]]) if hit.size else None


def summarise(args: argparse.Namespace, zoo: dict, horizon: int) -> tuple[str, dict]:
    curves = {v: [curve(args.out / f"{v}-s{s}") for s in args.seeds] for v in args.variants}
    mean = {}
    for v, runs in curves.items():
        n = min(len(r) for r in runs)
        mean[v] = {"episodes": np.mean([[p["episodes"] for p in r[:n]] for r in runs], 0),
                   "post": np.mean([[p["post"] for p in r[:n]] for r in runs], 0),
                   "post_sd": np.std([[p["post"] for p in r[:n]] for r in runs], 0),
                   "pre": np.mean([[p["pre"] for p in r[:n]] for r in runs], 0)}
    expert_episodes = zoo["env_steps"] / horizon
    lines = [f"{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}), {args.eval_tasks} validation tasks x "
             f"{args.eval_episodes} starts per point, one PG step; mean ± sd over seeds of post-adaptation success.", "",
             "| variant | " + " | ".join(f"pt {i + 1}" for i in range(len(mean[args.variants[0]]["post"]))) + " |",
             "|---|" + "---|" * len(mean[args.variants[0]]["post"])]
    for v in args.variants:
        cells = [f"{e:,.0f}: {p:.2f}±{sd:.2f}" for e, p, sd in zip(mean[v]["episodes"], mean[v]["post"], mean[v]["post_sd"])]
        lines.append(f"| {v} (episodes: success) | " + " | ".join(cells) + " |")
    ratios = {}
    lines += ["", "| MAML variant | its best mean success | its episodes to reach it | GMPS variant | GMPS episodes "
              "to reach it | ratio | ratio with the experts' training steps |", "|---|---|---|---|---|---|---|"]
    for m in [v for v in args.variants if v.startswith("maml")]:
        best = float(mean[m]["post"].max())
        e_maml = first_reaching(mean[m]["episodes"], mean[m]["post"], best)
        for g in [v for v in args.variants if v.startswith("gmps")]:
            e_gmps = first_reaching(mean[g]["episodes"], mean[g]["post"], best)
            extra = expert_episodes if g == "gmps-rl" else 0.0
            # MAML never above zero: "reaching its best" is the first evaluation, not a learning result
            r = e_maml / e_gmps if e_gmps and best > 0 else None
            r_all = e_maml / (e_gmps + extra) if e_gmps and best > 0 else None
            ratios[f"{m}/{g}"] = {"best": best, "maml": e_maml, "gmps": e_gmps, "ratio": r, "ratio_with_experts": r_all}
            lines.append(f"| {m} | {best:.2f} | {e_maml:,.0f} | {g} | {f'{e_gmps:,.0f}' if e_gmps else 'not reached'} | "
                         f"{f'{r:.1f}x' if r else '-'} | {f'{r_all:.1f}x' if r_all else '-'}"
                         + (f" (+{expert_episodes:,.0f} expert-training episodes)" if extra else "") + " |")
    lines += ["", f"RL expert zoo: {zoo['mode']}, {len(zoo['experts'])} expert(s), {zoo['env_steps']:,} training steps "
              f"(= {expert_episodes:,.0f} episodes of {horizon} steps), success "
              + ", ".join(f"{e['success']:.2f} [{e['success_low']:.2f}, {e['success_high']:.2f}]" for e in zoo["experts"])]
    return "\n".join(lines), {"mean": {v: {k: x.tolist() for k, x in d.items()} for v, d in mean.items()}, "ratios": ratios}


def plot(results: dict, path: Path, zoo_episodes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for v, d in results["mean"].items():
        xs, ys, sd = np.array(d["episodes"]), np.array(d["post"]), np.array(d["post_sd"])
        (line,) = ax.plot(xs, ys, marker="o", ms=3, label=v)
        ax.fill_between(xs, ys - sd, ys + sd, alpha=0.15, color=line.get_color())
        if v == "gmps-rl":
            ax.plot(xs + zoo_episodes, ys, ls="--", lw=1, color=line.get_color(), label="gmps-rl, experts' training counted")
    ax.set_xscale("log")
    ax.set_xlabel("meta-training environment episodes (log)")
    ax.set_ylabel("held-out success after one PG step")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--eval-tasks", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--bc-steps", type=int, default=300)
    parser.add_argument("--zoo-mode", default="goal", choices=["goal", "per_task"])
    parser.add_argument("--zoo-steps", type=int, default=1500)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_meta_efficiency_rl"))
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("overrides", nargs="*", help="hydra overrides for every run (default: a CI-sized point)")
    args = parser.parse_args()
    args.overrides = args.overrides or POINT_FAST
    args.out.mkdir(parents=True, exist_ok=True)
    zoo = train_zoo_once(args) if "gmps-rl" in args.variants else {"env_steps": 0, "mode": "-", "experts": []}
    if not args.table_only:
        for seed in args.seeds:
            for variant in args.variants:
                train_variant(variant, seed, args)
    horizon = int(load_config(args.overrides).env.kwargs.horizon)
    table, results = summarise(args, zoo, horizon)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "efficiency.png", zoo["env_steps"] / horizon)


if __name__ == "__main__":
    main()
