"""The evaluation protocol: intervals against known values, paired counts, the reward-shuffled control, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from robot_envs import SPLITS, make_family
from robot_envs.base import Task
from vision_gmps import adaptation
from vision_gmps.config import load_config
from vision_gmps.evaluation import (
    CONTROL,
    bootstrap_interval,
    derangement,
    paired_counts,
    protocol_rows,
    rewards_from_other_tasks,
    seed_summary,
    success_rate,
    wilson_interval,
)
from vision_gmps.policy import StepSizes, build_policy
from vision_gmps.report import final_metric_text, summary_text
from vision_gmps.rollouts import RolloutBatch, Sampler


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (8, 10, 0.4902, 0.9433),  # textbook Wilson 95% values (z = 1.96, no continuity correction)
        (0, 20, 0.0, 0.1611),
        (40, 50, 0.6696, 0.8876),
        (20, 20, 0.8389, 1.0),
    ],
)
def test_wilson_interval_matches_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_rejects_bad_counts():
    with pytest.raises(ValueError, match="at least one episode"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r"successes must be in \[0, 5\]"):
        wilson_interval(6, 5)


def test_bootstrap_over_tasks_matches_the_resampling_distribution():
    # 20 tasks, half solved: the bootstrap mean is Binomial(20, 0.5) / 20, whose 2.5% / 97.5% points are 0.30 / 0.70
    values = np.array([0.0, 1.0] * 10)
    lo, hi = bootstrap_interval(values, seed=0)
    assert lo == pytest.approx(stats.binom.ppf(0.025, 20, 0.5) / 20, abs=0.051)
    assert hi == pytest.approx(stats.binom.ppf(0.975, 20, 0.5) / 20, abs=0.051)
    assert bootstrap_interval(np.ones(7)) == (1.0, 1.0)


def test_success_rate_counts_episodes_and_tasks():
    # 3 tasks x 2 starts: task 0 solved twice, task 1 once, task 2 never
    success = np.array([1, 1, 1, 0, 0, 0], bool)
    rate = success_rate(success, np.array([0, 0, 1, 1, 2, 2]))
    assert rate.value == pytest.approx(0.5) and rate.episodes == 6 and rate.tasks == 3
    assert rate.wilson == pytest.approx(wilson_interval(3, 6))
    assert 0.0 <= rate.bootstrap[0] <= 0.5 <= rate.bootstrap[1] <= 1.0
    assert str(rate) == f"0.50 [{rate.wilson[0]:.2f}, {rate.wilson[1]:.2f}]"


def test_paired_counts_and_gains_per_step():
    per_task = np.array([
        [0.0, 1.0, 0.5, 0.0],  # before
        [1.0, 1.0, 0.0, 0.0],  # step 1: task 0 up, task 1 same, task 2 down, task 3 same
        [1.0, 1.0, 1.0, 1.0],  # step 2: tasks 0, 2, 3 up
    ])
    counts = paired_counts(per_task)
    assert counts == [
        {"step": 0, "improved": 0, "same": 4, "worse": 0},
        {"step": 1, "improved": 1, "same": 2, "worse": 1},
        {"step": 2, "improved": 3, "same": 1, "worse": 0},
    ]
    rows = protocol_rows([{"step": s, "success": float(per_task[s].mean())} for s in range(3)], per_task)
    assert rows[1]["gain"] == pytest.approx(0.125) and rows[2]["gain"] == pytest.approx(0.625)
    assert rows[2]["gain_low"] <= 0.625 <= rows[2]["gain_high"]


def test_seed_summary():
    s = seed_summary([0.8, 0.9, 0.7])
    assert s["mean"] == pytest.approx(0.8) and s["std"] == pytest.approx(0.1) and s["seeds"] == 3


def test_derangement_has_no_fixed_point():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 50):
        perm = derangement(n, rng)
        assert sorted(perm.tolist()) == list(range(n)) and not np.any(perm == np.arange(n))
    with pytest.raises(ValueError, match="at least 2 tasks"):
        derangement(1, rng)


def _batch(num_tasks: int, per_task: int) -> RolloutBatch:
    n, t = num_tasks * per_task, 4
    task_index = np.repeat(np.arange(num_tasks), per_task)
    within = np.tile(np.arange(per_task), num_tasks)  # episode number inside its task
    rewards = np.repeat((task_index * 10 + within)[:, None], t, axis=1).astype(np.float32)
    return RolloutBatch(
        tasks=[Task("point", "test", i, {}) for i in range(num_tasks)], task_index=task_index,
        images=np.zeros((n, t, 2, 2, 3), np.uint8), proprio=np.zeros((n, t, 2), np.float32),
        actions=np.zeros((n, t, 2), np.float32), rewards=rewards, success=np.zeros((n, t), bool),
    )


def test_rewards_come_from_the_source_task_episode_by_episode():
    batch = _batch(3, 2)
    shuffled = rewards_from_other_tasks(batch, np.array([2, 0, 1]))
    for task, source in enumerate([2, 0, 1]):
        np.testing.assert_array_equal(shuffled.rewards[batch.episodes_of(task)], batch.rewards[batch.episodes_of(source)])
    np.testing.assert_array_equal(batch.rewards[:, 0], [0, 1, 10, 11, 20, 21])  # the input is not modified
    assert shuffled.images is batch.images and shuffled.actions is batch.actions


def _point_adaptation(num_tasks: int, num_envs: int):
    """A fresh 16x16 point policy with fixed step sizes, a sampler and test-split tasks to adapt it on."""
    cfg = load_config(["env=point", "env.kwargs.image_size=[16,16]"])
    family = make_family(cfg.env.family, **cfg.env.kwargs)
    torch.manual_seed(0)
    policy = build_policy((16, 16, 3), 2, 2, cfg.policy)
    step_sizes = StepSizes(policy, 0.5, learnable=False).as_dict()
    return policy, step_sizes, Sampler(family, num_envs), family.sample("test", num_tasks, 0)


def test_shuffled_control_is_the_same_routine_with_other_tasks_rewards(monkeypatch):
    """run_adaptation(shuffle_rewards=True) collects the same rollouts as the real run and only swaps rewards."""
    policy, step_sizes, sampler, tasks = _point_adaptation(num_tasks=4, num_envs=4)
    collected, adapted_on = [], []
    real_collect, real_split = sampler.collect, adaptation.split_by_task

    def spy_collect(tasks_, episodes, act, seed, progress=None):
        batch = real_collect(tasks_, episodes, act, seed, progress)
        if not act.deterministic:  # the adaptation rollouts, not the evaluations
            collected.append(batch)
        return batch

    def spy_split(policy_, batch, params, gamma, baseline):
        adapted_on.append(batch)
        return real_split(policy_, batch, params, gamma, baseline)

    monkeypatch.setattr(sampler, "collect", spy_collect)
    monkeypatch.setattr(adaptation, "split_by_task", spy_split)
    try:
        real = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 20, eval_episodes=2)
        control = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 20, eval_episodes=2, shuffle_rewards=True)
    finally:
        sampler.close()
    assert real.reward_source is None and control.reward_source is not None
    source = control.reward_source
    assert not np.any(source == np.arange(len(tasks)))
    (real_collected, control_collected), (real_used, control_used) = collected, adapted_on
    assert real_used is real_collected  # the real run adapts on its own rewards
    # same seeds, same parameters before the first step: the control collected exactly the real run's rollouts
    np.testing.assert_array_equal(real_collected.actions, control_collected.actions)
    for task in range(len(tasks)):
        mine, theirs = control_collected.episodes_of(task), control_collected.episodes_of(int(source[task]))
        np.testing.assert_array_equal(control_used.rewards[mine], control_collected.rewards[theirs])
        np.testing.assert_array_equal(control_used.actions[mine], control_collected.actions[mine])
    assert control_collected.rewards.sum() > 0, "no reward at all: the test would not tell the rewards apart"
    assert real.rows[0]["success"] == control.rows[0]["success"]
    assert real.per_task_success.shape == (2, 4) and real.rows[0]["success_wilson_high"] > 0


def test_control_beside_the_real_run_equals_the_two_runs_apart_for_fewer_episodes():
    """with_control=True shares the step-0 evaluation and first-step rollouts, and changes no number."""
    policy, step_sizes, sampler, tasks = _point_adaptation(num_tasks=3, num_envs=8)
    collected = []
    real_collect = sampler.collect

    def counting_collect(tasks_, episodes, act, seed, progress=None):
        collected.append(episodes * len(tasks_))
        return real_collect(tasks_, episodes, act, seed, progress)

    sampler.collect = counting_collect
    try:
        apart = [adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 2, 8, eval_episodes=1, seed=3,
                                           shuffle_rewards=shuffled) for shuffled in (False, True)]
        apart_episodes, collected[:] = sum(collected), []
        together = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 2, 8, eval_episodes=1, seed=3,
                                             with_control=True)
        with pytest.raises(ValueError, match="already is the control"):
            adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 20, shuffle_rewards=True, with_control=True)
    finally:
        sampler.close()
    assert apart_episodes - sum(collected) == 3 * (1 + 8)  # the control's step-0 evaluation and first rollouts
    assert apart[0].control is None and together.control.control is None
    for one, other in ((apart[0], together), (apart[1], together.control)):
        assert one.rows == other.rows
        np.testing.assert_array_equal(one.per_task_success, other.per_task_success)
        np.testing.assert_array_equal(one.reward_source if one.reward_source is not None else [],
                                      other.reward_source if other.reward_source is not None else [])
        for a, b in zip(one.final_params, other.final_params):
            assert all(torch.equal(a[k], b[k]) for k in a)
    # the two arms did diverge (otherwise sharing past step 1 would go unnoticed)
    assert any(not torch.equal(a[k], b[k]) for a, b in zip(together.final_params, together.control.final_params)
               for k in policy.adapted_names)


def test_valid_split_is_disjoint_and_train_test_are_unchanged():
    family = make_family("point")
    assert SPLITS[:2] == ("train", "test")
    for split in ("train", "test"):  # the streams every earlier number was measured on
        rng = np.random.default_rng([0, SPLITS.index(split), 0x7A5C])
        expected = [family._sample_params(rng) for _ in range(5)]
        assert [t.params for t in family.sample(split, 5, 0)] == expected
    keys = {split: {family._key(t) for t in family.sample(split, 50, 0)} for split in SPLITS}
    assert not keys["valid"] & keys["train"] and not keys["valid"] & keys["test"] and not keys["train"] & keys["test"]


def test_final_metrics_per_task_give_a_paired_change_next_to_the_control():
    """Success can stay flat while the final distance moves: each task's final metric is kept, and the change gets an interval."""
    policy, step_sizes, sampler, tasks = _point_adaptation(num_tasks=3, num_envs=6)
    try:
        real = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 2, 6, eval_episodes=2, with_control=True)
    finally:
        sampler.close()
    for result in (real, real.control):
        distance = result.per_task_final["distance"]
        assert distance.shape == (3, 3)  # steps + 1, tasks
        for row, per_task in zip(result.rows, distance):  # every task has 2 starts: the mean of task means is the row's
            assert per_task.mean() == pytest.approx(row["final_distance"])
    rows = protocol_rows(real.rows, real.per_task_success, per_task_final=real.per_task_final)
    change = real.per_task_final["distance"][2] - real.per_task_final["distance"][0]
    assert rows[2]["change_final_distance"] == pytest.approx(change.mean()) and rows[0]["change_final_distance"] == 0
    assert rows[2]["change_final_distance_low"] <= change.mean() <= rows[2]["change_final_distance_high"]
    assert np.any(change != 0), "no task moved: the test would not see a wrong sign or step"
    (text,) = final_metric_text({"learned": real, CONTROL: real.control})
    assert text.startswith(f"The final distance went from {real.rows[0]['final_distance']:.3g} to")
    assert f"{rows[2]['change_final_distance']:+.3g}" in text and "with the shuffled reward" in text
    # a family that names its units gets them after every number (push: m, door: deg)
    (text,) = final_metric_text({"learned": real, CONTROL: real.control}, units={"distance": "m"})
    assert text.startswith(f"The final distance went from {real.rows[0]['final_distance']:.3g} m to")
    assert f"{rows[2]['change_final_distance_high']:+.3g}] m per task" in text and text.endswith("] m.")
    assert make_family("push").step_metric_units == {"distance": "m"}


