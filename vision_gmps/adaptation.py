"""Meta-test: K policy-gradient steps per held-out task on reward only, evaluated after each.

The same routine serves ``vgmps adapt``, the evaluation during training and the
benchmarks, so every number in a table comes from one code path. Evaluation
episodes use the policy mean and the same seeds at every step, so a change
between rows is the adaptation, not the luck of the start states.

``shuffle_rewards=True`` is the reward-shuffled control (``vision_gmps.evaluation``): the
same steps, with each task's rewards taken from another task's rollouts of that step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_envs import Task
from vision_gmps.evaluation import derangement, rewards_from_other_tasks, success_rate
from vision_gmps.inner import adapt_detached, split_by_task
from vision_gmps.policy import ConvGaussianPolicy, Params
from vision_gmps.rollouts import PolicyActor, RolloutBatch, Sampler

EVAL_SEED_OFFSET = 1_000_003


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
) -> AdaptationResult:
    source = derangement(len(tasks), np.random.default_rng([seed, 0x5F1E])) if shuffle_rewards else None
    params = [{k: v.detach() for k, v in policy.params().items()} for _ in tasks]
    rows: list[dict[str, float]] = []
    per_task: list[np.ndarray] = []
    episodes = 0
    evals: list[RolloutBatch] = []

    def evaluate(step: int, rollouts: RolloutBatch | None = None) -> None:
        if eval_episodes == 0:  # hardware: no separate evaluation episodes; report the training rollouts
            if rollouts is None:
                return
            step, batch = step - 1, rollouts  # they ran with the parameters of the previous step
        else:
            batch = sampler.collect(
                tasks,
                eval_episodes,
                PolicyActor(policy, params, deterministic=True),
                seed=seed + EVAL_SEED_OFFSET,
                progress=f"eval step {step}" if progress else None,
            )
        evals.append(batch)
        per_task.append(batch.per_task(batch.episode_success.astype(float)))
        rate = success_rate(batch.episode_success, batch.task_index, seed=step)
        rows.append({"step": step, **batch.summary(), **rate.as_dict(), "episodes": episodes})

    evaluate(0)
    for step in range(1, steps + 1):
        batch = sampler.collect(
            tasks,
            rollouts_per_task,
            PolicyActor(policy, params, deterministic=False, seed=seed + step),
            seed=seed + step,
            progress=f"adapt step {step}" if progress else None,
        )
        episodes += batch.num_episodes
        rollouts = batch  # as run, with their own rewards (what eval_episodes=0 reports)
        if source is not None:
            batch = rewards_from_other_tasks(batch, source)
        task_batches = split_by_task(policy, batch, params, gamma, baseline)
        params = [adapt_detached(policy, p, step_sizes, tb) for p, tb in zip(params, task_batches)]
        evaluate(step, rollouts)
    return AdaptationResult(rows, np.stack(per_task), params, evals[-1], evals[0], source, seed + EVAL_SEED_OFFSET)
