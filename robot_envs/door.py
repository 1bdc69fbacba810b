"""``door``: open robosuite's Door to a hidden target angle.

Task parameter: ``{"target_angle"}`` in **radians** (the family's ``angle_range_deg``,
default 15-60 degrees, is in degrees for readable configs). The target is never drawn.
The door has no latch (``use_latch=False``) and a fixed pose, and its hinge range is
widened from robosuite's 0-0.4 rad to ``max_hinge_deg`` (default 90) so every target is
reachable. Its handle is a vertical pull bar on a swivel at the end of a 15 cm standoff
(robosuite's is a horizontal bar 10 cm from the door): the Panda hand keeps a fixed
top-down orientation, so it can only hold a grip that turns freely about the vertical
while the door swings, and its 20 cm wide palm only clears the door with the bar that far out.

Reward: 1 at each step the hinge angle is within ``tolerance_deg`` (default 5 degrees)
of the target, else 0; an episode succeeds if it ends within tolerance.
``info["dense_reward"]`` = -|hinge - target| (rad) - 0.5 |eef - handle| (m);
``info["angle_error"]`` = |hinge - target| in degrees.
Action: [dx, dy, dz, gripper] in [-1, 1]: end-effector delta (x ``max_delta`` metres)
and gripper (-1 open, +1 closed). Horizon 100 control steps at 20 Hz. ``gripper="closed"``
holds the gripper closed and drops the gripper from the action ([dx, dy, dz], as push does):
with the ready start the fingers close on the bar in the first steps, so an exploring policy
cannot let go of the handle, and every action dimension moves the door.

Starts: ``start="home"`` (default) is robosuite's arm pose, well away from the door: the
policy must find, straddle and grip the bar before it can turn it. ``start="ready"`` puts
the open hand at the grasp point, fingers straddling the bar (as push's ready start puts the
hand behind the block), so an episode is about how far to open the door, not how to grasp;
the hand is offset by up to ``start_noise`` metres in x and y each episode (default 5 mm,
inside the expert's 1 cm grasp tolerance), so evaluation episodes of one task differ.

``info["state"]``: eef_pos, eef_quat, gripper_qpos, handle_pos, hinge_angle,
target_angle, door_pos (the door body), hinge_pos (hinge axis point), door_quat.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_envs.base import Task, within
from robot_envs.robosuite_common import RobosuiteFamily, RobosuiteTaskEnv, add_arm_gravcomp

ANGLE_RANGE_DEG = (15.0, 60.0)
DOOR_OFFSET = (0.23, -0.20)  # door placement relative to robosuite's Door table offset, metres
DOOR_ROTATION = -np.pi / 2.0
HANDLE_REACH = 0.15  # handle bar axis in front of the door panel's mid-plane, metres (robosuite: 0.10)
HANDLE_RADIUS, HANDLE_HALF_LENGTH = 0.015, 0.07  # vertical pull bar, metres
GRIPPERS = ("policy", "closed")  # policy: the 4th action dimension drives the gripper; closed: held closed, 3-d action
STARTS = ("home", "ready")  # home: robosuite's arm pose; ready: open hand at the grasp point over the bar
GRASP_HEIGHT = 0.05  # ready start: end effector this far above the handle's centre (the expert's grasp point)


def check_start(start: str) -> None:
    if start not in STARTS:
        raise ValueError(f"unknown door start {start!r}; use one of {STARTS}")


def check_gripper(gripper: str) -> None:
    if gripper not in GRIPPERS:
        raise ValueError(f"unknown door gripper mode {gripper!r}; use one of {GRIPPERS}")


def _door_suite_class():
    """Defined lazily so importing robot_envs.door does not import robosuite."""
    import xml.etree.ElementTree as ET

    from robosuite.environments.manipulation.door import Door
    from robosuite.utils.mjcf_utils import find_elements
    from robosuite.utils.placement_samplers import UniformRandomSampler

    class WideDoor(Door):
        """robosuite's Door with a fixed pose and a hinge that opens to ``max_hinge`` radians."""

        def __init__(self, max_hinge: float, arm_gravcomp: bool = False, **kwargs: Any) -> None:
            self.max_hinge = max_hinge
            self.arm_gravcomp = arm_gravcomp
            fixed = UniformRandomSampler(
                name="FixedDoor",
                # 15 cm further from the robot than robosuite's door (and 20 cm aside): the
                # door then swings open to 90 degrees without hitting the arm's home pose
                x_range=(DOOR_OFFSET[0], DOOR_OFFSET[0]),
                y_range=(DOOR_OFFSET[1], DOOR_OFFSET[1]),
                rotation=DOOR_ROTATION,
                rotation_axis="z",
                ensure_object_boundary_in_range=False,
                ensure_valid_placement=False,
                reference_pos=(-0.2, -0.35, 0.8),  # Door's table_offset
            )
            super().__init__(use_latch=False, placement_initializer=fixed, **kwargs)

        def _load_model(self) -> None:
            super()._load_model()
            hinge = find_elements(
                root=self.model.worldbody, tags="joint", attribs={"name": self.door.hinge_joint}, return_first=True
            )
            hinge.set("range", f"0 {self.max_hinge}")
            self._swivel_handle()
            if self.arm_gravcomp:
                add_arm_gravcomp(self.model.worldbody)

        def _swivel_handle(self) -> None:
            """Make the handle a vertical bar on a free swivel at the end of a longer standoff.

            robosuite's handle is a horizontal bar parallel to the door, 10 cm out: a top-down
            Panda hand (fingers closing across the door) hits the door with its palm before its
            fingers reach round that bar, and a rigid bar would turn inside the fixed-orientation
            fingers as the door swings and squeeze out of them. The bar keeps its geom name
            (``Door_handle``) and material; the ``handle`` site moves to the bar's centre.
            """
            root = self.model.worldbody
            latch = find_elements(root=root, tags="body", attribs={"name": "Door_latch"}, return_first=True)
            standoff = find_elements(root=root, tags="geom", attribs={"name": "Door_handle_base"}, return_first=True)
            bar = find_elements(root=root, tags="geom", attribs={"name": "Door_handle"}, return_first=True)
            site = find_elements(root=root, tags="site", attribs={"name": "Door_handle"}, return_first=True)
            # the latch body sits on the panel's mid-plane; the door model's "out" is its -y
            standoff.set("fromto", f"0 0 0 0 {-HANDLE_REACH} 0")
            site.set("pos", f"0 {-HANDLE_REACH} 0")
            latch.remove(bar)
            swivel = ET.SubElement(latch, "body", {"name": "Door_handle_swivel", "pos": f"0 {-HANDLE_REACH} 0"})
            ET.SubElement(swivel, "inertial", {"pos": "0 0 0", "mass": "0.1", "diaginertia": "2e-4 2e-4 1.2e-5"})
            ET.SubElement(swivel, "joint", {"name": "Door_handle_swivel", "type": "hinge", "axis": "0 0 1", "damping": "0.002"})
            bar.set("type", "cylinder")
            bar.set("size", f"{HANDLE_RADIUS} {HANDLE_HALF_LENGTH}")
            bar.set("pos", "0 0 0")
            swivel.append(bar)

    return WideDoor


