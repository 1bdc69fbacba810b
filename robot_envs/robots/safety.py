"""The safety layer between policy and robot: limits, watchdog, e-stop and fault holds.

``SafeRobot`` wraps any ``Robot``. Every action passes ``clip``: each component is
limited to ``max_action`` (a per-step motion limit, as a fraction of the arm's full
step) and the position it would reach (``proprio[position_indices] + action_scale * a``)
is kept inside the workspace box. Clipping never stops an episode; it is logged as a
``SafetyEvent``. The rest stops motion and raises, so the caller keeps the episode so far:

* **watchdog**: a thread holds the arm when no command arrives within ``watchdog_s``
  during an episode (the policy stalled); the next command raises ``WatchdogTripped``;
* **e-stop**: ``EStop.trigger`` (wired to a key, SIGINT and SIGUSR1) holds the arm within
  one watchdog poll and makes every later command raise ``EmergencyStop``;
* **faults**: a camera or robot fault, or a frame older than ``max_frame_age_s`` (or not
  newer than the previous one after an action), holds the arm and raises ``CameraFault``
  / ``RobotFault``; ``preflight`` refuses to start on any of them.

Defaults are conservative: half-speed steps, a 0.5 s watchdog, and real arms refuse to
start without a workspace box.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from robot_envs.robots.base import CameraFault, Observation, Robot, RobotFault, check_observation, reset_robot

log = logging.getLogger("robot_envs.robots")


class WatchdogTripped(RobotFault):
    """No command arrived within the watchdog deadline; the arm was held."""


class EmergencyStop(RobotFault):
    """The operator pressed the e-stop (key, SIGINT or SIGUSR1); the arm is held."""


@dataclass
class SafetyLimits:
    max_action: float = 0.5  # per-step limit on each action component (1.0 = the arm's full max step)
    workspace_low: list[float] | None = None  # box on proprio[position_indices], the arm's units (metres)
    workspace_high: list[float] | None = None
    position_indices: list[int] = field(default_factory=lambda: [0, 1, 2])
    action_scale: float = 0.05  # position change per unit action (the arm's max step), to predict the next position
    watchdog_s: float = 0.5  # hold when no command arrives within this
    max_frame_age_s: float = 0.5  # a frame older than this is stale
    require_new_frame: bool = True  # after an action the next frame must be newer than the last one

    def __post_init__(self) -> None:
        if not 0 < self.max_action <= 1:
            raise ValueError(f"safety.max_action must be in (0, 1], got {self.max_action}")
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise ValueError("set both safety.workspace_low and safety.workspace_high, or neither")
        if self.workspace_low is not None:
            low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
            if low.shape != high.shape or low.shape != (len(self.position_indices),) or np.any(low >= high):
                raise ValueError(f"safety workspace needs low < high with one entry per position index "
                                 f"{list(self.position_indices)}; got low={low.tolist()} high={high.tolist()}")
        if self.watchdog_s <= 0 or self.max_frame_age_s <= 0:
            raise ValueError("safety.watchdog_s and safety.max_frame_age_s must be positive")


@dataclass
class SafetyEvent:
    kind: str  # clip_motion | clip_workspace | watchdog | estop | camera_fault | robot_fault | stale_frame
    step: int
    detail: str
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EStop:
    """A latch the operator sets; ``install`` wires SIGINT and SIGUSR1 to it (main thread only)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def triggered(self) -> bool:
        return self.reason is not None

    def trigger(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def install(self) -> "EStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGUSR1):
                self._previous[sig] = signal.signal(sig, lambda s, _f: self.trigger(signal.Signals(s).name))
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class SafeRobot:
    """Wraps a robot; the deploy loop only ever talks to the arm through this."""

    def __init__(self, robot: Robot, limits: SafetyLimits, estop: EStop | None = None,
                 on_event: Callable[[SafetyEvent], None] | None = None) -> None:
        self.robot, self.limits = robot, limits
        self.estop = estop or EStop()
        self.on_event = on_event
        self.events: list[SafetyEvent] = []  # this episode's events
        self.step = 0
        self._lock = threading.RLock()
        self._armed = False
        self._last_command = time.monotonic()
        self._tripped: str | None = None
        self._held = False
        self._last_stamp = -np.inf
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ episode lifecycle
    def preflight(self) -> Observation:
        """Refuse to start on a fault or a stale frame: raises with a message saying what to fix."""
        try:
            if not self.robot.is_connected:
                self.robot.connect()
            obs = self.robot.get_observation()
            check_observation(obs, self.robot.observation_features)
            self._check_fresh(obs, after_action=False)
        except RobotFault as err:
            raise type(err)(f"refusing to start: {err}") from err
        return obs

    def start_episode(self, seed: int | None = None) -> Observation:
        with self._lock:
            self.events, self.step, self._tripped = [], 0, None
            obs = reset_robot(self.robot, seed)
            self._held = False
        check_observation(obs, self.robot.observation_features)
        self._check_fresh(obs, after_action=False)
        self._last_command = time.monotonic()
        self._armed = True
        return obs

    def end_episode(self) -> None:
        """Between episodes the arm holds still (the operator may be judging or resetting the scene)."""
        self._armed = False
        self.hold("episode end", log_event=False)

    def close(self) -> None:
        self._stop.set()
        self._armed = False

    # ------------------------------------------------------------------ control step
    def act(self, action: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """Clip, check the latches, send; returns the action sent. Raises after holding on any stop."""
        if self.estop.triggered:
            if self._tripped and self._tripped.startswith("emergency stop"):  # the watchdog thread held and logged it
                raise EmergencyStop(self._tripped)
            self._stop_for(EmergencyStop, "estop", f"emergency stop ({self.estop.reason})")
        if self._tripped:
            raise WatchdogTripped(self._tripped)
        safe = self.clip(np.asarray(action, dtype=np.float64), np.asarray(proprio, dtype=np.float64))
        with self._lock:
            try:
                sent = self.robot.send_action(safe.astype(np.float32))
            except RobotFault as err:
                self._stop_for(type(err), "camera_fault" if isinstance(err, CameraFault) else "robot_fault", str(err), cause=err)
            self._last_command = time.monotonic()
            self._held = False
        self.step += 1
        return np.asarray(sent, dtype=np.float32)

    def observe(self) -> Observation:
        try:
            with self._lock:
                obs = self.robot.get_observation()
            check_observation(obs, self.robot.observation_features)
        except RobotFault as err:
            self._stop_for(type(err), "camera_fault" if isinstance(err, CameraFault) else "robot_fault", str(err), cause=err)
        self._check_fresh(obs, after_action=True)
        return obs

    def clip(self, action: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        lim = self.limits
        out = np.clip(np.nan_to_num(action, nan=0.0, posinf=0.0, neginf=0.0), -lim.max_action, lim.max_action)
        if not np.all(np.isfinite(action)) or np.any(out != action):
            self._event("clip_motion", f"action {np.round(action, 3).tolist()} limited to ±{lim.max_action}")
        if lim.workspace_low is not None:
            idx = list(lim.position_indices)
            pos = proprio[idx]
            target = pos + lim.action_scale * out[: len(idx)]
            inside = np.clip(target, lim.workspace_low, lim.workspace_high)
            if np.any(inside != target):
                # Never push further out; an arm already outside may move back in.
                out[: len(idx)] = (inside - pos) / lim.action_scale
                out[: len(idx)] = np.clip(out[: len(idx)], -lim.max_action, lim.max_action)
                self._event("clip_workspace", f"target {np.round(target, 4).tolist()} kept inside the workspace box")
        return out

    # ------------------------------------------------------------------ holds and faults
    def hold(self, why: str, log_event: bool = True) -> None:
        with self._lock:
            if not self._held:
                try:
                    self.robot.hold()
                except RobotFault as err:  # the link is gone: the server's own watchdog holds the arm
                    log.error("could not hold the arm (%s): %s", why, err)
                self._held = True
        if log_event:
            log.warning("arm held: %s", why)

    def _stop_for(self, kind: type[RobotFault], event: str, message: str, cause: Exception | None = None):
        self._armed = False
        self._event(event, message)
        self.hold(message, log_event=False)
        raise kind(message) from cause

    def _check_fresh(self, obs: Observation, after_action: bool) -> None:
        stamp = float(obs["timestamp"])
        age = time.time() - stamp
        if age > self.limits.max_frame_age_s:
            self._stop_for(CameraFault, "stale_frame", f"camera frame is {age:.2f} s old (limit {self.limits.max_frame_age_s} s): "
                           "the camera stopped delivering frames")
        if after_action and self.limits.require_new_frame and stamp <= self._last_stamp:
            self._stop_for(CameraFault, "stale_frame", "camera frame did not change after an action: "
                           "the camera stopped delivering frames")
        self._last_stamp = stamp

    def _event(self, kind: str, detail: str) -> None:
        event = SafetyEvent(kind, self.step, detail)
        self.events.append(event)
        if kind not in ("clip_motion", "clip_workspace"):
            log.warning("safety: %s at step %d: %s", kind, self.step, detail)
        if self.on_event:
            self.on_event(event)

    def _watch(self) -> None:
        poll = min(self.limits.watchdog_s / 5, 0.02)
        while not self._stop.wait(poll):
            if not self._armed:
                continue
            if self.estop.triggered:
                self._armed = False
                self._event("estop", f"emergency stop ({self.estop.reason})")
                self.hold(f"emergency stop ({self.estop.reason})")
                self._tripped = f"emergency stop ({self.estop.reason})"
            elif time.monotonic() - self._last_command > self.limits.watchdog_s:
                self._armed = False
                msg = f"no command for {self.limits.watchdog_s:.2f} s: the policy stalled past the watchdog deadline"
                self._event("watchdog", msg)
                self.hold(msg)
                self._tripped = msg
