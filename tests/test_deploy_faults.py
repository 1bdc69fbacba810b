"""Fault injection on the simulated and the socket robot: every fault holds the arm, is logged, keeps the
episode so far on disk, and either resumes or stops with a message saying what happened and what to do."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from demos.hdf5 import DemoReader, DemoWriter, validate
from robot_envs import Task
from robot_envs.robots.remote import AuthenticationError, RobotServer, SocketRobot, check_listen_address
from robot_envs.robots.reward import SimulatorReward
from robot_envs.robots.safety import EmergencyStop, EStop, SafeRobot, SafetyLimits
from robot_envs.robots.sim import SimRobot
from tests.helpers import tiny_policy
from vision_gmps.deploy_collector import DeployDisplay, DeployStopped, RobotCollector
from vision_gmps.rollouts import PolicyActor

TOKEN = "test-token-0123456789"
POINT = {"family": "point", "family_kwargs": {"image_size": [8, 8], "horizon": 6}}
HORIZON = 6
# Generous deadlines: the CI machine is shared and loaded; only the stall test uses a short watchdog.
BOX = SafetyLimits(workspace_low=[-0.12, -0.12], workspace_high=[0.12, 0.12], position_indices=[0, 1],
                   action_scale=0.1, watchdog_s=3.0, max_frame_age_s=5.0)
TASK = Task("point", "test", 0, {"goal_x": 0.5, "goal_y": 0.5})


class Rig:
    """A robot (sim, or sim behind an in-process socket server), its safety layer and a collector writing a file."""

    def __init__(self, kind: str, tmp_path: Path, limits: SafetyLimits = BOX, **sim_kwargs) -> None:
        self.sim = SimRobot(**POINT, **sim_kwargs)
        self.server = None
        if kind == "socket":
            self.server = RobotServer(self.sim, TOKEN, watchdog_s=0.3).start()
            robot = SocketRobot(*self.server.address, token=TOKEN, timeout_s=10.0)
        else:
            robot = self.sim
        self.estop = EStop()
        self.safe = SafeRobot(robot, limits, self.estop)
        self.safe.preflight()
        self.path = tmp_path / "deploy.hdf5"
        env_args = {"env_name": "point", "type": 100, "env_kwargs": self.sim.family.env_args(), "family": "point",
                    "camera": "scene", "image_size": [8, 8], "horizon": HORIZON, "action_dim": 2, "proprio_dim": 2,
                    "obs_keys": {"image": "scene_image", "proprio": "proprio"}}
        self.collector = RobotCollector(self.safe, SimulatorReward(), HORIZON, DemoWriter(self.path, env_args, 0), {},
                                        DeployDisplay(False, 50.0), f"deploy:{kind}", control_hz=0, retries=1)
        self.policy = tiny_policy(image=8)

    def collect(self, act_hook=None, episodes: int = 1):
        actor = PolicyActor(self.policy, [self.policy.params()], seed=0)

        def act(obs, states, groups):
            step = self.safe.step
            if act_hook:
                out = act_hook(step)
                if out is not None:
                    return out
            return actor(obs, states, groups)

        act.params_per_group = actor.params_per_group  # type: ignore[attr-defined]
        act.policy = self.policy  # type: ignore[attr-defined]
        return self.collector.collect([TASK], episodes, act, seed=0)

    def demos(self) -> list:
        with DemoReader(self.path) as r:
            return [r.episode(n) for n in r.demos]

    def close(self) -> None:
        self.safe.close()
        if self.server:
            self.server.close()


@pytest.fixture(params=["sim", "socket"])
def kind(request):
    return request.param


def _events(ep) -> list[str]:
    return [e["kind"] for e in json.loads(ep.attrs["safety_events"])]


def test_camera_stops_delivering_frames(kind, tmp_path):
    rig = Rig(kind, tmp_path, camera_fails_after=3)
    try:
        with pytest.raises(DeployStopped, match="camera stopped delivering frames.*Check the camera.*resume=true"):
            rig.collect()
        assert rig.sim.held and rig.sim.holds >= 1
        (ep,) = rig.demos()
        assert ep.attrs["interrupted"] and ep.num_samples == 3 and "stale_frame" in _events(ep)
        assert validate(rig.path) == []
    finally:
        rig.close()


def test_policy_stall_past_the_watchdog_holds_then_the_slot_runs_again(kind, tmp_path):
    rig = Rig(kind, tmp_path, dataclasses.replace(BOX, watchdog_s=0.5))
    stalled = []

    def stall_once(step):
        if step == 2 and not stalled:
            stalled.append(step)
            time.sleep(2.0)  # > watchdog_s = 0.5

    try:
        batch = rig.collect(stall_once)
        assert rig.sim.holds >= 1
        interrupted, rerun = rig.demos()
        assert interrupted.attrs["interrupted"] and interrupted.num_samples == 2 and "watchdog" in _events(interrupted)
        assert not rerun.attrs["interrupted"] and rerun.num_samples == HORIZON
        assert batch.actions.shape == (1, HORIZON, 2)  # the adaptation gets a complete episode
    finally:
        rig.close()


def test_action_far_outside_the_workspace_is_clipped_and_logged(kind, tmp_path):
    rig = Rig(kind, tmp_path)
    try:
        rig.collect(lambda step: np.array([[50.0, -80.0]]))
        (ep,) = rig.demos()
        assert not ep.attrs["interrupted"]
        assert np.abs(ep.actions).max() <= BOX.max_action + 1e-6
        assert np.all(np.abs(ep.obs["proprio"]) <= 0.12 + 1e-6)  # never left the box
        assert {"clip_motion", "clip_workspace"} <= set(_events(ep))
    finally:
        rig.close()


def test_emergency_stop_mid_episode(kind, tmp_path):
    rig = Rig(kind, tmp_path)
    rig.estop.install()

    def press(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)  # the handler runs; the watchdog thread holds the arm

    try:
        with pytest.raises(DeployStopped, match=r"EmergencyStop: emergency stop \(SIGUSR1\).*Make the scene safe"):
            rig.collect(press)
        assert rig.sim.held
        (ep,) = rig.demos()
        assert ep.attrs["interrupted"] and ep.num_samples == 3 and "estop" in _events(ep)
    finally:
        rig.estop.uninstall()
        rig.close()


def test_client_with_a_wrong_token_is_refused_before_any_command(tmp_path):
    sim = SimRobot(**POINT)
    server = RobotServer(sim, TOKEN).start()
    try:
        with pytest.raises(AuthenticationError, match="wrong token.*no command was sent"):
            SocketRobot(*server.address, token="not-the-token").connect()
        assert server.refused == 1 and not sim.is_connected and sim.actions_sent == 0
        good = SocketRobot(*server.address, token=TOKEN)
        good.connect()
        assert sim.is_connected
        good.disconnect()
    finally:
        server.close()


def test_listeners_stay_on_loopback_unless_told(tmp_path):
    with pytest.raises(ValueError, match="--allow-remote"):
        check_listen_address("0.0.0.0", TOKEN, allow_remote=False)
    with pytest.raises(ValueError, match="token"):
        check_listen_address("127.0.0.1", "", allow_remote=False)
    with pytest.raises(ValueError, match="at least 16"):
        check_listen_address("0.0.0.0", "short", allow_remote=True)
    check_listen_address("0.0.0.0", TOKEN, allow_remote=True)


def start_server_process(kwargs: dict, env_extra: dict | None = None) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "VGMPS_ROBOT_TOKEN": TOKEN, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "robot_envs.robots.cli", "serve", "--robot", "sim", "--port", "0",
                             "--kwargs", json.dumps(kwargs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("listening on"):
        proc.kill()
        raise RuntimeError(f"robot server did not start: {line}{proc.stderr.read()}")
    return proc, int(line.strip().rsplit(":", 1)[1])


def test_robot_server_killed_mid_episode(tmp_path):
    proc, port = start_server_process(POINT)
    safe = None
    try:
        safe = SafeRobot(SocketRobot("127.0.0.1", port, token=TOKEN, timeout_s=10.0), BOX)
        safe.preflight()
        env_args = {"env_name": "point", "type": 100, "env_kwargs": {}, "family": "point", "camera": "scene",
                    "image_size": [8, 8], "horizon": HORIZON, "action_dim": 2, "proprio_dim": 2,
                    "obs_keys": {"image": "scene_image", "proprio": "proprio"}}
        path = tmp_path / "deploy.hdf5"
        collector = RobotCollector(safe, SimulatorReward(), HORIZON, DemoWriter(path, env_args, 0), {},
                                   DeployDisplay(False, 50.0), "deploy:socket", control_hz=0)
        policy = tiny_policy(image=8)
        actor = PolicyActor(policy, [policy.params()])

        def act(obs, states, groups):
            if safe.step == 4:
                proc.kill()
                proc.wait()
            return actor(obs, states, groups)

        act.params_per_group, act.policy = actor.params_per_group, policy  # type: ignore[attr-defined]
        with pytest.raises(DeployStopped, match="lost the connection to the robot server.*Restart it.*resume=true"):
            collector.collect([TASK], 1, act, seed=0)
        with DemoReader(path) as r:
            (name,) = r.demos
            ep = r.episode(name)
        assert ep.attrs["interrupted"] and ep.num_samples == 4 and "robot_fault" in _events(ep)
        assert validate(path) == []
    finally:
        if safe:
            safe.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


class OldFrameRobot(SimRobot):
    """A camera whose frames arrive 10 s late (a driver with a stuck buffer)."""

    def get_observation(self):
        return {**super().get_observation(), "timestamp": time.time() - 10.0}


def test_refuses_to_start_on_a_stale_frame_or_an_unreachable_robot():
    from robot_envs.robots import CameraFault, RobotFault

    robot = OldFrameRobot(**POINT)
    safe = SafeRobot(robot, BOX)
    with pytest.raises(CameraFault, match="refusing to start: camera frame is 10.* s old"):
        safe.preflight()
    assert robot.actions_sent == 0
    safe.close()
    unreachable = SafeRobot(SocketRobot("127.0.0.1", 9, token=TOKEN), BOX)  # port 9 (discard): nothing listens
    with pytest.raises(RobotFault, match="refusing to start: cannot reach the robot server.*vgmps robot serve"):
        unreachable.preflight()
    unreachable.close()


def test_terminal_keys_trigger_the_estop_and_answer_the_prompt():
    from robot_envs.robots.keys import TerminalKeys
    from robot_envs.robots.reward import key_prompt

    estop = EStop()
    keys = TerminalKeys(estop)
    keys.feed("y")
    assert not estop.triggered and key_prompt(keys.read_answer)(0) is True
    keys.feed("e")
    assert estop.triggered and "key" in estop.reason
    with pytest.raises(EmergencyStop, match="operator"):
        keys.read_answer()


def test_server_holds_the_arm_when_its_client_goes_quiet_or_away():
    sim = SimRobot(**POINT)
    server = RobotServer(sim, TOKEN, watchdog_s=0.2).start()
    try:
        client = SocketRobot(*server.address, token=TOKEN, timeout_s=10.0)
        client.connect()
        client.send_action(np.array([0.5, 0.5], np.float32))
        deadline = time.time() + 5.0
        while not sim.held and time.time() < deadline:  # the client (policy process) stalls
            time.sleep(0.05)
        assert sim.held and server.watchdog_holds >= 1
        client.send_action(np.array([0.5, 0.5], np.float32))
        assert not sim.held
        client._sock.close()  # the client process dies without a goodbye
        deadline = time.time() + 5.0
        while not sim.held and time.time() < deadline:
            time.sleep(0.05)
        assert sim.held
    finally:
        server.close()
