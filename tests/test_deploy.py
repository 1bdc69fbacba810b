"""``vgmps deploy`` end to end (socket robot, scripted operator), resume, the LeRobot adapter and ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from demos.cli import demos_main
from demos.hdf5 import DemoReader, DemoWriter
from robot_envs import Task
from robot_envs.robots import RobotFault, make_robot
from robot_envs.robots.lerobot import LeRobotAdapter
from robot_envs.robots.reward import DetectorReward, scripted_operator
from robot_envs.robots.safety import SafeRobot, SafetyLimits
from tests.helpers import tiny_policy
from tests.test_deploy_faults import TOKEN, start_server_process
from vision_gmps.checkpoint import load_checkpoint
from vision_gmps.config import ConfigError, load_config
from vision_gmps.deploy import deploy, deploy_main
from vision_gmps.deploy_collector import DeployDisplay, RobotCollector
from vision_gmps.export import export_main, export_onnx, latency, max_action_difference
from vision_gmps.rollouts import PolicyActor
from vision_gmps.train import train

# goal_radius 0.6: random 6-step episodes sometimes reach the goal, so adaptation has a reward to follow
TINY = ["wandb.mode=disabled", "env.tasks.train=3", "env.kwargs.horizon=6", "env.kwargs.image_size=[16,16]",
        "env.kwargs.goal_radius=0.6",
        "policy.conv_channels=[4,4]", "policy.conv_strides=[2,1]", "policy.hidden_sizes=[16]", "algo.rollouts_per_task=2",
        "algo.outer_steps=1", "train.eval_every=0", "train.checkpoint_every=1", "sampler.num_envs=2", "torch_threads=1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny meta-trained point checkpoint (one MAML iteration)."""
    run = tmp_path_factory.mktemp("run")
    train(load_config(["algo=maml", *TINY, f"run_dir={run}", "train.iterations=1"]))
    return run / "checkpoints" / "last.pt"


def _args(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    # Generous deadlines: the CI machine is shared; the fault tests exercise the short ones.
    return [f"checkpoint={checkpoint}", f"output={out}", "control_hz=0", "rollouts_per_task=2", "display=false",
            "estop_keys=false", "export_onnx=false", "safety.watchdog_s=5", "safety.max_frame_age_s=5", *extra]


def test_deploy_on_the_socket_robot_with_a_scripted_operator_validates_and_replays(checkpoint, tmp_path, monkeypatch, capsys):
    proc, port = start_server_process({"family": "point", "family_kwargs": {"image_size": [16, 16], "horizon": 6}})
    monkeypatch.setenv("VGMPS_ROBOT_TOKEN", TOKEN)
    out = tmp_path / "deploy" / "episodes.hdf5"
    try:
        code = deploy_main(_args(checkpoint, out, "robot=socket", f"robot.kwargs.port={port}", "robot.kwargs.timeout_s=10",
                                 "reward.source=operator",
                                 "reward.scripted_answers=yn", "steps=1", "eval_episodes=1", "export_onnx=true"))
    finally:
        proc.kill()
        proc.wait()
    assert code == 0, capsys.readouterr().err
    assert demos_main(["validate", str(out)]) == 0
    assert demos_main(["replay", str(out), "--all", "--mode", "states"]) == 0  # frames identical from stored states
    with DemoReader(out) as r:
        eps = [r.episode(n) for n in r.demos]
        deploy_args = r.env_args["deploy"]
    assert len(eps) == 1 + 2 + 1  # eval before, two rollouts, eval after
    assert [e.success for e in eps] == [True, False, True, False]  # the script's answers, in order
    assert all(e.attrs["reward_source"] == "operator(scripted)" and e.source == "deploy:socket" for e in eps)
    assert all(e.rewards[-1] == float(e.success) and e.rewards[:-1].sum() == 0 for e in eps)
    assert deploy_args["robot"]["via"] == f"socket 127.0.0.1:{port}" and deploy_args["simulated"]
    # The episodes after the step ran with the adapted parameters, which the file records.
    before, after = eps[0].arrays, eps[-1].arrays
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("params/"))
    results = json.loads((out.parent / "deploy_results.json").read_text())
    assert [r["step"] for r in results] == [0, 1] and results[0]["success"] == 1.0
    assert (out.parent / "policy_task0.onnx").exists()
    onnx_path = tmp_path / "again.onnx"
    assert export_main([str(checkpoint), "--params", str(out.parent / "adapted_params.pt"), "--output", str(onnx_path),
                        "--bench"]) == 0
    printed = capsys.readouterr().out
    assert float(printed.split("max |onnx - pytorch| action on 32 random inputs: ")[1].split()[0]) < 1e-5