class DoorEnv(RobosuiteTaskEnv):
    action_dim = 4

    def __init__(
        self,
        task: Task,
        tolerance_deg: float = 5.0,
        max_hinge_deg: float = 90.0,
        start: str = "home",
        start_noise: float = 0.005,
        gripper: str = "policy",
        **kwargs: Any,
    ) -> None:
        check_start(start)
        check_gripper(gripper)
        self.gripper = gripper
        self.action_dim = 4 if gripper == "policy" else 3
        self.start = start
        self.start_noise = float(start_noise)
        self.tolerance = float(np.deg2rad(tolerance_deg))
        self.max_hinge = float(np.deg2rad(max_hinge_deg))
        super().__init__(task, **kwargs)
        self._hinge_qpos = self.suite.hinge_qpos_addr
        self._handle_site = self.suite.door_handle_site_id
        self._door_body = self.suite.object_body_ids["door"]
        hinge = self.model.joint(self.suite.door.hinge_joint)
        self._hinge_jnt = hinge.id

    def _make_suite(self, suite_kwargs: dict[str, Any]):
        return _door_suite_class()(max_hinge=self.max_hinge, **suite_kwargs)

    @property
    def target_angle(self) -> float:
        return float(self.task.params["target_angle"])

    def _start_eef_pos(self) -> np.ndarray | None:
        if self.start == "home":
            return None
        return self.data.site_xpos[self.suite.door_handle_site_id] + np.array([0.0, 0.0, GRASP_HEIGHT])

    def _randomize(self) -> None:
        """The door starts closed; from ``ready`` the hand is offset by up to ``start_noise`` in x and y."""
        if self.start == "home" or self.start_noise <= 0 or self._start_q is None:
            return
        offset = np.append(self.np_random.uniform(-self.start_noise, self.start_noise, 2), 0.0)
        target = self._start_eef_pos() + offset
        qpos_idx, q = self._solve_arm_pose(target, self.data.qpos, iters=20)
        self.data.qpos[qpos_idx] = q

    def set_hinge_angle(self, angle: float):
        """Put the door at ``angle`` radians (at rest) and return (obs, info) there: for tests and experts."""
        state = self.get_sim_state()
        state[1 + self._hinge_qpos] = angle
        state[1 + self.model.nq + self.model.jnt_dofadr[self._hinge_jnt]] = 0.0
        return self.set_sim_state(state)

    def _task_state(self) -> dict[str, np.ndarray]:
        return {
            "handle_pos": self.data.site_xpos[self._handle_site].copy(),
            "hinge_angle": np.array([self.data.qpos[self._hinge_qpos]]),
            "target_angle": np.array([self.target_angle]),
            "door_pos": self.data.xpos[self._door_body].copy(),
            "door_quat": self.data.xquat[self._door_body].copy(),
            "hinge_pos": self.data.xanchor[self._hinge_jnt].copy(),
        }

    def _score(self, state: dict[str, np.ndarray]) -> tuple[bool, float]:
        angle_error = abs(float(state["hinge_angle"][0]) - self.target_angle)
        to_handle = float(np.linalg.norm(state["eef_pos"] - state["handle_pos"]))
        return angle_error <= self.tolerance, -angle_error - 0.5 * to_handle

    def _extra_info(self, state: dict[str, np.ndarray]) -> dict[str, float]:
        return {"angle_error": float(np.rad2deg(abs(float(state["hinge_angle"][0]) - self.target_angle)))}

    def _grip_command(self, action: np.ndarray) -> float:
        return float(action[3]) if self.gripper == "policy" else 1.0

    def _workspace(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([-0.45, -0.60, 0.82]), np.array([0.30, 0.40, 1.40])

    def _goal_markers(self) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Where the handle would be at the target angle: the handle rotated about the hinge axis."""
        axis = self.data.xaxis[self._hinge_jnt]
        anchor = self.data.xanchor[self._hinge_jnt]
        turn = self.target_angle - float(self.data.qpos[self._hinge_qpos])
        arm = self.data.site_xpos[self._handle_site] - anchor
        cos, sin = np.cos(turn), np.sin(turn)
        rotated = arm * cos + np.cross(axis, arm) * sin + axis * (axis @ arm) * (1 - cos)
        return [(anchor + rotated, 0.03, np.array([1.0, 0.85, 0.0, 0.8]))]


class DoorFamily(RobosuiteFamily):
    """Target angles uniform in ``angle_range_deg``; tolerance and hinge range in degrees."""

    name = "door"
    env_class = DoorEnv
    step_metrics = ("angle_error",)
    step_metric_units = {"angle_error": "deg"}

    def __init__(
        self,
        angle_range_deg: tuple[float, float] = ANGLE_RANGE_DEG,
        tolerance_deg: float = 5.0,
        max_hinge_deg: float = 90.0,
        horizon: int = 100,
        camera: str = "sideview",
        start: str = "home",
        start_noise: float = 0.005,
        gripper: str = "policy",
        **kwargs: Any,
    ) -> None:
        super().__init__(horizon=horizon, camera=camera, **kwargs)
        check_start(start)
        check_gripper(gripper)
        if gripper == "closed" and start != "ready":
            raise ValueError("door gripper='closed' needs start='ready' (the hand must start at the handle to hold it)")
        self.gripper = gripper
        self.start = start
        self.start_noise = float(start_noise)
        lo, hi = float(angle_range_deg[0]), float(angle_range_deg[1])
        if not (0.0 <= lo <= hi <= max_hinge_deg):
            raise ValueError(f"angle_range_deg must satisfy 0 <= low <= high <= max_hinge_deg={max_hinge_deg}, got {angle_range_deg}")
        self.angle_range_deg = (lo, hi)
        self.tolerance_deg = float(tolerance_deg)
        self.max_hinge_deg = float(max_hinge_deg)

    def _sample_params(self, rng: np.random.Generator) -> dict[str, float]:
        return {"target_angle": float(np.deg2rad(rng.uniform(*self.angle_range_deg)))}

    def default_task(self) -> Task:
        return Task(self.name, "train", -1, {"target_angle": float(np.deg2rad(np.mean(self.angle_range_deg)))})

    def make_env(self, task: Task | None = None) -> DoorEnv:
        return DoorEnv(
            task or self.default_task(),
            tolerance_deg=self.tolerance_deg,
            max_hinge_deg=self.max_hinge_deg,
            start=self.start,
            start_noise=self.start_noise,
            gripper=self.gripper,
            **self._env_kwargs(),
        )

    def expert_kwargs(self) -> dict[str, Any]:
        return {**super().expert_kwargs(), "gripper": self.gripper}

    def goal_achieved(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(state["hinge_angle"], np.float32)

    def goal_desired(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(state["target_angle"], np.float32)

    def goal_success(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return within(achieved, desired, float(np.deg2rad(self.tolerance_deg)))

    def env_args(self) -> dict[str, Any]:
        return {
            **super().env_args(),
            "env_name": "Door",
            "angle_range_deg": list(self.angle_range_deg),
            "tolerance_deg": self.tolerance_deg,
            "max_hinge_deg": self.max_hinge_deg,
            "start": self.start,
            "start_noise": self.start_noise,
            "gripper": self.gripper,
        }
