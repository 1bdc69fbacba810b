"""Meta-test: K policy-gradient steps per held-out task on reward only, evaluated after each.

The same routine serves ``vgmps adapt``, the evaluation during training and the
benchmarks, so every number in a table comes from one code path. Evaluation
episodes use the policy mean and the same seeds at every step, so a change
between rows is the adaptation, not the luck of the start states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_envs import Task
from vision_gmps.inner import adapt_detached, split_by_task
from vision_gmps.policy import ConvGaussianPolicy, Params
from vision_gmps.rollouts import PolicyActor, RolloutBatch, Sampler

EVAL_SEED_OFFSET = 1_000_003


@dataclass
class AdaptationResult:
    rows: list[dict[str, float]]  # one per step: step, success, return, episodes, final_<extra>...
    # (eval_episodes=0: one per adaptation step, from its training rollouts, labelled with the step they ran at)
    per_task_success: np.ndarray  # [steps + 1, num_tasks]
    final_params: list[Params]
    last_eval: RolloutBatch
    first_eval: RolloutBatch


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
) -> AdaptationResult:
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
        rows.append({"step": step, **batch.summary(), "episodes": episodes})

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
        task_batches = split_by_task(policy, batch, params, gamma, baseline)
        params = [adapt_detached(policy, p, step_sizes, tb) for p, tb in zip(params, task_batches)]
        evaluate(step, batch)
    return AdaptationResult(rows, np.stack(per_task), params, evals[-1], evals[0])