def test_interrupted_deploy_resumes_without_running_finished_episodes_again(checkpoint, tmp_path, capsys):
    out = tmp_path / "episodes.hdf5"
    # A wide goal radius on the simulator: rewards vary between episodes, so every step changes the parameters.
    easy = "robot.kwargs.family_kwargs={image_size:[16,16],horizon:6,goal_radius:0.68}"
    base = _args(checkpoint, out, "reward.source=simulator", "steps=2", "eval_episodes=0", easy)
    # The camera fails in the second rollout of the second adaptation step (after 3 episodes x 6 steps + 3).
    assert deploy_main([*base, "robot.kwargs.camera_fails_after=21"]) == 1
    err = capsys.readouterr().err
    assert "camera stopped delivering frames" in err and "resume=true" in err
    with DemoReader(out) as r:
        first = [r.episode(n) for n in r.demos]
    assert [e.attrs["interrupted"] for e in first] == [False, False, False, True] and first[-1].num_samples == 3
    assert deploy_main(base) == 2 and "exists; pass resume=true" in capsys.readouterr().err  # nothing overwritten
    assert deploy_main([*base, "resume=true", "seed=1"]) == 2 and "seed" in capsys.readouterr().err
    assert deploy_main([*base, "resume=true"]) == 0
    with DemoReader(out) as r:
        second = [r.episode(n) for n in r.demos]
    assert len(second) == 4 + 1  # only the interrupted rollout ran on the robot again
    assert [(e.attrs["deploy_call"], e.attrs["deploy_slot"]) for e in second[4:]] == [(1, 1)]
    np.testing.assert_array_equal(second[0].obs["image"], first[0].obs["image"])
    # ...and the result is the uninterrupted run's, bit for bit (the simulator is seeded per episode,
    # the stored episodes' exploration noise is drawn again).
    straight = tmp_path / "straight"
    assert deploy_main(_args(checkpoint, straight / "episodes.hdf5", "reward.source=simulator", "steps=2",
                             "eval_episodes=0", easy)) == 0
    resumed_params = torch.load(tmp_path / "adapted_params.pt", weights_only=True)
    straight_params = torch.load(straight / "adapted_params.pt", weights_only=True)
    assert all(torch.equal(resumed_params[k], straight_params[k]) for k in straight_params)
    meta = load_checkpoint(checkpoint)["policy"]
    assert any(not torch.equal(v, meta[k.split("/", 1)[1]]) for k, v in straight_params.items())
    assert 0 < sum(e.success for e in second) < len(second)
    # eval_episodes=0: no separate evaluation episodes; each step's rollouts are reported at the step they ran at
    rows = json.loads((tmp_path / "deploy_results.json").read_text())
    assert [(r["step"], r["episodes"]) for r in rows] == [(0, 2), (1, 4)]


def test_deploy_refuses_bad_setups_before_moving(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match=r"robot gives image \(8, 8, 3\).*the policy needs image \(16, 16, 3\)"):
        deploy(load_config(_args(checkpoint, tmp_path / "a.hdf5", "reward.source=simulator",
                                 "robot.kwargs.family_kwargs={image_size:[8,8]}"), config_name="deploy"))
    with pytest.raises(ConfigError, match="terminal"):
        deploy(load_config(_args(checkpoint, tmp_path / "b.hdf5", "reward.source=operator"), config_name="deploy"))
    with pytest.raises(ConfigError, match="detector"):
        deploy(load_config(_args(checkpoint, tmp_path / "c.hdf5", "reward.source=detector"), config_name="deploy"))
    for bad in ("0", "abc"):  # a size that is not a positive number: a clear error, not float()'s
        with pytest.raises(ConfigError, match=f"natural_step_scale={bad}: must be a number > 0"):
            deploy(load_config(_args(checkpoint, tmp_path / "d.hdf5", "step_size=natural", f"natural_step_scale={bad}"),
                               config_name="deploy"))
    assert not any(tmp_path.glob("*.hdf5"))


def judge_by_proprio(obs) -> bool:
    """A user's success detector (named as tests.test_deploy:judge_by_proprio)."""
    return bool(obs["proprio"][0] > 0)


def test_detector_and_scripted_operator_rewards():
    detector = DetectorReward("tests.test_deploy:judge_by_proprio")
    assert detector.step({"proprio": np.array([0.2, 0.0])}) == 1.0 and detector.provenance.startswith("detector:")
    rewards, success = scripted_operator("ny").finish([0.0, 0.0, 0.0], episode=1)
    assert success and rewards.tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="module:name"):
        DetectorReward("no_colon")
    with pytest.raises(ValueError, match="y/n"):
        scripted_operator("maybe")