def test_shrunk_steps_reach_the_adaptation_and_leave_the_evaluation_alone():
    """adapt.shrink_steps changes the adaptation step only: same step-0 evaluation, a shorter step, the kept share logged."""
    policy, step_sizes, sampler, tasks = _point_adaptation(num_tasks=3, num_envs=6)
    try:
        full, shrunk = (adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 6, eval_episodes=2, shrink=s)
                        for s in (False, True))
    finally:
        sampler.close()
    assert {k: v for k, v in shrunk.rows[0].items() if k != "step_kept"} == full.rows[0]
    assert shrunk.rows[0]["step_kept"] == 1.0 and 0.0 <= shrunk.rows[1]["step_kept"] < 1.0
    start = policy.params()
    for a, b in zip(full.final_params, shrunk.final_params):
        for k in policy.adapted_names:
            assert (b[k] - start[k]).norm() <= (a[k] - start[k]).norm() + 1e-7


def _fake_result(per_task: list[list[float]]) -> adaptation.AdaptationResult:
    """An adaptation result with the given per-task success ([steps + 1][tasks]) and nothing else."""
    per_task_success = np.array(per_task, dtype=float)
    tasks = [Task("point", "test", i, {}) for i in range(per_task_success.shape[1])]
    first = RolloutBatch(tasks, np.arange(len(tasks)), *(np.zeros((len(tasks), 1)) for _ in range(5)))
    rows = []
    for step, values in enumerate(per_task_success):
        rate = success_rate(values > 0.5, np.arange(len(tasks)))
        rows.append({"step": step, **rate.as_dict()})
    return adaptation.AdaptationResult(rows, per_task_success, [], first, first)


