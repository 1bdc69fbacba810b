"""``vgmps deploy checkpoint=PATH robot=sim|socket|lerobot``: adapt a meta-trained policy on a robot.

The adaptation is ``vision_gmps.adaptation.run_adaptation``, the code ``vgmps adapt`` runs,
with a ``RobotCollector`` in place of the simulator's ``Sampler``. Around it: the safety
layer (``robot_envs.robots.safety``), a reward source (operator, detector or simulator),
the live display, and the deploy file: every episode, interrupted ones included, appended
to ``output`` (demo layout) the moment it ends. ``resume=true`` reads finished episodes
back instead of running them again. At the end: ``deploy_results.{json,md}``,
``adapted_params.pt`` (tensors only) and ``policy_task<k>.onnx`` in ``run_dir``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from demos.hdf5 import VGMPS_ENV_TYPE, DemoReader, DemoWriter, Episode
from demos.collect import rebuild_family
from robot_envs import Task
from robot_envs.robots import Robot, RobotFault, make_robot
from robot_envs.robots.keys import TerminalKeys
from robot_envs.robots.reward import DetectorReward, OperatorReward, RewardSource, SimulatorReward, key_prompt, scripted_operator
from robot_envs.robots.safety import EStop, SafeRobot, SafetyLimits
from vision_gmps.adapt import markdown_table
from vision_gmps.adaptation import EXPLORATION_KEYS, AdaptationResult, exploration_for, natural_scale_of, run_adaptation
from vision_gmps.checks import exploration_problems, is_number
from vision_gmps.checkpoint import CheckpointError, load_checkpoint, policy_from_checkpoint
from vision_gmps.config import ConfigError, load_config
from vision_gmps.deploy_collector import DeployDisplay, DeployStopped, RobotCollector
from vision_gmps.runs import setup_logging

log = logging.getLogger("vision_gmps")
# Settings that fix which episodes a deployment runs; a resumed file must agree on all of them.
RUN_KEYS = ("checkpoint_sha256", "steps", "rollouts_per_task", "eval_episodes", "num_tasks", "split", "seed",
            "step_size", "horizon", "reward_source", *EXPLORATION_KEYS)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_reward(rcfg: dict[str, Any], keys: TerminalKeys | None) -> RewardSource:
    source = rcfg["source"]
    if source == "simulator":
        return SimulatorReward()
    if source == "detector":
        if not rcfg.get("detector"):
            raise ConfigError("reward.source=detector needs reward.detector='module:function' (obs -> bool)")
        return DetectorReward(rcfg["detector"])
    if source == "operator":
        if rcfg.get("scripted_answers"):
            return scripted_operator(str(rcfg["scripted_answers"]))
        if keys is None or not sys.stdin.isatty():
            raise ConfigError("reward.source=operator needs a terminal for the y/n key; without one use "
                              "reward.source=detector or reward.scripted_answers")
        return OperatorReward(key_prompt(keys.read_answer))
    raise ConfigError(f"reward.source={source!r}; use operator, detector or simulator")


def _env_args(robot: Robot, trained: DictConfig, horizon: int, run: dict[str, Any]) -> dict[str, Any]:
    """The deploy file's ``env_args``: demo layout, plus what the robot was and what the run was."""
    desc = robot.describe()
    if desc.get("simulated"):
        fargs = dict(desc["env_args"])
    else:  # a real arm: record the family the policy was trained on; there is no simulator to rebuild
        fargs = {"family": trained.env.family, **OmegaConf.to_container(trained.env.kwargs, resolve=True)}
    camera = str(fargs.get("camera") or "scene")
    image, proprio = robot.observation_features["image"], robot.observation_features["proprio"]
    return {
        "env_name": fargs["family"], "type": VGMPS_ENV_TYPE,
        "env_kwargs": {k: v for k, v in fargs.items() if k not in ("family", "env_name", "type")},
        "family": fargs["family"], "camera": camera, "image_size": [int(image[0]), int(image[1])],
        "horizon": horizon, "action_dim": int(robot.action_features["action"][0]), "proprio_dim": int(proprio[0]),
        "obs_keys": {"image": f"{camera}_image", "proprio": "proprio"},
        "deploy": {**run, "simulated": bool(desc.get("simulated")), "robot": desc},
    }


def _check_robot(robot: Robot, spec: Any, family: str) -> None:
    desc = robot.describe()
    if desc.get("simulated") and desc["env_args"]["family"] != family:
        raise ConfigError(f"the simulated robot runs {desc['env_args']['family']!r} but the checkpoint was trained on "
                          f"{family!r}; set robot.kwargs.family={family}")
    image, proprio = tuple(robot.observation_features["image"]), tuple(robot.observation_features["proprio"])
    action = tuple(robot.action_features["action"])
    want = (tuple(spec.image_shape), (spec.proprio_dim,), (spec.action_dim,))
    if (image, proprio, action) != want:
        raise ConfigError(f"robot gives image {image}, proprio {proprio}, action {action}; the policy needs image "
                          f"{want[0]}, proprio {want[1]}, action {want[2]}")