class StandInLeRobot:
    """Same method names and feature dicts as a LeRobot follower arm (two joints and a camera)."""

    def __init__(self) -> None:
        self.is_connected = False
        self.joints = {"shoulder_pan.pos": 0.0, "elbow_flex.pos": 10.0}
        self.sent: list[dict] = []
        self.calibrated_on_connect = None

    @property
    def observation_features(self) -> dict:
        return {**{k: float for k in self.joints}, "front": (24, 32, 3)}

    @property
    def action_features(self) -> dict:
        return {k: float for k in self.joints}

    def connect(self, calibrate: bool = True) -> None:
        self.is_connected, self.calibrated_on_connect = True, calibrate

    def disconnect(self) -> None:
        self.is_connected = False

    def get_observation(self) -> dict:
        image = np.full((24, 32, 3), 100, np.uint8)
        image[:, 16:] = 200
        return {**self.joints, "front": image}

    def send_action(self, action: dict) -> dict:
        # LeRobot's max_relative_target: no joint moves more than 2 units per step
        sent = {k: float(np.clip(v, self.joints[k] - 2.0, self.joints[k] + 2.0)) for k, v in action.items()}
        self.joints.update(sent)
        self.sent.append(sent)
        return sent


def test_lerobot_adapter_drives_a_lerobot_style_robot(tmp_path):
    arm = StandInLeRobot()
    robot = LeRobotAdapter(arm, image_size=[8, 8], action_scale=5.0)
    robot.connect(calibrate=False)
    assert arm.calibrated_on_connect is False
    assert robot.observation_features == {"image": (8, 8, 3), "proprio": (2,)}
    obs = robot.get_observation()
    assert obs["image"].shape == (8, 8, 3) and obs["image"][0, 0, 0] == 100 and obs["image"][0, -1, 0] == 200
    sent = robot.send_action(np.array([1.0, 0.2], np.float32))  # asks +5 and +1: the arm clips the first to +2
    np.testing.assert_allclose(sent, [0.4, 0.2], atol=1e-6)
    assert arm.joints == pytest.approx({"shoulder_pan.pos": 2.0, "elbow_flex.pos": 11.0})
    # ...and the deploy loop runs on it through the safety layer.
    safe = SafeRobot(robot, SafetyLimits(watchdog_s=1.0))
    env_args = {"env_name": "point", "type": 100, "env_kwargs": {}, "family": "point", "camera": "front",
                "image_size": [8, 8], "horizon": 3, "action_dim": 2, "proprio_dim": 2,
                "obs_keys": {"image": "front_image", "proprio": "proprio"}}
    policy = tiny_policy(image=8)
    actor = PolicyActor(policy, [policy.params()])
    collector = RobotCollector(safe, scripted_operator("y"), 3, DemoWriter(tmp_path / "l.hdf5", env_args, 0), {},
                               DeployDisplay(False, 50.0), "deploy:lerobot", control_hz=0)
    batch = collector.collect([Task("point", "deploy", 0, {})], 1, actor, seed=0)
    safe.close()
    assert batch.actions.shape == (1, 3, 2) and batch.rewards[0, -1] == 1.0 and len(arm.sent) > 3
    assert LeRobotAdapter(factory="tests.test_deploy:StandInLeRobot").action_features == {"action": (2,)}
    with pytest.raises(ValueError, match="lacks LeRobot's robot protocol"):
        LeRobotAdapter(object())
    with pytest.raises(RobotFault, match="components"):
        robot.send_action(np.zeros(3))


def test_robot_lookup_names_the_choices():
    with pytest.raises(ValueError, match="sim.*module:Class"):
        make_robot("no_such_robot")
    with pytest.raises(ValueError, match="not a subclass"):
        make_robot("tests.test_deploy:StandInLeRobot")


@pytest.mark.parametrize("offset,latent", [(None, None), (-1.0, None), (None, -1.0)])
def test_onnx_export_matches_pytorch_with_adapted_parameters(tmp_path, offset, latent):
    policy = tiny_policy(dtype=torch.float32, image=16, offset_log_std=offset, latent_log_std=latent)
    g = torch.Generator().manual_seed(3)
    adapted = {n: policy.params()[n].detach() + 0.3 * torch.randn(policy.params()[n].shape, generator=g)
               for n in policy.adapted_names}
    path = export_onnx(policy, adapted, tmp_path / "p.onnx")
    assert max_action_difference(path, policy, adapted, n=64) < 1e-5
    # the adapted values are in the graph: the meta-trained parameters give other actions
    assert max_action_difference(path, policy, None, n=8) > 1e-3
    timing = latency(path, policy, adapted, runs=20)
    assert timing["onnxruntime_p50_ms"] > 0 and timing["budget_ms"] == 50.0