@pytest.mark.parametrize("real, control, expected", [
    ([[0] * 20, [1] * 16 + [0] * 4], [[0] * 20, [1] * 2 + [0] * 18], "do not overlap"),
    ([[0] * 20, [1] * 5 + [0] * 15], [[0] * 20, [1] * 3 + [0] * 17], "larger than the control's, but the intervals overlap"),
    ([[1] * 10 + [0] * 10, [1] * 6 + [0] * 14], [[1] * 10 + [0] * 10, [1] * 4 + [0] * 16],
     "Adaptation did not raise held-out success"),  # both lose: no gain to credit, however they compare
    ([[0] * 20, [1] * 3 + [0] * 17], [[0] * 20, [1] * 3 + [0] * 17], "The control gained as much"),
])
def test_the_report_reads_the_control_in_plain_words(real, control, expected):
    text = summary_text({"learned": _fake_result(real), CONTROL: _fake_result(control)})
    assert expected in text
    others = {"do not overlap", "larger than the control's", "Adaptation did not raise", "The control gained as much"}
    assert not any(o in text for o in others if o not in expected)


def test_natural_steps_move_only_the_output_layer_in_both_arms():
    """run_adaptation(natural_scale=...): every step is inner.natural_output_step, for the real run and its control."""
    policy, step_sizes, sampler, tasks = _point_adaptation(num_tasks=3, num_envs=6)
    try:
        result = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 2, 6, eval_episodes=2,
                                           with_control=True, natural_scale=1.0)
        with pytest.raises(ValueError, match="choose one"):
            adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 6, shrink=True, natural_scale=1.0)
    finally:
        sampler.close()
    start, layer = policy.params(), policy.output_layer + "."
    for params in result.final_params + result.control.final_params:
        moved = {k for k in start if not torch.equal(params[k], start[k])}
        assert moved == {layer + "weight", layer + "bias"}, moved


