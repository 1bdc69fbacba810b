"""Meta-test: K policy-gradient steps per held-out task on reward only, evaluated after each.

The same routine serves ``vgmps adapt``, the evaluation during training and the
benchmarks, so every number in a table comes from one code path. Evaluation
episodes use the policy mean and the same seeds at every step, so a change
between rows is the adaptation, not the luck of the start states.

``shuffle_rewards=True`` is the reward-shuffled control (``vision_gmps.evaluation``): the
same steps, with each task's rewards taken from another task's rollouts of that step;
``with_control=True`` runs it beside the real adaptation, sharing the episodes the two have in common.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robot_envs import Task
from vision_gmps.config import ConfigError
from vision_gmps.evaluation import derangement, rewards_from_other_tasks, success_rate
from vision_gmps.inner import NATURAL_STEP_SCALE, adapt_detached, natural_output_step, shrunk_step, split_by_task
from vision_gmps.policy import ConvGaussianPolicy, Params
from vision_gmps.rollouts import PolicyActor, RolloutBatch, Sampler

EVAL_SEED_OFFSET = 1_000_003


def natural_scale_of(section: Mapping[str, Any]) -> float | None:
    """The natural step's size where a config section (adapt, deploy) asks for ``step_size=natural``, else None."""
    if section.get("step_size") != "natural":
        return None
    return float(section.get("natural_step_scale", NATURAL_STEP_SCALE))  # checkpoints from before the key: its default


EXPLORATION_KEYS = ("explore_log_std_shift", "unrewarded_below", "unrewarded_log_std_shift")


def _numbers(value: Any) -> float | list[float] | None:
    if value is None:
        return None
    return [float(v) for v in value] if isinstance(value, Sequence) and not isinstance(value, str) else float(value)


def exploration_of(section: Mapping[str, Any]) -> dict[str, Any]:
    """A config section's (adapt, deploy) exploration settings as ``run_adaptation`` keywords, plain numbers; None
    where unset (checkpoints and deploy files from before a key read as unset)."""
    return {key: _numbers(section.get(key)) for key in EXPLORATION_KEYS}


def shifted_exploration(policy: ConvGaussianPolicy, params: Params, shift: float | Sequence[float],
                        name: str = "explore_log_std_shift") -> Params:
    """``params`` with the exploration noise's log std raised by ``shift`` (one number, or one per action dimension).

    Why at meta-test only: meta-training fixes how widely the policy explores around its average task, and a
    reward-only step can only point where some rollouts reached. On push the goals more than 5 cm sideways were
    reached by almost no rollout (sideways spread 2 cm) and mostly stayed unsolved after 3 steps; wider sideways
    noise for the adaptation rollouts reached more of them but cost the central goals about as much
    (benchmarks/adaptation.md), so it is off by default; ``run_adaptation(unrewarded_below=...)`` widens only the tasks
    whose rollouts mostly missed. Evaluation acts on the mean, so only what the steps learn from changes. ``name``:
    the setting, for the error message.
    """
    log_std = params["log_std"]
    values = torch.as_tensor(shift, dtype=log_std.dtype, device=log_std.device).reshape(-1)
    if values.numel() == 1:
        values = values.expand_as(log_std)
    if values.shape != log_std.shape:
        raise ValueError(f"{name} has {values.numel()} values but the policy has {log_std.numel()} "
                         f"action dimensions: give one number, or one per dimension")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name}={shift}: must be finite numbers")
    return {**params, "log_std": log_std + values}