def load_finished(path: Path, run: dict[str, Any]) -> dict[tuple[int, int], Episode]:
    """Finished episodes of an earlier run of the same deployment, keyed by (collection, slot)."""
    with DemoReader(path) as reader:
        earlier = reader.env_args.get("deploy")
        if earlier is None:
            raise ConfigError(f"{path} is not a deploy file; choose another output=")
        differ = [f"{k}: file {earlier.get(k)!r} vs now {run[k]!r}" for k in RUN_KEYS if earlier.get(k) != run[k]]
        if differ:
            raise ConfigError(f"cannot resume {path}: it was written by another deployment ({'; '.join(differ)}); "
                              "use the original settings or a new output=")
        out = {}
        for name in reader.demos:
            ep = reader.episode(name)
            if not ep.attrs.get("interrupted"):
                out[(int(ep.attrs["deploy_call"]), int(ep.attrs["deploy_slot"]))] = ep
    return out


def deploy(cfg: DictConfig) -> AdaptationResult:
    if not cfg.checkpoint:
        raise ConfigError("vgmps deploy needs checkpoint=<path to a meta-trained .pt file>")
    if cfg.step_size not in ("learned", "fixed", "natural"):
        raise ConfigError(f"step_size={cfg.step_size!r}: deploy runs learned, fixed or natural")
    if cfg.step_size == "natural" and not (is_number(cfg.natural_step_scale) and cfg.natural_step_scale > 0):
        raise ConfigError(f"natural_step_scale={cfg.natural_step_scale}: must be a number > 0")
    natural_scale = natural_scale_of(cfg)
    if problems := exploration_problems(cfg.get):
        raise ConfigError("; ".join(problems))
    if cfg.steps < 1 or cfg.rollouts_per_task < 1 or cfg.num_tasks < 1:
        raise ConfigError("deploy needs steps >= 1, rollouts_per_task >= 1 and num_tasks >= 1")
    if not is_number(cfg.learned_step_scale) or not cfg.learned_step_scale > 0:
        raise ConfigError(f"learned_step_scale={cfg.learned_step_scale!r}: must be a number > 0 (1 = the step sizes as learned)")
    torch.set_num_threads(int(cfg.torch_threads or 1))
    ckpt_path = Path(cfg.checkpoint)
    state = load_checkpoint(ckpt_path)
    trained = OmegaConf.create(state["config_yaml"])
    policy, step_sizes = policy_from_checkpoint(state)
    exploration = exploration_for(policy, cfg)  # a wrong length is refused before the robot starts
    fixed = cfg.fixed_step_size if cfg.fixed_step_size is not None else trained.algo.inner_lr
    sizes = step_sizes.as_dict(float(cfg.learned_step_scale)) if cfg.step_size == "learned" else step_sizes.fixed(fixed)
    output = Path(cfg.output) if cfg.output else ckpt_path.parent.parent / "deploy" / "episodes.hdf5"
    if output.exists() and not cfg.resume:
        raise ConfigError(f"{output} exists; pass resume=true to continue that deployment, or choose another output=")
    if cfg.resume and not output.exists():
        raise ConfigError(f"resume=true but {output} does not exist; drop resume=true to start a new deployment")
    run_dir = Path(cfg.run_dir) if cfg.run_dir else output.parent

    rcfg = OmegaConf.to_container(cfg.robot, resolve=True)
    if rcfg.get("name") in (None, "???"):
        raise ConfigError("robot.name is not set: pass robot=sim|socket|lerobot, or robot=custom robot.name=module:Class")
    kwargs = dict(rcfg.get("kwargs") or {})
    if rcfg["name"] == "sim" and kwargs.get("family") is None:  # rehearse on the simulator the policy was trained in
        kwargs["family"] = trained.env.family
        if kwargs.get("family_kwargs") is None:
            kwargs["family_kwargs"] = OmegaConf.to_container(trained.env.kwargs, resolve=True)
    robot = make_robot(rcfg["name"], **kwargs)
    limits = SafetyLimits(**{**OmegaConf.to_container(cfg.safety, resolve=True), **rcfg.get("safety", {})})
    estop = EStop().install()
    keys = TerminalKeys(estop).start() if cfg.estop_keys else None
    safe = SafeRobot(robot, limits, estop)
    try:
        reward = build_reward(OmegaConf.to_container(cfg.reward, resolve=True), keys)
        safe.preflight()  # refuses to start on a fault or a stale frame
        _check_robot(robot, policy.spec, state["env_args"]["family"])
        desc = robot.describe()
        if not desc.get("simulated") and limits.workspace_low is None:
            raise ConfigError("a real arm needs a workspace box: set robot.safety.workspace_low/high "
                              "(see README 'Choosing safety limits')")
        horizon = int(cfg.horizon or desc.get("horizon") or trained.env.kwargs.horizon)
        tasks = _tasks(desc, state, trained, cfg)
        run = {"checkpoint": str(ckpt_path), "checkpoint_sha256": _sha256(ckpt_path), "steps": int(cfg.steps),
               "rollouts_per_task": int(cfg.rollouts_per_task), "eval_episodes": int(cfg.eval_episodes),
               "num_tasks": len(tasks), "split": str(cfg.split), "seed": int(cfg.seed), "step_size": str(cfg.step_size),
               **exploration,
               "horizon": horizon, "reward_source": reward.provenance, "safety": OmegaConf.to_container(cfg.safety)}
        finished = load_finished(output, run) if cfg.resume else {}
        writer = DemoWriter(output, _env_args(robot, trained, horizon, run), valid_every=0)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "deploy_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        show = sys.stdout.isatty() if cfg.display == "auto" else bool(cfg.display)
        budget = 1000.0 / cfg.control_hz if cfg.control_hz else 50.0
        with DeployDisplay(show, budget) as display:
            collector = RobotCollector(safe, reward, horizon, writer, finished, display, f"deploy:{robot.name}",
                                       float(cfg.control_hz), int(cfg.retries))
            log.info("deploying on %s: %d task(s), %d step(s) x %d rollouts, %d finished episode(s) read back from %s",
                     robot.name, len(tasks), cfg.steps, cfg.rollouts_per_task, len(finished), output)
            result = run_adaptation(policy, {k: v.detach() for k, v in sizes.items()}, collector, tasks, int(cfg.steps),
                                    int(cfg.rollouts_per_task), trained.algo.gamma, trained.algo.baseline,
                                    int(cfg.eval_episodes), int(cfg.seed), progress=True,
                                    natural_scale=natural_scale, **exploration)
            display.update(phase="done")
        write_outputs(run_dir, result, policy, cfg)
        log.info("deploy finished: %d episode(s) run on the robot this time, file %s", collector.episodes_written, output)
        return result
    finally:
        safe.close()
        estop.uninstall()
        if keys:
            keys.close()
        if robot.is_connected:
            try:
                robot.disconnect()
            except RobotFault as err:
                log.warning("disconnect failed: %s", err)


