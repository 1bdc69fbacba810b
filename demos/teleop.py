"""Teleoperation with robosuite's Keyboard / SpaceMouse, testable headless with ``ScriptedDevice``.

A device is anything with ``start_control()`` and ``get_controller_state() -> dict`` holding
``dpos`` (3,), ``raw_drotation`` (3,), ``grasp`` and ``reset`` (robosuite's device contract).
``device_state_to_action`` (pure) turns that dict into an env action; ``teleop_collect`` runs
episodes, shows the operator the hidden task parameter, and asks keep / discard / quit.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable

import numpy as np

from demos.collect import episode_seed, model_xml, used_seeds
from demos.hdf5 import DemoWriter, Episode, EpisodeRecorder, make_env_args
from robot_envs import Task, TaskFamily
from robot_envs.base import sim_state

DEVICES = ("keyboard", "spacemouse")
# dpos per poll for one keypress (robosuite Keyboard: 0.05) or full deflection (SpaceMouse: 0.005).
DEFAULT_GAIN = {"keyboard": 20.0, "spacemouse": 200.0, "scripted": 20.0}
ROT_GAIN = 10.0  # keyboard raw_drotation steps are 0.1 rad


def device_state_to_action(state: dict[str, Any], action_dim: int, family: str, gain: float = 20.0) -> np.ndarray:
    """Map one device reading to an env action in [-1, 1].

    point (2-d): the screen plane, as the operator sees it: right arrow = +x, up arrow = +y
    (robosuite's keyboard reports up as -dpos[0] and right as +dpos[1]). Arms: dpos in the robot
    base frame as robosuite does, then rotation (7-d) and the gripper (+1 closed, -1 open) last.
    """
    dpos = np.asarray(state.get("dpos", np.zeros(3)), dtype=np.float64).reshape(3)
    if family == "point" or action_dim == 2:
        action = gain * np.array([dpos[1], -dpos[0]])
    elif action_dim in (3, 4, 7):
        parts = [gain * dpos]
        if action_dim == 7:
            parts.append(ROT_GAIN * np.asarray(state.get("raw_drotation", np.zeros(3)), dtype=np.float64).reshape(3))
        if action_dim in (4, 7):
            parts.append(np.array([1.0 if state.get("grasp", 0) else -1.0]))
        action = np.concatenate(parts)
    else:
        raise ValueError(f"teleop does not know how to drive a {action_dim}-d action space of family {family!r}")
    return np.clip(action, -1.0, 1.0).astype(np.float32)


class ScriptedDevice:
    """Replays a list of device readings (robosuite's dict format); zeros once it runs out."""

    def __init__(self, states: Iterable[dict[str, Any]]) -> None:
        self._states = list(states)
        self._i = 0
        self.started = 0

    def start_control(self) -> None:
        self.started += 1

    def get_controller_state(self) -> dict[str, Any]:
        if self._i < len(self._states):
            state = self._states[self._i]
            self._i += 1
        else:
            state = {}
        return {
            "dpos": np.asarray(state.get("dpos", np.zeros(3)), dtype=np.float64),
            "rotation": np.eye(3),
            "raw_drotation": np.asarray(state.get("raw_drotation", np.zeros(3)), dtype=np.float64),
            "grasp": int(state.get("grasp", 0)),
            "reset": int(state.get("reset", 0)),
            "base_mode": 0,
        }


def make_device(kind: str, pos_sensitivity: float = 1.0, rot_sensitivity: float = 1.0) -> Any:
    """robosuite's Keyboard or SpaceMouse, imported lazily; a clear error when it cannot start here."""
    if kind not in DEVICES:
        raise ValueError(f"unknown teleop device {kind!r}; use one of {DEVICES}")
    # robosuite devices only read env.robots[i].arms at construction; our envs need no robosuite env.
    shim = SimpleNamespace(robots=[SimpleNamespace(arms=["right"])])
    if "mujoco" not in sys.modules:
        # Importing robosuite imports mujoco, which fixes its GL backend for the whole process:
        # pick the offscreen one the robosuite families render with first.
        from robot_envs.rendering import select_gl_backend

        select_gl_backend()
    try:
        if kind == "keyboard":
            from robosuite.devices.keyboard import Keyboard

            return Keyboard(shim, pos_sensitivity=pos_sensitivity, rot_sensitivity=rot_sensitivity)
        from robosuite.devices.spacemouse import SpaceMouse

        return SpaceMouse(shim, pos_sensitivity=pos_sensitivity, rot_sensitivity=rot_sensitivity)
    except ImportError as err:
        need = "a display (X server / DISPLAY) for pynput" if kind == "keyboard" else "the `hidapi` package and a connected SpaceMouse"
        raise RuntimeError(f"cannot start the {kind} device: {err}. It needs {need}.") from err
    except OSError as err:
        raise RuntimeError(f"cannot open the {kind} device: {err}") from err


def has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class LiveView:
    """A matplotlib window showing the camera image; the title carries the hidden parameter."""

    def __init__(self) -> None:
        import matplotlib.pyplot as plt

        plt.ion()
        self._plt = plt
        self._fig, self._ax = plt.subplots(figsize=(4, 4))
        self._ax.axis("off")
        self._img = None

    def show(self, image: np.ndarray, title: str) -> None:
        if self._img is None:
            self._img = self._ax.imshow(image)
        else:
            self._img.set_data(image)
        self._ax.set_title(title, fontsize=9)
        self._fig.canvas.draw_idle()
        self._plt.pause(0.001)

    def close(self) -> None:
        self._plt.close(self._fig)


def describe_task(task: Task) -> str:
    params = ", ".join(f"{k}={v:.3f}" for k, v in task.params.items())
    return f"{task.task_id}  hidden: {params}"


def ask_terminal(ep: Episode) -> str:
    """Default keep/discard prompt."""
    while True:
        answer = input(f"episode {'succeeded' if ep.success else 'FAILED'}: keep it? [y]es / [n]o / [q]uit: ").strip().lower()
        if answer in ("y", "yes", "", "n", "no", "q", "quit"):
            return {"": "keep", "y": "keep", "yes": "keep", "n": "discard", "no": "discard"}.get(answer, "quit")


@dataclass
class TeleopStats:
    kept: list[str] = field(default_factory=list)
    discarded: int = 0
    aborted: int = 0


def teleop_collect(
    family: TaskFamily,
    tasks: list[Task],
    device: Any,
    output: str | Path,
    episodes_per_task: int,
    source: str,
    decide: Callable[[Episode], str] = ask_terminal,
    gain: float = 20.0,
    view: LiveView | None = None,
    step_hz: float = 0.0,
    seed: int = 0,
    valid_every: int = 10,
    say: Callable[[str], None] = print,
) -> TeleopStats:
    """Drive each task until ``episodes_per_task`` episodes are kept (or the operator quits).

    A device ``reset`` (robosuite keyboard: Ctrl+Q) aborts the episode, which is discarded.
    ``decide(episode)`` answers "keep", "discard" or "quit". ``step_hz`` paces real devices.
    """
    env = family.make_env(tasks[0] if tasks else None)
    writer = DemoWriter(output, make_env_args(family, env), valid_every=valid_every)
    action_dim = int(env.action_space.shape[0])
    stats = TeleopStats()
    attempt = 0
    used = used_seeds(output)  # appending: start poses not yet in the file
    try:
        for task in tasks:
            kept_here = 0
            while kept_here < episodes_per_task:
                env.task = task
                while (reset_seed := episode_seed(seed, task, 10_000 + attempt)) in used:
                    attempt += 1
                used.add(reset_seed)
                obs, info = env.reset(seed=reset_seed)
                attempt += 1
                say(f"task {describe_task(task)}  (kept {kept_here}/{episodes_per_task})")
                rec = EpisodeRecorder(task, source, reset_seed)
                rec.start(obs, sim_state(env))
                device.start_control()
                done = aborted = False
                while not done:
                    state = device.get_controller_state()
                    if state.get("reset"):
                        aborted = True
                        break
                    action = device_state_to_action(state, action_dim, family.name, gain)
                    obs, reward, terminated, truncated, info = env.step(action)
                    done = bool(terminated or truncated)
                    rec.step(action, obs, reward, done, info, sim_state(env))
                    if view is not None:
                        view.show(obs["image"], f"{describe_task(task)}  success={bool(info['success'])}")
                    if step_hz > 0:
                        time.sleep(1.0 / step_hz)
                if aborted:
                    stats.aborted += 1
                    say("episode reset by the operator: discarded")
                    continue
                ep = rec.finish(model_xml(env))
                decision = decide(ep)
                if decision == "quit":
                    say(f"quit: kept {len(stats.kept)} episodes in {output}")
                    return stats
                if decision == "keep":
                    stats.kept.append(writer.append(ep))
                    kept_here += 1
                    say(f"kept as {stats.kept[-1]} (success={ep.success})")
                else:
                    stats.discarded += 1
                    say("discarded")
    finally:
        env.close()
        if view is not None:
            view.close()
    return stats
