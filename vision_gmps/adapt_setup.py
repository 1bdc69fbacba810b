"""What ``vgmps adapt`` runs with: the checkpoint's experiment, with the command line layered on top.

A checkpoint stores the whole resolved config it was trained with. ``vgmps adapt``
starts from that config's ``env``, ``policy``, ``algo``, ``adapt`` and ``sampler``
sections and layers onto them only what the command line sets (``env.kwargs.horizon=40``
changes the horizon and keeps every other stored env setting). Everything about this
invocation (``seed``, ``run_dir``, ``wandb``, ``torch_threads``, ``device``) comes from the
command line. The env this builds is then checked against the checkpoint before any
rollout: a different family, image size, horizon, action or proprio size is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vision_gmps.checkpoint import CheckpointError
from vision_gmps.config import ConfigError, format_value, flat_keys, load_config
from vision_gmps.policy import PolicySpec

log = logging.getLogger("vision_gmps")
FROM_CHECKPOINT = ("env", "policy", "algo", "adapt", "sampler")


def adapt_argv(argv: list[str]) -> list[str]:
    """Accept ``vgmps adapt PATH.pt`` and ``checkpoint=PATH`` as well as ``adapt.checkpoint=PATH``."""
    out, positional = [], []
    for arg in argv:
        if "=" not in arg and not arg.startswith("-"):
            positional.append(arg)
        elif arg.split("=", 1)[0] in ("checkpoint", "+checkpoint"):
            out.append("adapt.checkpoint=" + arg.split("=", 1)[1])
        else:
            out.append(arg)
    if len(positional) > 1:
        raise ConfigError(f"vgmps adapt takes one checkpoint, got {positional}; the other arguments are KEY=VALUE")
    return [f"adapt.checkpoint={positional[0]}", *out] if positional else out


def command_line_keys(cfg: DictConfig, overrides: list[str] | None) -> set[str]:
    """Dotted keys the caller set: those named in ``overrides`` and those differing from the defaults."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    now = flat_keys(cfg)
    defaults = flat_keys(load_config([]))
    keys = {k for k, v in now.items() if k not in defaults or defaults[k] != v}
    for o in OverridesParser.create().parse_overrides(list(overrides or [])):
        name = o.key_or_group
        prefixes = ("adapt.", "sampler.") if name == "experiment" else (name + ".",)
        keys |= {k for k in now if k == name or k.startswith(prefixes)}
    return keys


def layer_config(cfg: DictConfig, trained: DictConfig, overrides: list[str] | None) -> tuple[DictConfig, set[str]]:
    """The checkpoint's sections with the caller's keys layered on top; returns (config, keys from the caller)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = command_line_keys(cfg, overrides)
    chosen_groups = {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides or []))}
    out = cfg.copy()
    with open_dict(out):
        for section in FROM_CHECKPOINT:  # ``env=push`` picks a whole group: it replaces the stored section
            if section in trained and section not in chosen_groups:
                out[section] = trained[section]
        for key in sorted(given):
            if key.split(".")[0] in FROM_CHECKPOINT:
                OmegaConf.update(out, key, OmegaConf.select(cfg, key), merge=False, force_add=True)
    return out, given


def describe_sources(cfg: DictConfig, given: set[str], ckpt: Path) -> str:
    """One line per section: the adapt/sampler values used, and which came from the command line (``*``)."""
    keys = flat_keys(cfg)
    parts = []
    for section in ("adapt", "sampler"):
        shown = [f"{k}={format_value(keys[k])}{'*' if k in given else ''}" for k in keys if k.startswith(section + ".")]
        parts.append(" ".join(shown))
    env_given = [f"{k}={format_value(keys[k])}" for k in sorted(given) if k.startswith(("env.", "algo.", "policy.")) and k in keys]
    text = f"settings from the experiment stored in {ckpt} (* = given on the command line):\n  " + "\n  ".join(parts)
    if env_given:
        text += "\n  layered onto the checkpoint's env/algo: " + " ".join(env_given)
    return text


def check_env_fits(state: dict[str, Any], ckpt: Path, family: str, horizon: int | None = None,
                   spaces: dict[str, tuple[int, ...]] | None = None) -> None:
    """Refuse an env that differs from the checkpoint in what the policy was built for, naming every field.

    Called three times, each as early as its inputs exist: with the family name (before the
    family is built), with the horizon (before any env exists), and with the env's spaces.
    """
    saved = PolicySpec.from_dict(state["policy_spec"])
    saved_env = state.get("env_args", {})
    diffs = []
    # ``module:Class`` names a family by where it lives; its registered name is checked once it is built
    if ":" not in family and saved_env.get("family") not in (None, family):
        diffs.append(f"family: checkpoint {saved_env['family']}, settings {family}")
    elif horizon is not None and saved_env.get("horizon") is not None and int(saved_env["horizon"]) != int(horizon):
        diffs.append(f"horizon: checkpoint {saved_env['horizon']}, env {horizon} (env.kwargs.horizon)")
    if spaces is not None and not diffs:
        h, w = spaces["image"][:2]
        if tuple(saved.image_shape[:2]) != (h, w):
            diffs.append(f"image size: checkpoint {saved.image_shape[0]}x{saved.image_shape[1]}, env {h}x{w} (env.kwargs.image_size)")
        if saved.action_dim != spaces["action"][0]:
            diffs.append(f"action size: checkpoint {saved.action_dim}, env {spaces['action'][0]}")
        if saved.proprio_dim != spaces["proprio"][0]:
            diffs.append(f"proprio size: checkpoint {saved.proprio_dim}, env {spaces['proprio'][0]}")
    if diffs:
        raise CheckpointError(f"checkpoint {ckpt} does not fit the env these settings build: {'; '.join(diffs)}; "
                              f"drop those env overrides to use the checkpoint's own env")
