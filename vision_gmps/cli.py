"""``vgmps``: one entry point, one subcommand per job.

    vgmps train   [KEY=VALUE ...]            meta-train (GMPS, MAML or multi-task BC)
    vgmps adapt   CHECKPOINT.pt [KEY=VALUE]  meta-test: K policy-gradient steps on reward only
    vgmps demo    [KEY=VALUE ...]            the README's main job: train then adapt, with a report
    vgmps collect [KEY=VALUE ...]            record demonstrations to HDF5
    vgmps experts train|list|eval ...        SAC experts on privileged state, in an expert zoo
    vgmps demos   info|validate|replay|merge ...
    vgmps envs    show FAMILY ...        contact sheet and video of what the camera sees
    vgmps deploy  checkpoint=PATH robot=sim|socket|lerobot   adapt on a robot, every episode kept
    vgmps robot   serve --robot ...      the robot server, on the arm's computer
    vgmps export  CHECKPOINT [--params]  ONNX for control-rate inference

Subcommands are imported lazily so ``vgmps demos info`` does not pay for torch.
Errors meant for the user (``robot_envs.errors.UserError``) print as one line,
``vgmps SUB: error: ...``; ``VGMPS_DEBUG=1`` re-raises them with the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

from robot_envs.errors import UserError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("vision_gmps.train", "meta-train a policy"),
    "adapt": ("vision_gmps.adapt", "adapt a checkpoint to held-out tasks with reward only"),
    "demo": ("vision_gmps.demo", "the main job: train, adapt and write a report"),
    "collect": ("vision_gmps.collect", "record demonstrations to an HDF5 file"),
    "experts": ("vision_gmps.experts_cli", "train RL experts on privileged state into an expert zoo; list, eval"),
    "demos": ("demos.cli", "inspect, validate, replay and merge demo files"),
    "envs": ("robot_envs.cli", "look at task families: contact sheets and videos"),
    "deploy": ("vision_gmps.deploy", "adapt a checkpoint on a robot (simulated or real), keeping every episode"),
    "robot": ("robot_envs.robots.cli", "serve a robot over a socket: run on the arm's computer"),
    "export": ("vision_gmps.export", "export a policy (adapted or not) to ONNX; --bench times it"),
}
# Hydra-configured subcommands: (primary config, usage, examples). Their --help lists every key.
HYDRA_HELP: dict[str, tuple[str, str, list[str]]] = {
    "train": ("config", "vgmps train [KEY=VALUE ...] [--force]", [
        "vgmps train env=point algo.inner_lr=0.5 train.iterations=50 run_dir=runs/mine",
        "vgmps train run_dir=runs/mine train.iterations=80 resume=true   # continue the same experiment",
        "vgmps train run_dir=runs/mine --force                          # start afresh, deleting that run's outputs",
    ]),
    "adapt": ("config", "vgmps adapt CHECKPOINT.pt [KEY=VALUE ...]", [
        "vgmps adapt runs/mine/checkpoints/last.pt adapt.steps=3 adapt.step_size=both",
        "vgmps adapt adapt.checkpoint=runs/mine/checkpoints/last.pt sampler.num_envs=4",
        "env, algo, policy, adapt and sampler come from the checkpoint's experiment; the KEY=VALUEs given are layered on top",
    ]),
    "demo": ("demo", "vgmps demo [KEY=VALUE ...] [--force]", [
        "vgmps demo train.iterations=40 run_dir=runs/demo", "vgmps demo experiment=door_cpu",
    ]),
    "deploy": ("deploy", "vgmps deploy checkpoint=PATH robot=sim|socket|lerobot|custom [KEY=VALUE ...]", [
        "vgmps deploy checkpoint=runs/mine/checkpoints/last.pt robot=sim output=runs/mine/deploy.hdf5",
        "vgmps deploy checkpoint=runs/mine/checkpoints/last.pt robot=socket robot.host=127.0.0.1 reward.source=operator",
        "vgmps deploy ... resume=true   # continue an interrupted deployment from its last finished episode",
    ]),
    "collect": ("collect", "vgmps collect [KEY=VALUE ...] [--append]", [
        "vgmps collect env=point split=train demos_per_task=10 output=data/point.hdf5",
        "vgmps collect env=point output=data/point.hdf5 --append   # add new episodes (fresh seeds) to that file",
    ]),
}
# Flags that stand for a config key, for the subcommands that have it.
FLAGS: dict[str, dict[str, str]] = {
    "train": {"--force": "force=true"},
    "demo": {"--force": "force=true"},
    "collect": {"--append": "append=true"},
}


def _usage() -> str:
    lines = ["usage: vgmps SUBCOMMAND [args]   (vgmps SUBCOMMAND --help for its keys and examples)", "", "subcommands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "errors print one line; VGMPS_DEBUG=1 shows the traceback"]
    return "\n".join(lines)


def hydra_help(name: str) -> str:
    from vision_gmps.config import config_help

    config_name, usage, examples = HYDRA_HELP[name]
    lines = [f"usage: {usage}", "", SUBCOMMANDS[name][1], "", "examples:"] + [f"  {e}" for e in examples]
    if name in FLAGS:
        lines += ["", "flags: " + ", ".join(f"{flag} (= {key})" for flag, key in FLAGS[name].items())]
    return "\n".join(lines + ["", config_help(config_name)])


def _run(name: str, rest: list[str]) -> int:
    if name in HYDRA_HELP and any(a in ("-h", "--help") for a in rest):
        print(hydra_help(name))
        return 0
    rest = [FLAGS.get(name, {}).get(a, a) for a in rest]
    if name in ("train", "demo", "collect"):
        # Compose once before importing the subcommand: a typo is reported before torch loads, and
        # collect's typos get the closest key too (demos/ cannot import our config helper).
        from vision_gmps.config import load_config

        load_config(rest, config_name=HYDRA_HELP[name][0])
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(getattr(module, f"{name}_main")(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        from vision_gmps.config import closest

        guess = closest(name, list(SUBCOMMANDS))
        print(f"vgmps: error: unknown subcommand {name!r}" + (f"; did you mean {guess}?" if guess else "")
              + f"\n\n{_usage()}", file=sys.stderr)
        return 2
    debug = os.environ.get("VGMPS_DEBUG", "") not in ("", "0")
    try:
        return _run(name, rest)
    except UserError as err:
        if debug:
            raise
        from vision_gmps.config import ConfigError

        message = str(err).replace("(--help lists every key)", f"(`vgmps {name} --help` lists every key)")
        print(f"vgmps {name}: error: {message}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    except BrokenPipeError:  # output piped into `head`
        return 0
    except SystemExit as exit_:  # argparse subcommands exit on --help and usage errors
        return exit_.code if isinstance(exit_.code, int) else 2
    except KeyboardInterrupt:
        print(f"vgmps {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - anything else still gets one line, and the way to the traceback
        if debug:
            raise
        kind = "" if isinstance(err, (ValueError, OSError, FloatingPointError)) else f"{type(err).__name__}: "
        print(f"vgmps {name}: error: {kind}{err}\n(VGMPS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
