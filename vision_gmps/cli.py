"""``vgmps``: one entry point, one subcommand per job.

    vgmps train   [hydra overrides]      meta-train (GMPS, MAML or multi-task BC)
    vgmps adapt   checkpoint=PATH [...]  meta-test: K policy-gradient steps on reward only
    vgmps demo    [hydra overrides]      the README's main job: train then adapt, with a report
    vgmps collect [hydra overrides]      record demonstrations to HDF5
    vgmps demos   info|validate|replay|merge ...
    vgmps envs    show FAMILY ...        contact sheet and video of what the camera sees

Subcommands are imported lazily so ``vgmps demos info`` does not pay for torch.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("vision_gmps.train", "meta-train a policy"),
    "adapt": ("vision_gmps.adapt", "adapt a checkpoint to held-out tasks with reward only"),
    "demo": ("vision_gmps.demo", "the main job: train, adapt and write a report"),
    "collect": ("vision_gmps.collect", "record demonstrations to an HDF5 file"),
    "demos": ("demos.cli", "inspect, validate, replay and merge demo files"),
    "envs": ("robot_envs.cli", "look at task families: contact sheets and videos"),
}


def _usage() -> str:
    lines = ["usage: vgmps SUBCOMMAND [args]", "", "subcommands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"vgmps: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(getattr(module, f"{name}_main")(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