@pytest.mark.parametrize("family", ["push", "door"])
def test_sim_robot_on_push_and_door_keeps_exactly_replayable_episodes(tmp_path, family):
    from robot_envs.robots.reward import SimulatorReward
    from robot_envs.robots.sim import SimRobot
    from vision_gmps.deploy import _env_args

    robot = SimRobot(family, {"image_size": [16, 16], "horizon": 3})
    robot.connect()
    start = robot.get_observation()["proprio"][:3].astype(float)
    # A 1 cm box around the start, in metres on the end-effector position: a full-speed action leaves it.
    limits = SafetyLimits(workspace_low=list(start - 0.01), workspace_high=list(start + 0.01), position_indices=[0, 1, 2],
                          action_scale=0.05, max_action=1.0, watchdog_s=5.0, max_frame_age_s=5.0)
    safe = SafeRobot(robot, limits)
    trained = load_config([f"env={family}"])
    env_args = _env_args(robot, trained, 3, {"checkpoint": "none"})
    path = tmp_path / f"{family}.hdf5"
    act_dim = robot.action_features["action"][0]
    collector = RobotCollector(safe, SimulatorReward(), 3, DemoWriter(path, env_args, 0), {}, DeployDisplay(False, 50.0),
                               "deploy:sim", control_hz=0)
    task = robot.family.sample("test", 1, 0)[0]
    collector.collect([task], 1, lambda obs, states, groups: np.ones((1, act_dim), np.float32), seed=0)
    safe.close()
    robot.disconnect()
    with DemoReader(path) as r:
        ep = r.episode(r.demos[0])
    assert "clip_workspace" in ep.attrs["safety_events"]
    assert np.all(ep.actions[:, :3] <= 0.01 / 0.05 + 1e-6)  # the box limited the step, in metres
    assert demos_main(["replay", str(path), "--mode", "states"]) == 0


@pytest.mark.parametrize("step_size", ["learned", "natural"])
def test_deploy_on_the_simulator_reproduces_vgmps_adapt_exactly(checkpoint, tmp_path, step_size):
    """The same adaptation code: on the sim robot (full-step limits, the sampler's episode seeds) deploy
    computes bit-identical adapted parameters and the same success and return as `vgmps adapt`."""
    from vision_gmps.adapt import adapt

    common = {"num_tasks": 2, "steps": 1, "rollouts_per_task": 3, "eval_episodes": 1, "step_size": step_size}
    simulated = adapt(load_config(["wandb.mode=disabled", f"adapt.checkpoint={checkpoint}", "sampler.num_envs=1",
                                   f"run_dir={tmp_path / 'adapt'}", "torch_threads=1",
                                   *[f"adapt.{k}={v}" for k, v in common.items()]]))[step_size]
    deployed = deploy(load_config(_args(checkpoint, tmp_path / "d.hdf5", "reward.source=simulator", "safety.max_action=1.0",
                                        *[f"{k}={v}" for k, v in common.items()]), config_name="deploy"))
    for a, b in zip(simulated.final_params, deployed.final_params):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = load_checkpoint(checkpoint)["policy"]
    # not a trivial match: parameters moved (a task whose 3 sparse-reward rollouts all failed gets no gradient)
    assert any(any(not torch.equal(meta[k], v) for k, v in p.items()) for p in deployed.final_params)
    for row_a, row_b in zip(simulated.rows, deployed.rows):
        assert {k: row_a[k] for k in ("step", "success", "return", "episodes")} == \
               {k: row_b[k] for k in ("step", "success", "return", "episodes")}


def test_deploy_with_a_wrong_token_stops_before_anything_moves(checkpoint, tmp_path, monkeypatch, capsys):
    from robot_envs.robots.remote import RobotServer
    from robot_envs.robots.sim import SimRobot

    sim = SimRobot("point", {"image_size": [16, 16], "horizon": 6})
    server = RobotServer(sim, TOKEN).start()
    monkeypatch.setenv("VGMPS_ROBOT_TOKEN", "someone-elses-token")
    try:
        code = deploy_main(_args(checkpoint, tmp_path / "e.hdf5", "robot=socket", f"robot.kwargs.port={server.address[1]}",
                                 "reward.source=simulator"))
    finally:
        server.close()
    assert code == 1
    err = capsys.readouterr().err
    assert "refusing to start" in err and "wrong token" in err and "VGMPS_ROBOT_TOKEN" in err
    assert server.refused == 1 and sim.actions_sent == 0 and not (tmp_path / "e.hdf5").exists()
