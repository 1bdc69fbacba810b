"""What push and door share: a gymnasium env around a robosuite env, a fast arm controller, the family base.

Two switches, each with robosuite's own behaviour one word away:

* ``renderer="fast"`` (default) draws the policy camera with ``rendering.FastCamera``;
  ``renderer="robosuite"`` uses robosuite's camera observables (visual meshes, shadows).
* ``controller="fast"`` (default) turns the arm's torque motors into MuJoCo joint position
  servos with gravity compensation and solves a small IK once per control step, so the
  25 physics substeps of a control step run in one C call. ``controller="robosuite"`` uses
  robosuite's OSC_POSITION controller, which runs ~170 us of Python per substep (about
  4 ms per control step, 9x the physics). Both read the action as an end-effector
  position delta of up to ``max_delta`` metres per step with the orientation held.

Reward, success and privileged state are computed here from the MuJoCo state, never
from robosuite's reward, because the task parameter lives in this wrapper.
"""

from __future__ import annotations

import abc
from typing import Any

from robot_envs.rendering import check_camera, select_gl_backend

select_gl_backend()

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robot_envs.base import Task, TaskFamily, check_action  # noqa: E402
from robot_envs.rendering import FastCamera, lean_model_xml, refresh_exit_cleanup  # noqa: E402

# With the fast renderer, compile the sim without the visual meshes it never draws (rendering.lean_model_xml):
# ~50 MB less per env, same physics and images (tested). False keeps robosuite's full model.
LEAN_MODEL = True
RENDERERS: tuple[str, ...] = ("fast", "robosuite")
CONTROLLERS: tuple[str, ...] = ("fast", "robosuite")
PROPRIO_KEYS: tuple[str, ...] = ("eef_pos", "gripper_qpos")  # proprio = concat of these: [3 + 2] float32
# cameras of robosuite's single-arm table scenes; checked before the (seconds-long) build
SCENE_CAMERAS: tuple[str, ...] = ("frontview", "birdview", "agentview", "sideview", "robot0_robotview", "robot0_eye_in_hand")


def osc_position_config(max_delta: float) -> dict[str, Any]:
    """robosuite's Panda BASIC composite config with the arm switched to OSC_POSITION (delta, base frame)."""
    from robosuite.controllers import load_composite_controller_config

    config = load_composite_controller_config(robot="Panda")
    config["body_parts"]["right"].update(
        type="OSC_POSITION", output_max=[max_delta] * 3, output_min=[-max_delta] * 3
    )
    return config


def add_arm_gravcomp(worldbody, prefixes: tuple[str, ...] = ("robot0_", "gripper0_")) -> None:
    """Mark the arm's bodies ``gravcomp="1"`` in the MJCF (MuJoCo only applies it when compiled in)."""
    for body in worldbody.iter("body"):
        if body.get("name", "").startswith(prefixes):
            body.set("gravcomp", "1")


def arm_joint_indices(model, robot) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(joint ids, qpos indices, dof indices) of a robosuite robot's arm joints."""
    jids = [model.joint(name).id for name in robot.robot_joints]
    return jids, np.array([model.jnt_qposadr[j] for j in jids]), np.array([model.jnt_dofadr[j] for j in jids])


