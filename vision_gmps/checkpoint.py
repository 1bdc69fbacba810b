"""Checkpoints: plain tensors, numbers and strings only, loaded with ``weights_only=True``.

Loading a checkpoint never executes code. Files are written to a temporary name
and renamed, so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from robot_envs.errors import UserError

from vision_gmps.policy import ConvGaussianPolicy, PolicySpec, StepSizes

FORMAT_VERSION = 1
log = logging.getLogger("vision_gmps")
# What defines an experiment: resuming with any of these changed would silently mix two experiments.
EXPERIMENT_KEYS = ("env.", "policy.", "algo.", "seed")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used with the current config; the message says why."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        # torch's own message runs to a dozen lines and suggests weights_only=False, which would run code.
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: damaged, truncated, or holding more than tensors "
                              f"({type(err).__name__}: {reason})") from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a vision-gmps checkpoint (format {FORMAT_VERSION})")
    return state


def policy_from_checkpoint(state: dict[str, Any]) -> tuple[ConvGaussianPolicy, StepSizes]:
    """The policy and its learned step sizes; the run's ``algo.inner_lr_by_param`` shapes ``fixed()``."""
    by_prefix = OmegaConf.create(state["config_yaml"]).algo.get("inner_lr_by_param")
    by_prefix = OmegaConf.to_container(by_prefix) if by_prefix else None
    spec = PolicySpec.from_dict(state["policy_spec"])
    policy = ConvGaussianPolicy(spec)
    policy.load_state_dict(state["policy"])
    step_sizes = StepSizes(policy, init=0.0, learnable=False, by_prefix=by_prefix)
    step_sizes.load_state_dict(state["step_sizes"])
    return policy, step_sizes


def check_compatible(state: dict[str, Any], spec: PolicySpec, family: str, path: str | Path) -> None:
    """Refuse a checkpoint whose family or parameter shapes differ from what the config builds."""
    saved = PolicySpec.from_dict(state["policy_spec"])
    saved_family = state["env_args"]["family"]
    if saved_family != family:
        raise CheckpointError(
            f"checkpoint {path} was trained on task family {saved_family!r}, but the config builds {family!r}; "
            f"pass env={saved_family} or use a {family} checkpoint"
        )
    if saved != spec:
        diffs = [
            f"{k}: checkpoint {getattr(saved, k)} vs config {getattr(spec, k)}"
            for k in spec.to_dict()
            if getattr(saved, k) != getattr(spec, k)
        ]
        raise CheckpointError(f"checkpoint {path} has another policy shape ({'; '.join(diffs)})")


def resume_checkpoint(run_dir: Path, fallback: bool = False) -> tuple[Path, dict[str, Any]]:
    """The checkpoint ``resume=true`` continues from, and its contents.

    ``last.pt`` when it is readable. When it is missing or damaged, the ``iter_*.pt``
    checkpoints (which hold the same state, expert buffer included) are used only
    with ``fallback`` (``resume_fallback=true``); otherwise the error lists them.
    """
    folder = run_dir / "checkpoints"
    last = folder / "last.pt"
    earlier = sorted(folder.glob("iter_*.pt"), reverse=True)
    try:
        return last, load_checkpoint(last)
    except CheckpointError as err:
        problem = str(err)
    if not earlier:
        raise CheckpointError(f"resume=true but {problem}, and {folder} holds no earlier checkpoint; "
                              f"pass the run_dir of an earlier run, or drop resume=true to start afresh")
    names = ", ".join(p.name for p in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
    if not fallback:
        raise CheckpointError(f"resume=true but {problem}; earlier checkpoints exist ({names}); add resume_fallback=true "
                              f"to continue from the newest readable one")
    for path in earlier:
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            log.warning("skipping %s: %s", path, err)
            continue
        log.warning("%s; resume_fallback=true: continuing from %s (iteration %d)", problem, path, int(state["iteration"]))
        return path, state
    raise CheckpointError(f"resume=true but {problem}, and none of the earlier checkpoints ({names}) can be read either")


def experiment_diff(cfg: DictConfig, state: dict[str, Any]) -> list[str]:
    """``key: checkpoint X, now Y`` for every experiment-defining setting that differs from the checkpoint's."""
    from vision_gmps.config import flat_keys

    saved = flat_keys(OmegaConf.create(state["config_yaml"]))
    now = flat_keys(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    return [f"{k}: checkpoint {saved[k]!r}, now {now[k]!r}" for k in now
            if k.startswith(EXPERIMENT_KEYS) and k in saved and saved[k] != now[k]]
