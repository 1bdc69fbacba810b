"""The evaluation protocol every adaptation number goes through: intervals, paired counts, controls, seeds.

One module so ``vgmps adapt``, the report, the training-time check and the benchmarks print
the same statistics the same way:

* **Splits.** ``train`` tasks for meta-training, ``valid`` tasks for choosing settings and for the
  learning curve during training, ``test`` tasks only for the tables (``robot_envs.base.SPLITS``;
  the three are drawn from independent streams and checked disjoint).
* **Several starts per task.** ``adapt.eval_episodes`` deterministic episodes per task, each with
  its own seed, so start noise (block position, hand offset) differs between them.
* **Intervals.** A success rate comes with a 95% Wilson score interval over episodes (the episodes
  are treated as independent draws) and a 95% percentile bootstrap over tasks (tasks resampled
  with all their episodes, which also covers the correlation between starts of one task).
  Gains (after K steps minus before) get a paired bootstrap over tasks.
* **Paired view.** Per task, success after step K against step 0: improved, same or worse; and the
  change of each final step metric (push's distance, door's angle error), with its paired interval.
* **Reward-shuffled control.** ``run_adaptation(..., shuffle_rewards=True)`` runs the same routine
  with each task's rewards replaced by another task's (a derangement drawn once per run): if
  the policy gains as much without its own reward, the gain is not adaptation. ``with_control=True``
  runs it beside the real adaptation in the same call, sharing the episodes the two have in common.
* **Seeds.** ``seed_summary`` gives mean, standard deviation and range over training seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

LEVEL = 0.95
CONTROL = "shuffled"  # the name the reward-shuffled control's results go under (adapt, report, benchmarks)
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Rate:
    """A success rate with its 95% intervals: Wilson over episodes, bootstrap over tasks."""

    value: float
    episodes: int
    tasks: int
    wilson: tuple[float, float]
    bootstrap: tuple[float, float]

    def __str__(self) -> str:
        return format_interval(self.value, self.wilson)

    def as_dict(self, prefix: str = "success") -> dict[str, float]:
        return {
            prefix: self.value,
            f"{prefix}_wilson_low": self.wilson[0],
            f"{prefix}_wilson_high": self.wilson[1],
            f"{prefix}_boot_low": self.bootstrap[0],
            f"{prefix}_boot_high": self.bootstrap[1],
        }


def format_interval(value: float, interval: tuple[float, float]) -> str:
    return f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def with_unit(column: str, units: Mapping[str, str] | None) -> str:
    """``final_distance`` -> ``final_distance (m)`` where the family names the unit of ``distance``."""
    unit = (units or {}).get(column.removeprefix("final_"))
    return f"{column} ({unit})" if unit else column


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (scipy's ``binomtest``; no continuity correction)."""
    if n <= 0:
        raise ValueError("a success rate needs at least one episode")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_interval(values: np.ndarray, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one per task), resampling tasks."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("a bootstrap interval needs at least one value")
    if np.all(values == values[0]):  # every resample has the same mean; scipy would warn
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def success_rate(episode_success: np.ndarray, task_index: np.ndarray, seed: int = 0) -> Rate:
    """The rate over all episodes, with Wilson (episodes) and bootstrap (tasks) intervals."""
    episode_success = np.asarray(episode_success, dtype=bool)
    task_index = np.asarray(task_index)
    tasks = np.unique(task_index)
    per_task = np.array([episode_success[task_index == t].mean() for t in tasks])
    return Rate(
        value=float(episode_success.mean()),
        episodes=int(episode_success.size),
        tasks=int(tasks.size),
        wilson=wilson_interval(int(episode_success.sum()), int(episode_success.size)),
        bootstrap=bootstrap_interval(per_task, seed),
    )


def paired_counts(per_task: np.ndarray) -> list[dict[str, int]]:
    """Per step, how many tasks' success (mean over their starts) rose, stayed or fell from step 0.

    ``per_task`` is [steps + 1, tasks]; row 0 is before adaptation.
    """
    per_task = np.asarray(per_task, dtype=float)
    base = per_task[0]
    out = []
    for step, row in enumerate(per_task):
        diff = row - base
        out.append({"step": step, "improved": int((diff > 1e-9).sum()), "same": int((np.abs(diff) <= 1e-9).sum()),
                    "worse": int((diff < -1e-9).sum())})
    return out


def gain(per_task: np.ndarray, step: int, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Mean per-task change from step 0 to ``step`` (of success, or any per-task value), with a paired bootstrap
    interval over tasks."""
    diff = np.asarray(per_task[step], dtype=float) - np.asarray(per_task[0], dtype=float)
    return float(diff.mean()), bootstrap_interval(diff, seed)


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation with no fixed point (rejection sampling: ~e tries on average)."""
    if n < 2:
        raise ValueError("the reward-shuffled control needs at least 2 tasks (each task takes another's rewards)")
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def rewards_from_other_tasks(batch, source: np.ndarray):
    """A copy of ``batch`` in which task i's episodes carry the rewards of task ``source[i]``'s episodes.

    Episode j of task i gets the rewards of episode j of task ``source[i]`` (every task has the
    same number of episodes); images, actions and everything else stay task i's own.
    """
    rewards = batch.rewards.copy()
    for task in range(len(batch.tasks)):
        mine, theirs = batch.episodes_of(task), batch.episodes_of(int(source[task]))
        if len(mine) != len(theirs):
            raise ValueError("reward shuffling needs the same number of episodes for every task")
        rewards[mine] = batch.rewards[theirs]
    return replace(batch, rewards=rewards)


def seed_summary(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and range of one number over training seeds."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("no seeds to summarise")
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "seeds": int(arr.size)}


def format_seeds(values: list[float]) -> str:
    s = seed_summary(values)
    return f"{s['mean']:.2f} ± {s['std']:.2f} (n={s['seeds']}, range {s['min']:.2f}-{s['max']:.2f})"


def protocol_rows(rows: list[dict], per_task: np.ndarray, seed: int = 0,
                  per_task_final: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Each step's row with its paired counts against step 0 and its gain (paired bootstrap over tasks).

    ``per_task_final`` ({metric: [steps + 1, tasks]}, e.g. ``AdaptationResult.per_task_final``) adds
    ``change_final_<metric>`` with its paired interval: success can stay flat while the final distance
    or angle error moves, and that change is part of what adaptation did.
    """
    out = []
    for row, counts in zip(rows, paired_counts(per_task)):
        step = int(row["step"])
        g, (low, high) = gain(per_task, step, seed)
        extra = {}
        for key, values in (per_task_final or {}).items():
            change, (c_low, c_high) = gain(values, step, seed)
            extra.update({f"change_final_{key}": change, f"change_final_{key}_low": c_low,
                          f"change_final_{key}_high": c_high})
        out.append({**row, **{k: v for k, v in counts.items() if k != "step"}, "gain": g, "gain_low": low, "gain_high": high,
                    **extra})
    return out