def arm_ik(
    model, ik, qpos_idx: np.ndarray, dof_idx: np.ndarray, qrange: np.ndarray, site: int,
    target_pos: np.ndarray, target_rot: np.ndarray, rest_q: np.ndarray, iters: int = 3, damping: float = 1e-2,
    jacp: np.ndarray | None = None, jacr: np.ndarray | None = None,
) -> np.ndarray:
    """Damped least squares on [position; orientation] error, nullspace pulled toward ``rest_q``.

    ``ik`` is a scratch ``MjData`` whose ``qpos`` holds the starting configuration.
    ``dq = v + J^T (J J^T + damping I)^-1 (err - J v)`` with ``v`` the pull toward home: one
    6x6 Cholesky solve in MuJoCo's C (numpy's LAPACK calls cost ~0.3 ms each on a busy machine).
    """
    jacp = np.zeros((3, model.nv)) if jacp is None else jacp
    jacr = np.zeros((3, model.nv)) if jacr is None else jacr
    q = ik.qpos[qpos_idx].copy()
    gram, rhs, sol = np.empty((6, 6)), np.empty(6), np.empty(6)
    for _ in range(iters):
        mujoco.mj_kinematics(model, ik)
        mujoco.mj_comPos(model, ik)
        rel = target_rot @ ik.site_xmat[site].reshape(3, 3).T  # target * current^-1
        mujoco.mj_jacSite(model, ik, jacp, jacr, site)
        jac = np.vstack([jacp[:, dof_idx], jacr[:, dof_idx]])
        pull = 0.1 * (rest_q - q)
        rhs[:3] = target_pos - ik.site_xpos[site]
        rhs[3:] = 0.5 * np.array([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
        rhs -= jac @ pull
        np.matmul(jac, jac.T, out=gram)
        gram[np.diag_indices(6)] += damping
        mujoco.mju_cholFactor(gram, 0.0)
        mujoco.mju_cholSolve(sol, gram, rhs)
        q = np.clip(q + pull + jac.T @ sol, qrange[:, 0], qrange[:, 1])
        ik.qpos[qpos_idx] = q
    return q


class ServoArm:
    """Joint position servos plus per-step IK: the arm tracks an end-effector position target.

    Once per control step: damped least squares on (position, orientation) error from the
    current joint angles gives joint targets; MuJoCo's affine actuators then do the PD
    (``tau = kp (q* - q) - kv qdot``) inside ``mj_step`` and ``gravcomp`` bodies (compiled
    in, see ``add_arm_gravcomp``) cancel gravity, so holding still needs no integral term.
    The target is the actual end-effector position plus the action's delta (as robosuite's
    OSC does): the controller keeps no state, so ``set_sim_state`` replays exactly.
    """

    # Stiff enough to cover ~60% of a 5 cm target in one 50 ms step; damping ~critical for the
    # joints' effective inertia (robosuite's Panda has armature 5 .. 0.7).
    KP = np.array([3000.0, 3000.0, 3000.0, 3000.0, 600.0, 600.0, 600.0])
    KV = np.array([270.0, 220.0, 190.0, 170.0, 60.0, 50.0, 50.0])

    def __init__(self, model, data, robot) -> None:
        self.model, self.data = model, data
        jids, self.qpos_idx, self.dof_idx = arm_joint_indices(model, robot)
        self.qrange = model.jnt_range[jids].copy()
        self.arm_act = np.array([model.actuator(name).id for name in robot.robot_model.actuators])
        self.grip_act = np.array([model.actuator(name).id for name in robot.gripper["right"].actuators])
        self.site = int(robot.eef_site_id["right"])
        for i, act in enumerate(self.arm_act):  # motor -> position servo, same torque limits
            torque = np.abs(model.actuator_ctrlrange[act]).max()
            model.actuator_gaintype[act] = mujoco.mjtGain.mjGAIN_FIXED
            model.actuator_gainprm[act, :3] = [self.KP[i], 0, 0]
            model.actuator_biastype[act] = mujoco.mjtBias.mjBIAS_AFFINE
            model.actuator_biasprm[act, :3] = [0, -self.KP[i], -self.KV[i]]
            model.actuator_ctrlrange[act] = self.qrange[i]
            model.actuator_forcelimited[act] = 1
            model.actuator_forcerange[act] = [-torque, torque]
        if model.ngravcomp == 0:
            raise ValueError("ServoArm needs gravity compensation compiled in: build the suite with arm_gravcomp=True")
        lo, hi = model.actuator_ctrlrange[self.grip_act].T
        self.grip_open = np.where(np.abs(hi) >= np.abs(lo), hi, lo)
        self.grip_closed = np.where(np.abs(hi) >= np.abs(lo), lo, hi)
        self._ik = mujoco.MjData(model)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self.rest_q = data.qpos[self.qpos_idx].copy()
        self.target_rot = data.site_xmat[self.site].reshape(3, 3).copy()

    def reset(self) -> None:
        """Hold the current pose and orientation (call after the sim state is set)."""
        self.rest_q = self.data.qpos[self.qpos_idx].copy()
        self.target_rot = self.data.site_xmat[self.site].reshape(3, 3).copy()
        self.data.ctrl[self.arm_act] = self.rest_q

    def solve_ik(self, target_pos: np.ndarray, iters: int = 3, damping: float = 1e-2) -> np.ndarray:
        """Joint targets that put the end effector at ``target_pos`` with the held orientation."""
        self._ik.qpos[:] = self.data.qpos
        return arm_ik(self.model, self._ik, self.qpos_idx, self.dof_idx, self.qrange, self.site,
                      target_pos, self.target_rot, self.rest_q, iters, damping, self._jacp, self._jacr)

    def command(self, delta: np.ndarray, grip: float, low: np.ndarray, high: np.ndarray) -> None:
        """Aim ``delta`` metres from the end effector (clipped to the workspace); ``grip``: -1 open .. +1 closed."""
        self.data.ctrl[self.arm_act] = self.solve_ik(np.clip(self.eef_pos + delta, low, high))
        self.data.ctrl[self.grip_act] = self.grip_closed + (1.0 - grip) / 2.0 * (self.grip_open - self.grip_closed)

    @property
    def eef_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.site].copy()


def check_options(renderer: str, controller: str) -> None:
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; use one of {RENDERERS}")
    if controller not in CONTROLLERS:
        raise ValueError(f"unknown controller {controller!r}; use one of {CONTROLLERS}")


class RobosuiteTaskEnv(gym.Env, abc.ABC):
    """A gymnasium env over one robosuite env; subclasses add the task (goal, reward, privileged state)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    action_dim: int = 3

    def __init__(
        self,
        task: Task,
        camera: str = "agentview",
        image_size: tuple[int, int] = (64, 64),
        horizon: int = 50,
        renderer: str = "fast",
        controller: str = "fast",
        max_delta: float = 0.05,
        control_freq: int = 20,
        show_goal: bool = False,
    ) -> None:
        check_options(renderer, controller)
        height, width = int(image_size[0]), int(image_size[1])
        self.task = task
        self.camera, self.height, self.width = camera, height, width
        self.horizon = int(horizon)
        self.renderer, self.controller = renderer, controller
        self.max_delta = float(max_delta)
        self.show_goal = show_goal
        self.render_mode = "rgb_array"
        suite_kwargs = dict(
            robots="Panda",
            controller_configs=osc_position_config(self.max_delta),
            initialization_noise=None,
            has_renderer=False,
            has_offscreen_renderer=renderer == "robosuite",
            use_camera_obs=renderer == "robosuite",
            camera_names=camera,
            camera_heights=height,
            camera_widths=width,
            control_freq=control_freq,
            horizon=10**9,
            ignore_done=True,
            hard_reset=False,
            arm_gravcomp=controller == "fast",
        )
        if camera not in SCENE_CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; this scene has {list(SCENE_CAMERAS)}")
        self.suite = self._make_suite(suite_kwargs)
        self._full_xml = self.suite.sim.model.get_xml()  # what model_xml() reports (demo files keep every mesh)
        if renderer == "fast" and LEAN_MODEL:
            # from robosuite's own MJCF (recompiling mj_saveLastXML's output changed static bodies' masses)
            source = self.suite.edit_model_xml(self.suite.model.get_xml())
            self.suite.reset_from_xml_string(lean_model_xml(source, self.suite.sim.model._model))
        refresh_exit_cleanup()  # robosuite's renderer may have registered an EGL atexit just now
        self.suite.reset()
        self.sim = self.suite.sim
        self.model, self.data = self.sim.model._model, self.sim.data._data
        check_camera(self.model, camera, height, width)
        self.substeps = int(round(1.0 / control_freq / self.model.opt.timestep))
        self._camera = FastCamera(self.model, camera, height, width) if renderer == "fast" else None
        self._servo = ServoArm(self.model, self.data, self.suite.robots[0]) if controller == "fast" else None
        self.eef_site = int(self.suite.robots[0].eef_site_id["right"])
        self._start_q = self._start_joint_positions()
        gripper_joints = self.suite.robots[0].gripper["right"].joints
        self._grip_qpos = np.array([self.model.jnt_qposadr[self.model.joint(j).id] for j in gripper_joints])
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (height, width, 3), np.uint8),
                "proprio": gym.spaces.Box(-10.0, 10.0, (5,), np.float32),  # metres; finite for check_env
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        self.render_images = True  # False: blank images, for state-only learners (robot_envs/base.py)
        self._blank = np.zeros((height, width, 3), np.uint8)
        self._t = 0
        release_freed_memory()

    # ----- subclass hooks -------------------------------------------------------------------
    @abc.abstractmethod
    def _make_suite(self, suite_kwargs: dict[str, Any]):
        """Build the robosuite env."""

    @abc.abstractmethod
    def _randomize(self) -> None:
        """Set the episode's initial object state from ``self.np_random`` (after robosuite's reset)."""

    @abc.abstractmethod
    def _task_state(self) -> dict[str, np.ndarray]:
        """Privileged state for experts, including the task parameter."""

    @abc.abstractmethod
    def _score(self, state: dict[str, np.ndarray]) -> tuple[bool, float]:
        """(success at this step, dense shaped reward)."""

    @abc.abstractmethod
    def _grip_command(self, action: np.ndarray) -> float:
        """Gripper command in [-1 open, +1 closed] for this action."""

    @abc.abstractmethod
    def _workspace(self) -> tuple[np.ndarray, np.ndarray]:
        """Box the end-effector target is clipped to."""

    def _goal_markers(self) -> list[tuple[np.ndarray, float, np.ndarray]]:
        return []

    def _start_eef_pos(self) -> np.ndarray | None:
        """Where each episode starts the end effector (world xyz); None: robosuite's home pose."""
        return None

    def _start_joint_positions(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(qpos indices, joint angles) of the arm for ``_start_eef_pos``: solved once, reused every reset."""
        target = self._start_eef_pos()
        if target is None:
            return None
        return self._solve_arm_pose(np.asarray(target), self.data.qpos, iters=200)

    def _solve_arm_pose(self, target: np.ndarray, qpos: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
        """(qpos indices, arm joint angles) that put the end effector at ``target`` with the current orientation."""
        jids, qpos_idx, dof_idx = arm_joint_indices(self.model, self.suite.robots[0])
        ik = mujoco.MjData(self.model)
        ik.qpos[:] = qpos
        rot = self.data.site_xmat[self.eef_site].reshape(3, 3).copy()
        rest = self.data.qpos[qpos_idx].copy()
        for _ in range(2):
            q = arm_ik(self.model, ik, qpos_idx, dof_idx, self.model.jnt_range[jids], self.eef_site, target,
                       rot, rest, iters=iters)
            mujoco.mj_kinematics(self.model, ik)
            error = float(np.linalg.norm(ik.site_xpos[self.eef_site] - target))
            if error <= 0.005:
                break
            rest = q  # the pull toward the home pose held it back: pull toward this solution instead
        if error > 0.01:  # the pull toward the home pose leaves a few millimetres
            raise ValueError(f"start pose {np.round(target, 3).tolist()} is out of the arm's reach (IK error {error:.3f} m)")
        return qpos_idx, q

    def _extra_info(self, state: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-step task metrics added to ``info`` (e.g. ``distance``, ``angle_error``) for reports."""
        return {}

    # ----- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.task = options["task"]
        self.suite.reset()
        if self._start_q is not None:
            qpos_idx, q = self._start_q
            self.data.qpos[qpos_idx] = q
            self.data.qvel[:] = 0.0
        self._randomize()
        mujoco.mj_forward(self.model, self.data)
        if self._servo is not None:
            self._servo.reset()
        self._t = 0
        return self._observe()

    def step(self, action):
        action = check_action(action, self.action_space)
        grip = self._grip_command(action)
        if self._servo is not None:
            low, high = self._workspace()
            self._servo.command(self.max_delta * action[:3], grip, low, high)
            mujoco.mj_step(self.model, self.data, nstep=self.substeps)
            # mj_step leaves positions (xpos, site_xpos) one substep stale; refresh them so the
            # image and state match what set_sim_state(get_sim_state()) would give: exact replay
            mujoco.mj_forward(self.model, self.data)
            suite_obs = None
        else:
            self._make_suite_gl_current()
            suite_obs, _, _, _ = self.suite.step(np.concatenate([action[:3], [grip]]))
        self._t += 1
        obs, info = self._observe(suite_obs)
        reward = 1.0 if info["success"] else 0.0
        return obs, reward, False, self._t >= self.horizon, info

    def render(self) -> np.ndarray:
        """The policy camera's image; with ``show_goal`` the hidden goal is drawn (videos only, fast renderer only)."""
        if self._camera is not None:
            return self._camera.render(self.data, self._goal_markers() if self.show_goal else [])
        return self._camera_image(None)

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None
        self.suite.close()

    # ----- state, replay --------------------------------------------------------------------
    def get_sim_state(self) -> np.ndarray:
        """Flattened MuJoCo state [time, qpos, qvel] (robosuite's layout), for exact replay and demo files."""
        return np.array(self.sim.get_state().flatten())

    def set_sim_state(self, state: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Restore a state from ``get_sim_state`` and return the observation and info it renders to."""
        state = np.asarray(state, dtype=np.float64)
        expected = 1 + self.model.nq + self.model.nv
        if state.shape != (expected,):
            raise ValueError(f"sim state has shape {state.shape}, expected ({expected},) = 1 + nq + nv")
        self.sim.set_state_from_flattened(state)
        mujoco.mj_forward(self.model, self.data)
        return self._observe()

    def model_xml(self) -> str:
        """The scene's full MJCF (``model_file`` in robomimic-layout demo files), with every visual mesh
        even where the fast renderer's sim runs a lean copy of it (``LEAN_MODEL``): same physics."""
        return self._full_xml

    # ----- observation ----------------------------------------------------------------------
    def _camera_image(self, suite_obs: dict | None) -> np.ndarray:
        if not self.render_images:  # a state-only learner: skip the camera (robot_envs/base.py)
            return self._blank
        if self._camera is not None:
            return self._camera.render(self.data)
        if suite_obs is None:  # state was changed outside robosuite's step: re-run its observables
            self._make_suite_gl_current()
            suite_obs = self.suite._get_observations(force_update=True)
        # robosuite's default image convention is OpenGL (bottom row first)
        return np.ascontiguousarray(suite_obs[f"{self.camera}_image"][::-1])

    def _make_suite_gl_current(self) -> None:
        """robosuite makes its GL context current only when created: with any other renderer in the
        process (another env, a fast camera) its camera observations would read another context."""
        context = self.sim._render_context_offscreen
        if self.renderer == "robosuite" and context is not None:
            context.gl_ctx.make_current()

    def _base_state(self) -> dict[str, np.ndarray]:
        return {
            "eef_pos": self.data.site_xpos[self.eef_site].copy(),
            "eef_quat": mat2quat(self.data.site_xmat[self.eef_site]),
            "gripper_qpos": self.data.qpos[self._grip_qpos].copy(),
        }

    def _observe(self, suite_obs: dict | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        state = {**self._base_state(), **self._task_state()}
        success, dense = self._score(state)
        proprio = np.concatenate([state[k] for k in PROPRIO_KEYS]).astype(np.float32)
        obs = {"image": self._camera_image(suite_obs), "proprio": proprio}
        return obs, {"success": bool(success), "dense_reward": float(dense), **self._extra_info(state), "state": state}


def release_freed_memory() -> None:
    """Hand the heap robosuite's model building freed back to the OS (glibc keeps it otherwise: ~70 MB per env)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def mat2quat(mat: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(mat, np.float64).ravel())
    return quat  # w, x, y, z (MuJoCo order)


class RobosuiteFamily(TaskFamily):
    """Common constructor options of the robosuite families (all JSON-able, stored by ``env_args``)."""

    env_class: type[RobosuiteTaskEnv]

    def __init__(
        self,
        camera: str = "agentview",
        image_size: tuple[int, int] = (64, 64),
        horizon: int = 50,
        renderer: str = "fast",
        controller: str = "fast",
        max_delta: float = 0.05,
        control_freq: int = 20,
        show_goal: bool = False,
    ) -> None:
        check_options(renderer, controller)
        self.camera = str(camera)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.horizon = int(horizon)
        self.renderer, self.controller = renderer, controller
        self.max_delta = float(max_delta)
        self.control_freq = int(control_freq)
        self.show_goal = bool(show_goal)

    def _env_kwargs(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "image_size": self.image_size,
            "horizon": self.horizon,
            "renderer": self.renderer,
            "controller": self.controller,
            "max_delta": self.max_delta,
            "control_freq": self.control_freq,
            "show_goal": self.show_goal,
        }

    def expert_kwargs(self) -> dict[str, Any]:
        return {"max_delta": self.max_delta}  # metres per unit action, shared by env and expert

    def env_args(self) -> dict[str, Any]:
        kwargs = self._env_kwargs()
        kwargs["image_size"] = list(self.image_size)
        return {**super().env_args(), **kwargs, "robot": "Panda", "proprio_keys": list(PROPRIO_KEYS)}