def test_exploration_shift_widens_the_adaptation_rollouts_only(monkeypatch):
    """adapt.explore_log_std_shift: the steps' rollouts explore with the shifted noise; evaluations act on the mean."""
    policy, step_sizes, sampler, tasks = _point_adaptation(num_tasks=2, num_envs=4)
    used: list[tuple[bool, torch.Tensor, np.ndarray]] = []
    real_collect = sampler.collect

    def spy_collect(tasks_, episodes, act, seed, progress=None):
        batch = real_collect(tasks_, episodes, act, seed, progress)
        used.append((act.deterministic, act.params_per_group[0]["log_std"].clone(), batch.actions))
        return batch

    monkeypatch.setattr(sampler, "collect", spy_collect)
    shift = [0.0, 1.0]
    try:
        plain = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 4, eval_episodes=2, natural_scale=1.0)
        plain_used, used[:] = list(used), []
        wide = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 4, eval_episodes=2, natural_scale=1.0,
                                         explore_log_std_shift=shift)
        with pytest.raises(ValueError, match="explore_log_std_shift has 3 values but the policy has 2"):
            adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 4, explore_log_std_shift=[0.1, 0.2, 0.3])
    finally:
        sampler.close()
    base = policy.log_std.detach()
    explored = [(log_std, actions) for deterministic, log_std, actions in used if not deterministic]
    assert explored and all(torch.allclose(s, base + torch.tensor(shift)) for s, _ in explored)
    plain_explored = [(log_std, actions) for deterministic, log_std, actions in plain_used if not deterministic]
    assert all(torch.equal(s, base) for s, _ in plain_explored)
    # the step-0 evaluation is the same episodes; the step's rollouts spread wider sideways, as far along
    assert np.array_equal(wide.first_eval.actions, plain.first_eval.actions)
    wide_actions, plain_actions = explored[0][1], plain_explored[0][1]
    assert np.array_equal(wide_actions[:, 0, 0], plain_actions[:, 0, 0])  # the same noise draws, first step
    assert np.std(wide_actions[..., 1]) > 1.5 * np.std(plain_actions[..., 1])
    assert torch.allclose(wide.final_params[0]["log_std"], base + torch.tensor(shift))