def _tasks(desc: dict[str, Any], state: dict[str, Any], trained: DictConfig, cfg: DictConfig) -> list[Task]:
    if desc.get("simulated"):
        fargs = dict(desc["env_args"])
        family = rebuild_family({"family": fargs.pop("family"), "env_kwargs": fargs})
        return family.sample(cfg.split, int(cfg.num_tasks), int(trained.env.tasks.seed))
    # A real arm: each task is the scene the operator sets up; its hidden parameters are the world's.
    return [Task(state["env_args"]["family"], "deploy", k, {}) for k in range(int(cfg.num_tasks))]


def write_outputs(run_dir: Path, result: AdaptationResult, policy: Any, cfg: DictConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "deploy_results.json").write_text(json.dumps(result.rows, indent=1))
    (run_dir / "deploy_results.md").write_text(markdown_table(result.rows))
    adapted = {f"task{k}/{n}": v.detach().cpu() for k, p in enumerate(result.final_params) for n, v in p.items()}
    torch.save(adapted, run_dir / "adapted_params.pt")
    if cfg.export_onnx:
        from vision_gmps.export import export_onnx

        for k, params in enumerate(result.final_params):
            path = export_onnx(policy, params, run_dir / f"policy_task{k}.onnx")
            log.info("exported the adapted policy of task %d to %s", k, path)


def deploy_main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nkeys: see configs/deploy.yaml and configs/robot/*.yaml; README 'Deploying on a real arm'")
        return 0
    setup_logging()
    try:
        deploy(load_config(argv, config_name="deploy"))
    except (ConfigError, CheckpointError, ValueError) as err:
        print(f"vgmps deploy: {err}", file=sys.stderr)
        return 2
    except DeployStopped as err:
        print(f"vgmps deploy stopped: {err}", file=sys.stderr)
        return 1
    except RobotFault as err:
        print(f"vgmps deploy: {err}. Nothing was run; fix it and run the same command again.", file=sys.stderr)
        return 1
    return 0
