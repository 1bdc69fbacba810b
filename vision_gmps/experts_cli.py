"""``vgmps experts train|list|eval``: RL experts on privileged state, saved in an expert zoo (demos/rl).

``train`` composes configs/experts.yaml with KEY=VALUE overrides (typos get the closest key) and
trains with stable-baselines3; ``list ZOO`` prints what a zoo holds; ``eval ZOO`` re-measures its
experts' success from the saved weights (the zoo's own loader: tensors only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from vision_gmps.config import load_config

USAGE = """usage: vgmps experts train [KEY=VALUE ...] [--force | --append]
       vgmps experts list ZOO
       vgmps experts eval ZOO [--episodes N]

train SAC experts on privileged state (stable-baselines3; pip install '.[rl]') into an expert zoo folder:
  mode=per_task  one expert per task on the dense reward;  mode=goal  one goal-conditioned expert (HER)
an existing zoo is refused unless --force (replace it) or --append (per_task: add experts for new tasks)

examples:
  vgmps experts train env=point mode=goal steps=2000 zoo=zoos/point-goal
  vgmps experts train env=push mode=per_task steps=20000 zoo=zoos/push workers=2
  vgmps experts train env=push mode=per_task task_indices=[5,6] zoo=zoos/push --append
  vgmps train algo.expert.source=zoo algo.expert.zoo=zoos/point-goal
  vgmps collect source=experts zoo=zoos/point-goal output=data/point-rl.hdf5
"""
FLAGS = {"--force": "force=true", "--append": "append=true"}


def _print_rows(meta: dict) -> None:
    from demos.rl.train import zoo_summary

    print(f"{meta['mode']} zoo of {meta['family']}: {len(meta['experts'])} experts, {meta['env_steps']} training env "
          f"steps (+{meta['eval_env_steps']} evaluation), {meta['wall_s']:.0f} s wall")
    print(f"{'expert':<22} {'tasks':>5}  {'success [95% Wilson]':<22} {'episodes':>8} {'env steps':>10} {'wall s':>7}")
    for r in zoo_summary(meta):
        print(f"{r['expert']:<22} {r['tasks']:>5}  {r['success']:.2f} [{r['low']:.2f}, {r['high']:.2f}]{'':<8} "
              f"{r['episodes']:>8} {r['env_steps']:>10} {r['wall_s']:>7.1f}")


def train_cmd(argv: list[str]) -> int:
    from demos.collect import select_tasks
    from demos.rl.train import default_workers, train_zoo
    from robot_envs import make_family

    cfg = OmegaConf.to_container(load_config([FLAGS.get(a, a) for a in argv], config_name="experts"), resolve=True)
    if cfg["force"] and cfg["append"]:
        print("vgmps experts: error: --force replaces the zoo, --append adds to it: give one", file=sys.stderr)
        return 2
    family_kwargs = dict(cfg["env"].get("kwargs") or {})
    family = make_family(cfg["env"]["family"], **family_kwargs)
    split = cfg["split"]
    num = cfg["num_tasks"] if cfg["num_tasks"] is not None else int(cfg["env"]["tasks"][split])
    tasks = select_tasks(family, split, num, int(cfg["env"]["tasks"]["seed"]), cfg["task_indices"])
    workers = int(cfg["workers"] or default_workers())
    sac = {k: (list(v) if isinstance(v, list) else v) for k, v in cfg["sac"].items()}
    meta = train_zoo(cfg["zoo"], cfg["mode"], cfg["env"]["family"], family_kwargs, tasks, int(cfg["steps"]),
                     workers=workers, seed=int(cfg["seed"]), eval_episodes=int(cfg["eval_episodes"]), sac=sac,
                     her=dict(cfg["her"]), force=bool(cfg["force"]), append=bool(cfg["append"]),
                     skip_images=bool(cfg["skip_images"]), torch_threads=int(cfg["torch_threads"]))
    _print_rows(meta)
    print(f"zoo: {cfg['zoo']}  (use it: vgmps train algo.expert.source=zoo algo.expert.zoo={cfg['zoo']})")
    return 0


def eval_cmd(zoo: str, episodes: int) -> int:
    """Re-measure each expert from its saved weights, through ``ZooExpert`` (what GMPS uses)."""
    from demos.rl.state_env import StateEnv
    from demos.rl.train import evaluate_actor
    from demos.rl.zoo import ZooExpert
    from robot_envs import Task

    expert = ZooExpert(zoo)
    for entry, actor in zip(expert.meta["experts"], expert.actors):
        tasks = [Task.from_json(json.dumps(t)) for t in entry["tasks"]]
        env = StateEnv(expert.family, tasks, goal_conditioned=expert.mode == "goal", seed=1)
        r = evaluate_actor(actor.act, expert.family, tasks, episodes, expert.mode == "goal", env, seed=12345)
        env.close()
        print(f"{entry['name']:<22} {r['success']:.2f} [{r['success_low']:.2f}, {r['success_high']:.2f}] over "
              f"{r['eval_episodes']} episodes (recorded at training: {entry['success']:.2f})")
    return 0


def _folder_args(action: str, rest: list[str]) -> argparse.Namespace:
    """``list ZOO`` / ``eval ZOO [--episodes N]``; ``zoo=ZOO`` is accepted too, as ``train`` spells it."""
    parser = argparse.ArgumentParser(prog=f"vgmps experts {action}", add_help=False)
    parser.add_argument("zoo", help="an expert zoo folder")
    if action == "eval":
        parser.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    args = parser.parse_args([a.removeprefix("zoo=") for a in rest])
    if action == "eval" and args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    return args


def experts_main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    action, rest = argv[0], argv[1:]
    if any(a in ("-h", "--help") for a in rest):
        from vision_gmps.config import config_help

        print(USAGE + "\n" + config_help("experts"))
        return 0
    if action == "train":
        return train_cmd(rest)
    if action in ("list", "eval") and rest:
        args = _folder_args(action, rest)
        if action == "list":
            from demos.rl.zoo import read_zoo

            _print_rows(read_zoo(Path(args.zoo)))
            return 0
        return eval_cmd(args.zoo, args.episodes)
    print(f"vgmps experts: error: expected train, list ZOO or eval ZOO, got {' '.join(argv)!r}\n\n{USAGE}", file=sys.stderr)
    return 2
