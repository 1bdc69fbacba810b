"""Check every numeric and categorical setting before any work starts.

Hydra types nothing (``train.iterations=abc`` composes fine) and a bad value used
to surface only after minutes of rollouts (``train.checkpoint_every=0`` crashed
after the first iteration). ``check_settings`` names every bad key at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from robot_envs.base import SPLITS

from vision_gmps.config import ConfigError

# key: (smallest allowed integer, what the key means). Checked for every job.
INTS: dict[str, tuple[int, str]] = {
    "seed": (0, "random seed"),
    "torch_threads": (0, "CPU threads, 0 = torch's default"),
    "sampler.num_envs": (1, "envs stepped together"),
    "env.tasks.seed": (0, "task-set seed"),
    "env.tasks.train": (1, "training tasks"),
    "env.tasks.test": (0, "held-out tasks"),
    "env.kwargs.horizon": (1, "steps per episode"),
}
TRAIN_INTS: dict[str, tuple[int, str]] = {
    "train.iterations": (1, "meta-iterations"),
    "train.checkpoint_every": (1, "iterations between checkpoints"),
    "train.eval_every": (0, "iterations between held-out checks, 0 = off"),
    "train.eval_tasks": (0, "held-out tasks of each check"),
    "algo.rollouts_per_task": (1, "episodes per task per iteration"),
    "algo.outer_steps": (1, "Adam steps per iteration"),
    "algo.inner_steps": (1, "inner policy-gradient steps"),
    "algo.expert_batch_size": (1, "expert samples per task per step"),
    "algo.buffer_max_per_task": (1, "expert samples kept per task"),
    "algo.pretrain_steps": (0, "behaviour-cloning steps before meta-training"),
    "algo.expert.episodes_per_task": (1, "scripted expert episodes per task"),
    "algo.dagger.every": (1, "iterations between DAgger collections"),
    "algo.dagger.rollouts_per_task": (1, "DAgger episodes per task"),
}
ADAPT_INTS: dict[str, tuple[int, str]] = {
    "adapt.num_tasks": (1, "held-out tasks to adapt on"),
    "adapt.steps": (0, "policy-gradient steps"),
    "adapt.rollouts_per_task": (1, "episodes per task per step"),
    "adapt.eval_episodes": (1, "evaluation episodes per task per step"),
}
DEMO_INTS: dict[str, tuple[int, str]] = {
    "demo.demos_per_task": (1, "scripted demos recorded per training task"),
}
# Policy shape: lists of positive integers (channels, strides, hidden layer sizes; only the last may be []).
POSITIVE_LISTS = ("policy.conv_channels", "policy.conv_strides", "policy.hidden_sizes")
POLICY_INTS: dict[str, tuple[int, str]] = {
    "policy.kernel_size": (1, "conv kernel size"),
    "policy.bias_transform_dim": (0, "bias-transform size"),
}
# key: (exclusive lower bound, inclusive upper bound or None, allow null)
FLOATS: dict[str, tuple[float, float | None, bool]] = {
    "algo.inner_lr": (0.0, None, False),
    "algo.outer_lr": (0.0, None, False),
    "algo.step_size_lr": (0.0, None, True),
    "algo.grad_clip": (0.0, None, False),
    "algo.gamma": (0.0, 1.0, False),
    "adapt.fixed_step_size": (0.0, None, True),
    "adapt.learned_step_scale": (0.0, None, False),
    "adapt.natural_step_scale": (0.0, None, False),
}
# On/off flags: ``bool("flase")`` is True, so a typo would silently switch a flag on. Checked for every job.
BOOLS = ("resume", "resume_fallback", "force", "train.overlap_eval", "algo.learn_step_sizes", "algo.first_order",
         "algo.dagger.enabled", "adapt.shrink_steps", "adapt.control")
CHOICES: dict[str, tuple[Any, ...]] = {
    "algo.name": ("gmps", "maml", "bc"),
    "algo.baseline": ("linear", "none"),
    "algo.imitation_loss": ("mse", "nll"),
    "algo.expert.source": ("scripted", "demos", "zoo"),
    "algo.inner_step": ("gradient", "natural"),
    "adapt.step_size": ("learned", "fixed", "both", "natural"),
    "adapt.split": SPLITS,  # valid: for choosing settings; test: for the tables
    "wandb.mode": ("offline", "online", "disabled"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_settings(cfg: DictConfig, job: str) -> None:
    """Raise one ``ConfigError`` listing every bad setting of ``job`` (train | adapt | demo)."""
    get = lambda key: OmegaConf.select(cfg, key, default="<absent>")  # noqa: E731
    problems: list[str] = []
    ints = dict(INTS)
    if job in ("train", "demo"):
        ints |= TRAIN_INTS | POLICY_INTS
        for key in POSITIVE_LISTS:
            value = get(key)
            items = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else None
            empty_ok = key == "policy.hidden_sizes"  # [] is a linear head
            if value != "<absent>" and (items is None or (not items and not empty_ok)
                                        or not all(_is_int(v) and v >= 1 for v in items)):
                problems.append(f"{key}={_show(value)}: must be a list of integers >= 1, e.g. [16,16]")
    if job == "demo":
        ints |= DEMO_INTS
    if job in ("adapt", "demo"):
        ints |= ADAPT_INTS
    for key, (low, meaning) in ints.items():
        value = get(key)
        if value != "<absent>" and (not _is_int(value) or value < low):
            problems.append(f"{key}={value}: must be an integer >= {low} ({meaning})")
    for key, (low, high, nullable) in FLOATS.items():
        value = get(key)
        if value == "<absent>" or (value is None and nullable) or job == "adapt" and key.startswith("algo."):
            continue
        if not is_number(value) or value <= low or (high is not None and value > high):
            upper = f" and <= {high}" if high is not None else ""
            problems.append(f"{key}={value}: must be a number > {low}{upper}")
    for key in BOOLS:
        value = get(key)
        if value != "<absent>" and not isinstance(value, bool):
            problems.append(f"{key}={value}: must be true or false")
    for key, options in CHOICES.items():
        value = get(key)
        if value != "<absent>" and value not in options:
            problems.append(f"{key}={value}: must be one of {', '.join(map(str, options))}")
    size = get("env.kwargs.image_size")
    if size != "<absent>":
        dims = list(size) if OmegaConf.is_list(size) or isinstance(size, (list, tuple)) else None
        if dims is None or len(dims) != 2 or not all(_is_int(d) and d >= 1 for d in dims):
            problems.append(f"env.kwargs.image_size={_show(size)}: must be [height,width], two integers >= 1")
    noise = get("algo.expert.noise")
    if job != "adapt" and noise != "<absent>" and (not is_number(noise) or noise < 0):
        problems.append(f"algo.expert.noise={noise}: must be a number >= 0")
    zoo = get("algo.expert.zoo")
    if job != "adapt" and get("algo.expert.source") == "zoo" and not (zoo and (Path(str(zoo)) / "zoo.json").is_file()):
        problems.append(f"algo.expert.source=zoo needs algo.expert.zoo=PATH, a folder from `vgmps experts train` "
                        f"(got {zoo}: {'no zoo.json there' if zoo else 'not set'})")
    if get("adapt.step_size") == "natural" and get("adapt.shrink_steps") is True:
        problems.append("adapt.shrink_steps=true shortens the gradient step; adapt.step_size=natural takes another "
                        "step: set one of them")
    if job != "adapt" and get("algo.inner_step") == "natural" and get("adapt.step_size") != "natural":
        problems.append(f"algo.inner_step=natural meta-trains for the natural step that meta-test takes, but "
                        f"adapt.step_size={get('adapt.step_size')}: set adapt.step_size=natural (its size, "
                        "adapt.natural_step_scale, is the one training uses)")
    episode_noise = [k for k in ("policy.offset_log_std", "policy.latent_log_std") if get(k) not in (None, "<absent>")]
    if get("adapt.step_size") == "natural" and episode_noise:  # (algo.inner_step=natural needs it, above)
        problems.append(f"adapt.step_size=natural assumes per-step exploration only, but {episode_noise[0]} is set "
                        f"(per-episode exploration): use adapt.step_size=learned or set {episode_noise[0]}=null")
    problems += ["adapt." + p for p in exploration_problems(lambda key: get(f"adapt.{key}"))]
    problems += _split_sizes(cfg, job, get)
    if problems:
        raise ConfigError("bad settings:\n  " + "\n  ".join(problems) if len(problems) > 1 else problems[0])


MAX_EXPLORATION_SHIFT = 2.0  # log std: the noise x7.4 or /7.4 at most


def exploration_shift_problem(value: Any, key: str = "explore_log_std_shift") -> str | None:
    """What is wrong with a log std shift setting (null, a number, or one number per action dimension)."""
    if value is None:
        return None
    items = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
    if not items or not all(is_number(v) and abs(v) <= MAX_EXPLORATION_SHIFT for v in items):
        return (f"{key}={_show(value)}: must be null, a number or a list of numbers (one per action "
                f"dimension), each within +-{MAX_EXPLORATION_SHIFT:g} (added to the exploration noise's log std)")
    return None


def exploration_problems(get) -> list[str]:
    """What is wrong with a section's (adapt, deploy) exploration settings; ``get(key)`` reads one, "<absent>" or None
    where it is not there (older configs)."""
    values = {key: None if (v := get(key)) == "<absent>" else v
              for key in ("explore_log_std_shift", "unrewarded_below", "unrewarded_log_std_shift")}
    problems = [problem for key in ("explore_log_std_shift", "unrewarded_log_std_shift")
                if (problem := exploration_shift_problem(values[key], key))]
    below, shift = values["unrewarded_below"], values["unrewarded_log_std_shift"]
    if below is not None and not (is_number(below) and 0 < below <= 1):
        problems.append(f"unrewarded_below={_show(below)}: must be null or a fraction of a step's rollouts in (0, 1] "
                        "(tasks whose rollouts earned reward less often explore wider)")
    if (below is None) != (shift is None):
        problems.append("unrewarded_below and unrewarded_log_std_shift go together: set both (for example 0.2 and "
                        "[0, 0.7, 0]) or neither")
    return problems


def _split_sizes(cfg: DictConfig, job: str, get) -> list[str]:
    """Settings that draw more tasks than the configured split holds."""
    out = []
    train_n, test_n = get("env.tasks.train"), get("env.tasks.test")
    if not (_is_int(train_n) and _is_int(test_n)):
        return out
    if job in ("train", "demo"):
        mbs = get("algo.meta_batch_size")
        if mbs not in (None, "<absent>") and (not _is_int(mbs) or not 1 <= mbs <= train_n):
            out.append(f"algo.meta_batch_size={mbs}: must be null (all training tasks) or 1..{train_n}, the tasks of "
                       f"env.tasks.train={train_n}; lower it or raise env.tasks.train")
        eval_every, eval_tasks = get("train.eval_every"), get("train.eval_tasks")
        if _is_int(eval_every) and eval_every > 0 and _is_int(eval_tasks) and eval_tasks < 1:
            out.append(f"train.eval_tasks={eval_tasks}: must be >= 1 (valid-split tasks) while train.eval_every > 0")
    if job in ("adapt", "demo"):
        split, n = get("adapt.split"), get("adapt.num_tasks")
        held = {"train": train_n, "test": test_n}.get(split)  # the valid split is drawn to any size
        if held is not None and _is_int(n) and n > held:
            out.append(f"adapt.num_tasks={n}: the {split} split has {held} tasks (env.tasks.{split}); "
                       f"lower adapt.num_tasks or raise env.tasks.{split}")
    return out


def _show(value: Any) -> str:
    return str(OmegaConf.to_container(value)) if OmegaConf.is_list(value) else str(value)
