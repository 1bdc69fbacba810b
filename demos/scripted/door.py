"""Door expert: grip the vertical swivel handle from above, carry it round the hinge to the target angle.

Stateless (reads only ``info["state"]``), so it labels any visited state for DAgger; the
phase is decided each step from where the hand is relative to the handle and from the
finger gap (``gripper_qpos``), which says whether the fingers are closed on the 3 cm bar:

* not holding the handle: gripper open; glide to the grasp point (``grasp_height`` above the
  handle's centre, fingers straddling the top of the bar), high while far from it and
  lifting straight up first when low beside it, so the fingers never sweep into the bar;
* at the grasp point (within 1 cm), or with the fingers closed on the bar (within 4 cm):
  close the gripper and move the grasp point along the hinge circle by ``turn_gain`` x the
  remaining angle (at most ``max_turn`` rad a step), which stops the door on the target
  and holds it there. Slow turns matter: the door has almost no damping, and a door swung
  fast slides the bar out of the 16 mm finger pads when the hand stops.

The Panda hand keeps a fixed top-down orientation (the env's controller holds it), so its
fingers always close along world y; the handle is a vertical bar on a swivel (see
``robot_envs.door``), so the grip stays the same from 0 to 90 degrees. Tuned against the
fast servo controller, whose damped IK leaves a steady error of ~1-2 cm at unit gain: the
gain rises to ``fine_gain`` (``hold_gain`` while holding) within ``fine_radius`` of the target.
With ``gripper="closed"`` (the env holds the gripper closed) the expert drops its gripper
command and acts in [dx, dy, dz].
"""

from __future__ import annotations

import numpy as np

from demos.scripted.base import ScriptedExpert


class DoorExpert(ScriptedExpert):
    def __init__(
        self,
        max_delta: float = 0.05,
        grasp_height: float = 0.05,
        grasp_xy_tol: float = 0.01,
        grasp_z_tol: float = 0.02,
        hold_xy_tol: float = 0.04,
        hold_z_tol: float = 0.03,
        hold_opening: tuple[float, float] = (0.012, 0.06),
        hover: float = 0.10,
        turn_gain: float = 0.6,
        max_turn: float = 0.03,
        gain: float = 0.8,
        fine_gain: float = 2.5,
        fine_radius: float = 0.03,
        hold_gain: float = 2.5,
        gripper: str = "policy",
    ) -> None:
        if gripper not in ("policy", "closed"):
            raise ValueError(f"unknown door gripper mode {gripper!r}; use 'policy' or 'closed'")
        self.gripper = gripper
        self.max_delta = max_delta
        self.grasp_height = grasp_height  # eef above the handle centre: pads ~1.5 cm below the bar's top
        self.grasp_xy_tol = grasp_xy_tol
        self.grasp_z_tol = grasp_z_tol
        self.hold_xy_tol = hold_xy_tol  # looser while the fingers are closed on the bar
        self.hold_z_tol = hold_z_tol
        self.hold_opening = hold_opening  # finger gap (m) that means "closed on the 3 cm bar"
        self.hover = hover
        self.turn_gain = turn_gain
        self.max_turn = max_turn
        self.gain = gain
        self.fine_gain = fine_gain
        self.fine_radius = fine_radius
        self.hold_gain = hold_gain  # keeps the bar centred on the finger pads, which are only 16 mm wide

    def target(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Where the end effector should head this step (xyz, metres) and the gripper command."""
        target, grip, _ = self._plan(state)
        return target, grip

    def _plan(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, float, bool]:
        """(target, gripper command, holding the handle)."""
        eef = np.asarray(state["eef_pos"], dtype=np.float64)
        handle = np.asarray(state["handle_pos"], dtype=np.float64)
        hinge = np.asarray(state["hinge_pos"], dtype=np.float64)
        angle = float(np.asarray(state["hinge_angle"]).ravel()[0])
        goal = float(np.asarray(state["target_angle"]).ravel()[0])
        grasp = handle + np.array([0.0, 0.0, self.grasp_height])
        rel = eef - grasp
        xy_err = float(np.linalg.norm(rel[:2]))
        opening = float(np.abs(np.asarray(state["gripper_qpos"], dtype=np.float64)).sum())
        at_handle = xy_err < self.grasp_xy_tol and abs(float(rel[2])) < self.grasp_z_tol
        holding = (
            self.hold_opening[0] < opening < self.hold_opening[1]
            and xy_err < self.hold_xy_tol
            and abs(float(rel[2])) < self.hold_z_tol
        )
        if at_handle or holding:
            # Holding the handle: turn the grasp point about the (vertical) hinge axis by a step.
            # Aiming at the handle rather than moving the hand keeps the bar centred in the fingers.
            turn = float(np.clip(self.turn_gain * (goal - angle), -self.max_turn, self.max_turn))
            arm = grasp[:2] - hinge[:2]
            cos, sin = np.cos(turn), np.sin(turn)
            turned = hinge[:2] + np.array([cos * arm[0] - sin * arm[1], sin * arm[0] + cos * arm[1]])
            return np.array([*turned, grasp[2]]), 1.0, True
        clear = grasp[2] + 0.04  # fingertips above the top of the bar
        if xy_err > self.hold_xy_tol and eef[2] < clear - 0.01 and xy_err < 0.12:
            # Low beside the handle: straight up first (a sideways move would hit the bar).
            return np.array([eef[0], eef[1], clear + 0.01]), -1.0, False
        # Glide in: high while far, down onto the bar once the fingers straddle it.
        height = float(np.clip(4.0 * (xy_err - 0.006), 0.0, self.hover))
        return np.array([grasp[0], grasp[1], grasp[2] + height]), -1.0, False

    def act(self, state: dict[str, np.ndarray]) -> np.ndarray:
        target, grip, holding = self._plan(state)
        delta = target - np.asarray(state["eef_pos"], dtype=np.float64)
        dist = float(np.linalg.norm(delta))
        # the servo's IK leaves a steady error ~ 1/gain: raise the gain near the target
        blend = float(np.clip((2.0 * self.fine_radius - dist) / self.fine_radius, 0.0, 1.0))
        fine = self.hold_gain if holding else self.fine_gain
        gain = self.gain + blend * (fine - self.gain)
        move = np.clip(gain * delta / self.max_delta, -1.0, 1.0)
        if self.gripper == "closed":
            return move.astype(np.float32)
        return np.array([*move, grip], dtype=np.float32)