def exploration_for(policy: ConvGaussianPolicy, section: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``exploration_of(section)``, refused with a ``ConfigError`` where a shift does not fit the policy's action
    dimensions: called once the policy exists, before any rollout. ``prefix`` names the section in the message."""
    settings = exploration_of(section)
    for key in ("explore_log_std_shift", "unrewarded_log_std_shift"):
        if settings[key] is not None:
            try:
                shifted_exploration(policy, policy.params(), settings[key], key)
            except ValueError as err:
                raise ConfigError(f"{prefix}{err}") from None
    return settings


def rewarded_fraction(batch: RolloutBatch) -> np.ndarray:
    """Per task, the fraction of its episodes that earned any positive reward: [num_tasks]. On a sparse reward this
    is how many rollouts a reward-only step can learn from; zero means the step has nothing to go on."""
    return batch.per_task((batch.rewards > 0).any(axis=1).astype(float))


@dataclass
class AdaptationResult:
    rows: list[dict[str, float]]  # one per step: step, success (+ intervals), return, episodes, final_<extra>...
    # (eval_episodes=0: one per adaptation step, from its training rollouts, labelled with the step they ran at)
    per_task_success: np.ndarray  # [steps + 1, num_tasks], mean over each task's evaluation starts
    final_params: list[Params]
    last_eval: RolloutBatch
    first_eval: RolloutBatch
    reward_source: np.ndarray | None = None  # control only: task i adapted on task reward_source[i]'s rewards
    eval_seed: int = 0  # the sampler seed of every evaluation (to replay an episode for a video)
    control: "AdaptationResult | None" = None  # run_adaptation(with_control=True): the reward-shuffled control
    # per step-metric (e.g. "distance", "angle_error"): [steps + 1, num_tasks], each task's mean final value over its
    # evaluation starts, so a change in distance or angle gets a paired interval over tasks, as success does
    per_task_final: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Arm:
    """One adaptation run inside ``run_adaptation``: the real one or the control."""

    source: np.ndarray | None  # None: the task's own rewards; else the derangement the control uses
    params: list[Params]
    rows: list[dict[str, float]] = field(default_factory=list)
    per_task: list[np.ndarray] = field(default_factory=list)
    per_task_final: dict[str, list[np.ndarray]] = field(default_factory=dict)
    evals: list[RolloutBatch] = field(default_factory=list)
    episodes: int = 0
    kept: float | None = None  # shrink=True: mean fraction of the last step kept (1.0 before the first step)
    widened: np.ndarray | None = None  # unrewarded_below: [num_tasks] bool, tasks now exploring wider


def run_adaptation(
    policy: ConvGaussianPolicy,
    step_sizes: Params,
    sampler: Sampler,
    tasks: list[Task],
    steps: int,
    rollouts_per_task: int,
    gamma: float = 0.99,
    baseline: str = "linear",
    eval_episodes: int = 1,
    seed: int = 0,
    progress: bool = False,
    shuffle_rewards: bool = False,
    with_control: bool = False,
    shrink: bool = False,
    natural_scale: float | None = None,
    explore_log_std_shift: float | Sequence[float] | None = None,
    unrewarded_below: float | None = None,
    unrewarded_log_std_shift: float | Sequence[float] | None = None,
) -> AdaptationResult:
    """Adapt every task for ``steps`` steps, evaluating before and after each.

    ``with_control=True`` also runs the reward-shuffled control and returns it as the result's
    ``control``. Both runs start from the same parameters and seeds, so their step-0 evaluation and
    first-step rollouts are the same episodes (``sampler.collect`` is a pure function of tasks,
    parameters and seeds): they are collected once, and the control is exactly what
    ``shuffle_rewards=True`` alone gives, for 1 + eval_episodes / rollouts_per_task fewer episodes'
    worth of its first step. Each result's ``episodes`` counts the rollouts its steps used.
    ``shrink=True`` shortens each task's step by the noise in its own estimate (``inner.shrunk_step``); each row
    then carries ``step_kept``, the mean fraction of the step kept over tasks by the step that led to it.
    ``natural_scale``: each step is instead a natural policy-gradient step of that size on the output layer
    (``inner.natural_output_step``; ``step_sizes`` are then unused).
    ``explore_log_std_shift`` widens (or narrows) the adaptation rollouts' noise (``shifted_exploration``); the
    steps then learn from those rollouts, and the adapted parameters keep the shifted log std.
    ``unrewarded_below``: after each step, a task whose rollouts earned reward in fewer than this fraction
    (``rewarded_fraction``, on the rewards the step learned from: the control's borrowed ones in the control) has
    its exploration log std raised by ``unrewarded_log_std_shift`` for the rest of its steps, once. Why: a
    reward-only step on sparse reward only points where some rollouts reached; on push the goals far to the side
    were reached by ~11% of the first rollouts against ~51% for the others, and widening everyone's noise cost the
    central goals what it gained on the far ones (benchmarks/adaptation.md). The first step is unchanged, so its
    rollouts are still shared with the control. Each row then carries ``widened``: the fraction of tasks whose
    rollouts for that step explored wider (evaluations act on the mean either way).
    """
    if shrink and natural_scale is not None:
        raise ValueError("shrink and natural_scale are two different steps; choose one")
    if shuffle_rewards and with_control:
        raise ValueError("shuffle_rewards=True already is the control; with_control adds it beside a real run")
    if (unrewarded_below is None) != (unrewarded_log_std_shift is None):
        raise ValueError("unrewarded_below and unrewarded_log_std_shift go together: set both (widen the tasks whose "
                         "rollouts mostly missed the reward, by that shift) or neither")
    if unrewarded_below is not None and not 0 < unrewarded_below <= 1:
        raise ValueError(f"unrewarded_below={unrewarded_below}: a fraction of a step's rollouts, in (0, 1]")
    derange = derangement(len(tasks), np.random.default_rng([seed, 0x5F1E])) if shuffle_rewards or with_control else None
    start = [{k: v.detach() for k, v in policy.params().items()} for _ in tasks]
    if explore_log_std_shift is not None:
        start = [shifted_exploration(policy, p, explore_log_std_shift) for p in start]
    if unrewarded_log_std_shift is not None:  # a wrong length is refused now, not after the first step's rollouts
        shifted_exploration(policy, start[0], unrewarded_log_std_shift, "unrewarded_log_std_shift")
    kept = 1.0 if shrink else None

    def new_arm(source: np.ndarray | None) -> _Arm:
        widened = None if unrewarded_below is None else np.zeros(len(tasks), bool)
        return _Arm(source, start, kept=kept, widened=widened)

    arms = [new_arm(derange if shuffle_rewards else None)] + ([new_arm(derange)] if with_control else [])

    def record(arm: _Arm, step: int, batch: RolloutBatch) -> None:
        arm.evals.append(batch)
        arm.per_task.append(batch.per_task(batch.episode_success.astype(float)))
        for key, values in batch.extras.items():
            arm.per_task_final.setdefault(key, []).append(batch.per_task(values[:, -1].astype(float)))
        rate = success_rate(batch.episode_success, batch.task_index, seed=step)
        arm.rows.append({"step": step, **batch.summary(), **rate.as_dict(), "episodes": arm.episodes,
                         **({} if arm.kept is None else {"step_kept": arm.kept}),
                         **({} if arm.widened is None else {"widened": float(arm.widened.mean())})})

    def evaluate(arm: _Arm, step: int, label: str) -> RolloutBatch:
        return sampler.collect(tasks, eval_episodes, PolicyActor(policy, arm.params, deterministic=True),
                               seed=seed + EVAL_SEED_OFFSET, progress=f"{label}eval step {step}" if progress else None)

    def explore(arm: _Arm, step: int, label: str) -> RolloutBatch:
        act = PolicyActor(policy, arm.params, deterministic=False, seed=seed + step)
        return sampler.collect(tasks, rollouts_per_task, act, seed=seed + step,
                               progress=f"{label}adapt step {step}" if progress else None)

    if eval_episodes:  # hardware (eval_episodes=0): no separate evaluation; each step reports its training rollouts
        first = evaluate(arms[0], 0, "")
        for arm in arms:
            record(arm, 0, first)
    for step in range(1, steps + 1):
        # At step 1 every arm still has the starting parameters: one collection serves them all.
        shared = explore(arms[0], step, "") if step == 1 else None
        for arm in arms:
            label = "control " if arm.source is not None and with_control else ""
            batch = shared if shared is not None else explore(arm, step, label)
            arm.episodes += batch.num_episodes
            rollouts = batch  # as run, with their own rewards (what eval_episodes=0 reports)
            if arm.source is not None:
                batch = rewards_from_other_tasks(batch, arm.source)
            task_batches = split_by_task(policy, batch, arm.params, gamma, baseline)
            if natural_scale is not None:
                arm.params = [natural_output_step(policy, p, tb, natural_scale) for p, tb in zip(arm.params, task_batches)]
            elif shrink:
                stepped = [shrunk_step(policy, p, step_sizes, tb, rollouts_per_task) for p, tb in zip(arm.params, task_batches)]
                arm.params, arm.kept = [p for p, _ in stepped], float(np.mean([k for _, k in stepped]))
            else:
                arm.params = [adapt_detached(policy, p, step_sizes, tb) for p, tb in zip(arm.params, task_batches)]
            if eval_episodes:
                record(arm, step, evaluate(arm, step, label))
            else:  # they ran with the parameters of the previous step
                record(arm, step - 1, rollouts)
            if arm.widened is not None:
                missed = (rewarded_fraction(batch) < unrewarded_below) & ~arm.widened
                arm.params = [shifted_exploration(policy, p, unrewarded_log_std_shift, "unrewarded_log_std_shift")
                              if m else p for p, m in zip(arm.params, missed)]
                arm.widened = arm.widened | missed
    results = [AdaptationResult(a.rows, np.stack(a.per_task), a.params, a.evals[-1], a.evals[0], a.source,
                                seed + EVAL_SEED_OFFSET,
                                per_task_final={k: np.stack(v) for k, v in a.per_task_final.items()}) for a in arms]
    if with_control:
        results[0].control = results[1]
    return results[0]
