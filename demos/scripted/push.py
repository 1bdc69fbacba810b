"""Push expert: one straight push from behind the block towards the goal (default), or two
axis-aligned pushes (forward/back, then sideways) with ``strategy="axis"``.

The straight push is what a meta-learned policy can imitate and adapt: its trajectories for
different goals differ smoothly in the push direction and length. The axis strategy is more
precise (about 1-2 cm) but its trajectories switch between phases.

Stateless (reads only ``info["state"]``), so it labels any visited state for DAgger: which
phase applies is decided each step from where the hand is relative to the block and goal.
Tuned against the fast servo controller of ``robot_envs.push``: the arm keeps moving after a
step, so horizontal moves use a gain below 1 (full gain overshoots by centimetres and
oscillates), and pushes happen low (1.5 cm above the table): higher, the fingers press the
block into the table and tip it.
"""

from __future__ import annotations

import numpy as np

from demos.scripted.base import ScriptedExpert

STRATEGIES = ("straight", "axis")


class PushExpert(ScriptedExpert):
    """``straight``: push along the line from the block's centre to the goal, steering back onto
    it each step (a diagonal push on a box face drifts; ``line_tol`` bounds the drift before the
    hand goes round to a new approach point). ``axis``: push a face along its normal through the
    block's centre, first in x until the block is level with the goal, then in y.

    Each push: glide down to the approach point ``approach_gap`` behind the face (going round
    the block's corners at push height when it is in the way), then push, slowing down near the
    goal. ``goal_tol`` (straight) or ``x_tol``/``y_tol`` (axis) bound the final error, inside
    the 4 cm success radius.
    """

    def __init__(
        self,
        max_delta: float = 0.05,
        push_height: float = 0.015,
        approach_gap: float = 0.05,
        push_step: float = 0.025,
        y_tol: float = 0.02,
        x_tol: float = 0.01,
        gain: float = 0.6,
        clearance: float = 0.03,
        strategy: str = "straight",
        goal_tol: float = 0.025,
        line_tol: float | None = None,
    ) -> None:
        # how far the hand may drift off the push line before it re-approaches: diagonal pushes drift more
        self.line_tol = line_tol if line_tol is not None else {"straight": 0.03, "axis": 0.02}.get(strategy, 0.02)
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown push expert strategy {strategy!r}; use one of {STRATEGIES}")
        self.strategy = strategy
        self.goal_tol = goal_tol
        self.max_delta = max_delta
        self.push_height = push_height
        self.approach_gap = approach_gap
        self.push_step = push_step
        self.y_tol = y_tol
        self.x_tol = x_tol
        self.gain = gain
        self.clearance = clearance  # keep-out margin around the block for the fingers

    def push_direction(self, block: np.ndarray, goal: np.ndarray, eef: np.ndarray) -> tuple[np.ndarray, float]:
        """Unit push direction (an axis) and the distance left along it; zero distance: done.

        Forward/back (x) first, sideways (y) last: the fingers drag the block a little when
        they leave it, and after the last push they never have to. Once the hand sits beside the
        block for the sideways push, an x error up to ``2.5 * x_tol`` is tolerated, so small
        drift does not flip the plan back and forth.
        """
        err = goal - block
        if self.strategy == "straight":
            distance = float(np.linalg.norm(err))
            if distance <= self.goal_tol:
                return np.zeros(2), 0.0
            return err / distance, distance
        y_dir = np.array([0.0, np.sign(err[1]) or 1.0])
        rel = eef[:2] - block
        in_y_position = float(rel @ y_dir) < 0.0 and abs(float(rel[0])) < 0.02
        x_limit = 2.5 * self.x_tol if in_y_position else self.x_tol
        if abs(err[0]) > x_limit:
            return np.array([np.sign(err[0]), 0.0]), abs(float(err[0]))
        if abs(err[1]) > self.y_tol:
            return y_dir, abs(float(err[1]))
        return np.zeros(2), 0.0

    def target(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Where the end effector should head this step (xyz, metres), and the gain to get there."""
        eef = np.asarray(state["eef_pos"], dtype=np.float64)
        block = np.asarray(state["block_pos"], dtype=np.float64)[:2]
        goal = np.asarray(state["goal"], dtype=np.float64)[:2]
        half = float(np.asarray(state["block_half_size"]).ravel()[0])
        push_z = float(np.asarray(state["goal"])[2]) + self.push_height  # goal z is the table top
        d, remaining = self.push_direction(block, goal, eef)
        rel = eef[:2] - block
        low = eef[2] < push_z + 0.03
        if remaining == 0.0:
            return np.array([eef[0], eef[1], max(eef[2], push_z + 0.01)]), self.gain  # done: hold still
        along = float(rel @ d)
        side = rel - along * d
        if low and float(np.linalg.norm(side)) < self.line_tol and -(half + self.approach_gap + 0.03) < along < -(half - 0.012):
            # Push: advance along d, steer back onto the line through the block's centre;
            # slow down near the goal, a fast push makes the block slide past it.
            step = float(np.clip(0.5 * remaining, 0.008, self.push_step))
            return np.array([*(eef[:2] + d * step - side), push_z]), 1.0
        approach = block - d * (half + self.approach_gap)
        if low:
            if float(np.abs(rel).max()) < half + self.clearance:
                # Touching the block on the wrong side: back away level (lifting drags it along).
                away = rel / max(float(np.linalg.norm(rel)), 1e-6)
                return np.array([*(eef[:2] + 0.03 * away), push_z]), 1.0
            # Go around the block at push height, via a corner when it is in the way.
            return np.array([*self._waypoint(eef[:2], approach, block, half), push_z]), self.gain
        # Above the table: glide down towards the approach point, high while far from it.
        xy_err = float(np.linalg.norm(eef[:2] - approach))
        return np.array([*approach, push_z + min(2.0 * xy_err, 0.2)]), self.gain

    def _blocked(self, start: np.ndarray, end: np.ndarray, block: np.ndarray, half: float) -> bool:
        points = start + np.linspace(0.0, 1.0, 12)[:, None] * (end - start)
        return bool((np.abs(points - block).max(axis=1) < half + self.clearance).any())

    def _waypoint(self, eef: np.ndarray, approach: np.ndarray, block: np.ndarray, half: float) -> np.ndarray:
        if not self._blocked(eef, approach, block, half):
            return approach
        r = half + self.approach_gap
        corners = [block + r * np.array([sx, sy]) for sx in (-1.0, 1.0) for sy in (-1.0, 1.0)]
        free = [c for c in corners if not self._blocked(eef, c, block, half)] or corners
        return min(free, key=lambda c: float(np.linalg.norm(eef - c) + np.linalg.norm(c - approach)))

    def act(self, state: dict[str, np.ndarray]) -> np.ndarray:
        target, gain = self.target(state)
        delta = target - np.asarray(state["eef_pos"], dtype=np.float64)
        # Vertical moves never pass over the block, so they may overshoot: full gain on z.
        gains = np.array([gain, gain, 1.0])
        return np.clip(gains * delta / self.max_delta, -1.0, 1.0).astype(np.float32)
