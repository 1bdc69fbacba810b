from __future__ import annotations

import numpy as np
import pytest

from vision_gmps.advantages import discounted_returns, linear_baseline, task_advantages


def test_discounted_returns_match_the_definition():
    rewards = np.array([[0.0, 1.0, 0.0, 1.0]])
    g = 0.9
    expected = [g * 1 + g**3 * 1, 1 + g**2, g, 1.0]
    np.testing.assert_allclose(discounted_returns(rewards, g)[0], expected)


def test_linear_baseline_fits_time_dependent_returns_exactly():
    n, horizon = 6, 10
    proprio = np.random.default_rng(0).normal(size=(n, horizon, 2))
    t = np.arange(horizon) / horizon
    returns = np.broadcast_to(3.0 - 2.0 * t + 0.5 * t**2, (n, horizon))
    np.testing.assert_allclose(linear_baseline(proprio, returns), returns, atol=1e-4)


def test_advantages_are_standardised_within_each_task():
    rng = np.random.default_rng(1)
    rewards = rng.random((8, 5)).astype(np.float32)
    rewards[4:] *= 100  # task 1 has much larger returns: per-task scaling removes that
    proprio = rng.normal(size=(8, 5, 3))
    task_index = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    for baseline in ("linear", "none"):
        adv = task_advantages(rewards, proprio, task_index, 0.99, baseline)
        for task in (0, 1):
            assert adv[task_index == task].mean() == pytest.approx(0.0, abs=1e-5)
            assert adv[task_index == task].std() == pytest.approx(1.0, abs=1e-3)


def test_all_zero_rewards_give_zero_advantages_and_unknown_baseline_errors():
    adv = task_advantages(np.zeros((4, 5)), np.ones((4, 5, 2)), np.zeros(4, int), 0.99, "linear")
    assert np.all(adv == 0)
    with pytest.raises(ValueError, match="unknown baseline 'linar'"):
        task_advantages(np.zeros((4, 5)), np.ones((4, 5, 2)), np.zeros(4, int), 0.99, "linar")
