"""Discounted returns, a linear feature baseline and per-task standardised advantages."""

from __future__ import annotations

import numpy as np

BASELINES = ("linear", "none")


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Reward-to-go for [N, T] rewards."""
    out = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out


def linear_baseline(proprio: np.ndarray, returns: np.ndarray, reg: float = 1e-5) -> np.ndarray:
    """rllab's linear feature baseline, fit by ridge regression on one task's episodes.

    Features per step: proprio, proprio^2, t, t^2, t^3 (t scaled to [0, 1]) and a constant.
    """
    n, horizon, _ = proprio.shape
    t = np.broadcast_to((np.arange(horizon) / horizon)[None, :, None], (n, horizon, 1))
    p = np.clip(proprio, -10, 10)
    feats = np.concatenate([p, p**2, t, t**2, t**3, np.ones_like(t)], axis=-1).reshape(n * horizon, -1)
    target = returns.reshape(-1)
    # Increase the ridge until the solve is well posed (as rllab does), rather than fail on
    # collinear features such as a proprio entry that never changes.
    for scale in (1, 10, 100, 1000, 10000):
        a = feats.T @ feats + reg * scale * np.eye(feats.shape[1])
        coeffs = np.linalg.lstsq(a, feats.T @ target, rcond=None)[0]
        if np.all(np.isfinite(coeffs)):
            break
    return (feats @ coeffs).reshape(n, horizon)


def task_advantages(
    rewards: np.ndarray, proprio: np.ndarray, task_index: np.ndarray, gamma: float, baseline: str
) -> np.ndarray:
    """[N, T] advantages, baseline fit and standardisation done within each task's episodes."""
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; use one of {BASELINES}")
    returns = discounted_returns(rewards, gamma)
    adv = np.zeros_like(returns)
    for task in np.unique(task_index):
        rows = task_index == task
        a = returns[rows]
        if baseline == "linear":
            a = a - linear_baseline(proprio[rows], returns[rows])
        adv[rows] = (a - a.mean()) / (a.std() + 1e-8)
    return adv.astype(np.float32)