def test_tasks_whose_rollouts_missed_explore_wider_from_the_next_step(monkeypatch):
    """adapt.unrewarded_below: only a task whose step earned too little reward explores wider after it, once; the
    control decides on the rewards it learns from (another task's), through the same routine."""
    from dataclasses import replace

    policy, step_sizes, sampler, tasks = _point_adaptation(num_tasks=2, num_envs=4)
    explored: list[list[torch.Tensor]] = []  # per exploring collection: each task's log std
    real_collect = sampler.collect

    def spy_collect(tasks_, episodes, act, seed, progress=None):
        batch = real_collect(tasks_, episodes, act, seed, progress)
        if act.deterministic:
            return batch
        explored.append([p["log_std"].clone() for p in act.params_per_group])
        rewards = np.zeros_like(batch.rewards)  # task 0: one rewarded rollout in 4 (0.25); task 1: none
        rewards[batch.episodes_of(0)[0], -1] = 1.0
        return replace(batch, rewards=rewards)

    monkeypatch.setattr(sampler, "collect", spy_collect)
    shift = [0.0, 0.5]
    try:
        result = adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 3, 4, eval_episodes=1, with_control=True,
                                           natural_scale=1.0, unrewarded_below=0.2, unrewarded_log_std_shift=shift)
        with pytest.raises(ValueError, match="go together"):
            adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 4, unrewarded_below=0.2)
        with pytest.raises(ValueError, match="unrewarded_log_std_shift has 3 values"):
            adaptation.run_adaptation(policy, step_sizes, sampler, tasks, 1, 4, unrewarded_below=0.2,
                                      unrewarded_log_std_shift=[0.0, 0.1, 0.2])
    finally:
        sampler.close()
    base, wide = policy.log_std.detach(), policy.log_std.detach() + torch.tensor(shift)
    # collections: step 1 (shared), then real and control for steps 2 and 3
    assert len(explored) == 5
    assert all(torch.equal(s, base) for s in explored[0])
    real_2, control_2, real_3, control_3 = explored[1:]
    assert torch.equal(real_2[0], base) and torch.allclose(real_2[1], wide)  # the real arm: task 1 missed
    assert torch.allclose(control_2[0], wide) and torch.equal(control_2[1], base)  # task 0 borrowed task 1's zeros
    assert torch.allclose(real_3[1], wide) and torch.allclose(control_3[0], wide)  # widened once, not again
    assert torch.equal(real_3[0], base) and torch.equal(control_3[1], base)  # 0.25 of their rollouts rewarded: kept
    assert [r["widened"] for r in result.rows] == [0.0, 0.0, 0.5, 0.5]
    assert [r["widened"] for r in result.control.rows] == [0.0, 0.0, 0.5, 0.5]


@pytest.mark.parametrize("value", ["wide", 5.0, [0.0, float("nan")]])
def test_bad_exploration_shift_is_refused_before_running(value):
    from vision_gmps.checks import check_settings
    from vision_gmps.config import ConfigError

    cfg = load_config(["env=point"])
    cfg.adapt.explore_log_std_shift = value
    with pytest.raises(ConfigError, match="explore_log_std_shift=.*within"):
        check_settings(cfg, "adapt")


@pytest.mark.parametrize(("settings", "message"), [
    ({"unrewarded_below": 1.5, "unrewarded_log_std_shift": 0.5}, "unrewarded_below=1.5: must be null or a fraction"),
    ({"unrewarded_below": 0.2}, "go together"),
    ({"unrewarded_below": 0.2, "unrewarded_log_std_shift": 9.0}, "unrewarded_log_std_shift=9.0: .*within"),
])
def test_bad_unrewarded_widening_is_refused_before_running(settings, message):
    from vision_gmps.checks import check_settings
    from vision_gmps.config import ConfigError

    cfg = load_config(["env=point"])
    for key, value in settings.items():
        cfg.adapt[key] = value
    with pytest.raises(ConfigError, match=message):
        check_settings(cfg, "adapt")
