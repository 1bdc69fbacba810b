"""``RobotCollector``: the ``Sampler.collect`` interface on a robot, so ``run_adaptation`` runs unchanged.

Each episode runs through the safety layer, is judged by a reward source and is appended
to the deploy file (demo layout) the moment it ends, interrupted ones included. Every
episode records which ``collect`` call and slot it filled and a hash of the parameters it
ran with: on resume, finished slots are read back from the file instead of run again, and
a hash that differs (another checkpoint, other settings) stops the run instead of mixing.
Episodes are seeded as ``Sampler`` seeds them and a read-back episode's exploration noise
is drawn again, so on a simulated robot a resumed deployment equals an uninterrupted one
and both equal ``vgmps adapt`` with ``sampler.num_envs=1`` (tests/test_deploy.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from typing import Any, Callable

import numpy as np
import torch
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from demos.hdf5 import DemoWriter, Episode
from robot_envs import Task
from robot_envs.robots import RobotFault
from robot_envs.robots.reward import RewardSource
from robot_envs.robots.safety import SafeRobot, SafetyEvent, WatchdogTripped
from vision_gmps.rollouts import RolloutBatch, episode_seed, wave_seed

log = logging.getLogger("vision_gmps")
RESUME_HINT = "rerun the same command with resume=true to continue from the last finished episode"


class DeployStopped(RuntimeError):
    """The deployment stopped (e-stop, fault, lost link); the message says what happened and what to do."""


def params_sha(params: dict[str, torch.Tensor]) -> str:
    """Hash of the parameters an episode ran with (rounded, so it survives float noise across runs)."""
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.round(params[name].detach().cpu().double().numpy(), 5).astype(np.float32).tobytes())
    return h.hexdigest()[:16]


class DeployDisplay:
    """Live terminal panel: episode, step, reward, safety events, time per step (rich)."""

    def __init__(self, enabled: bool, budget_ms: float, console: Console | None = None) -> None:
        self.enabled, self.budget_ms = enabled, budget_ms
        self.fields: dict[str, Any] = {"phase": "starting", "episode": 0, "step": 0, "horizon": 0, "reward": 0.0,
                                       "ms": 0.0, "last": "-", "successes": 0, "done": 0, "reused": 0}
        self.events: deque[str] = deque(maxlen=6)
        self.live = Live(self._render(), console=console, refresh_per_second=8) if enabled else None

    def __enter__(self) -> "DeployDisplay":
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.update(self._render())
            self.live.stop()

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        if self.live:
            self.live.update(self._render())

    def event(self, text: str) -> None:
        self.events.append(text)
        self.update()

    def _render(self) -> Group:
        f = self.fields
        table = Table(title="vgmps deploy", show_header=False, expand=False)
        table.add_row("phase", str(f["phase"]))
        table.add_row("episode", f"{f['episode']}  (finished {f['done']}, read back on resume {f['reused']}, "
                                 f"successes {f['successes']})")
        table.add_row("step", f"{f['step']}/{f['horizon']}")
        table.add_row("reward so far", f"{f['reward']:.2f}   last episode: {f['last']}")
        over = " [red]over budget[/red]" if f["ms"] > self.budget_ms else ""
        table.add_row("time per step", f"{f['ms']:.1f} ms of the {self.budget_ms:.0f} ms control period{over}")
        table.add_row("safety events", "\n".join(self.events) or "none")
        table.add_row("keys", "e / space / Esc: emergency stop   (also Ctrl-C, kill -USR1)")
        return Group(table)


class RobotCollector:
    """Collects fixed-length episodes on a robot; ``collect`` has ``Sampler.collect``'s signature."""

    def __init__(self, robot: SafeRobot, reward: RewardSource, horizon: int, writer: DemoWriter,
                 finished: dict[tuple[int, int], Episode], display: DeployDisplay, source: str,
                 control_hz: float = 20.0, retries: int = 2, on_episode: Callable[[Episode], None] | None = None) -> None:
        self.robot, self.reward, self.horizon, self.writer = robot, reward, int(horizon), writer
        self.finished, self.display, self.source = finished, display, source
        self.period = 1.0 / control_hz if control_hz else 0.0
        self.retries = int(retries)
        self.on_episode = on_episode
        self.calls = 0
        self.episodes_written = 0
        self.episode_number = len(finished)
        robot.on_event = self._on_event

    def _on_event(self, event: SafetyEvent) -> None:
        self.display.event(f"ep {self.episode_number + 1} step {event.step}: {event.kind}: {event.detail}")

    def close(self) -> None:
        pass

    def collect(self, tasks: list[Task], episodes_per_task: int, act: Any, seed: int,
                progress: str | None = None) -> RolloutBatch:
        call, self.calls = self.calls, self.calls + 1
        episodes: list[Episode] = []
        for i, task in enumerate(tasks):
            for j in range(episodes_per_task):
                slot = i * episodes_per_task + j
                groups = np.array([i])
                reseeds = hasattr(act, "reseed")
                if reseeds:  # one episode per wave: the noise vgmps adapt draws with sampler.num_envs=1
                    act.reseed(wave_seed(seed, slot))
                offsets = act.start_episodes(groups) if hasattr(act, "start_episodes") else None
                sha = params_sha(act.params_per_group[i]) if hasattr(act, "params_per_group") else ""
                stored = self.finished.get((call, slot))
                if stored is not None:
                    if stored.attrs.get("params_sha") != sha:
                        raise DeployStopped(
                            f"resume: episode for collection {call} slot {slot} in {self.writer.path} ran with other "
                            "parameters than this run computes (another checkpoint, seed or settings?). Use the original "
                            "settings, or a new output= file")
                    if not reseeds:  # a reseeded slot does not depend on earlier slots' draws
                        self._advance(act, stored, groups)
                    episodes.append(stored)
                    self.display.update(reused=self.display.fields["reused"] + 1)
                    continue
                episodes.append(self._run_slot(call, slot, task, i, act, offsets, sha, progress or "",
                                               episode_seed(seed, slot)))
        return self._batch(tasks, episodes)

    @staticmethod
    def _advance(act: Any, stored: Episode, groups: np.ndarray) -> None:
        """Draw the exploration noise the stored episode drew, so later episodes sample as in an uninterrupted run."""
        for t in range(stored.num_samples):
            act({"image": stored.obs["image"][t : t + 1], "proprio": stored.obs["proprio"][t : t + 1]}, {}, groups)

    def _run_slot(self, call: int, slot: int, task: Task, group: int, act: Any, offsets: np.ndarray | None,
                  sha: str, phase: str, seed: int) -> Episode:
        for attempt in range(self.retries + 1):
            episode, stop = self._episode(call, slot, task, group, act, offsets, sha, phase, seed)
            if stop is None:
                return episode
            if isinstance(stop, WatchdogTripped) and attempt < self.retries:
                self.display.event(f"episode {self.episode_number} interrupted ({stop}); kept on disk, running it again")
                log.warning("episode interrupted: %s; the arm was held; running the slot again (%d/%d)",
                            stop, attempt + 1, self.retries)
                continue
            raise DeployStopped(self._stop_message(stop))
        raise AssertionError("unreachable")

    def _stop_message(self, stop: Exception) -> str:
        kept = f"{self.writer.path} holds every episode so far, the interrupted one marked interrupted=True"
        what = {
            "EmergencyStop": "Make the scene safe",
            "CameraFault": "Check the camera (cable, driver, exposure)",
            "WatchdogTripped": "The policy keeps stalling: check CPU load and the time per step, or raise safety.watchdog_s",
            "AuthenticationError": "Use the token the robot server was started with",
        }.get(type(stop).__name__, "Check the arm and its driver")
        return f"{type(stop).__name__}: {stop}. The arm is held. {kept}. {what}, then {RESUME_HINT}."

    def _episode(self, call: int, slot: int, task: Task, group: int, act: Any, offsets: np.ndarray | None,
                 sha: str, phase: str, seed: int) -> tuple[Episode, Exception | None]:
        number = self.episode_number
        self.display.update(phase=phase, episode=number + 1, step=0, horizon=self.horizon, reward=0.0)
        self.robot.robot.set_task(task)
        # Seeded as Sampler seeds episode ``slot`` of a collection, so a simulated robot reproduces `vgmps adapt`.
        obs = self.robot.start_episode(seed)  # a fault here stops the run before anything moved
        images, proprio, states = [obs["image"]], [obs["proprio"]], [self._state(obs)]
        sampled, sent, rewards, step_ms = [], [], [], []
        stop: Exception | None = None
        try:
            for _t in range(self.horizon):
                t0 = time.perf_counter()
                action = np.asarray(act({"image": obs["image"][None], "proprio": obs["proprio"][None]}, {},
                                        np.array([group])), dtype=np.float32)[0]
                if not np.all(np.isfinite(action)):
                    raise FloatingPointError("the policy produced a NaN/inf action; the arm was held")
                executed = self.robot.act(action, obs["proprio"])
                obs = self.robot.observe()
                sampled.append(action)
                sent.append(executed)
                images.append(obs["image"])
                proprio.append(obs["proprio"])
                states.append(self._state(obs))
                rewards.append(self.reward.step(obs))
                step_ms.append(1000 * (time.perf_counter() - t0))  # policy + command + observation, before pacing
                if self.period:
                    time.sleep(max(0.0, self.period - (time.perf_counter() - t0)))
                self.display.update(step=len(sent), reward=float(sum(rewards)), ms=step_ms[-1])
        except Exception as err:  # noqa: BLE001 - whatever stopped the episode, what ran so far is kept
            stop = err
        finally:
            self.robot.end_episode()
        if stop is None:
            try:
                final, success = self.reward.finish(rewards, number)
            except RobotFault as err:  # e-stop while the operator was being asked: keep the episode, unjudged
                stop = err
        if stop is not None:
            final, success = np.asarray(rewards, dtype=np.float32), False
        T = len(sent)
        episode = Episode(
            task=task,
            obs={"image": np.stack(images), "proprio": np.stack(proprio).astype(np.float32)},
            actions=np.stack(sent) if T else np.zeros((0, _action_dim(act, offsets)), np.float32),
            rewards=final.astype(np.float64),
            dones=np.eye(1, T, T - 1, dtype=np.int64)[0] if T else np.zeros(0, np.int64),
            states=np.stack(states[:-1]) if T else np.zeros((0, 0)),
            success=success,
            source=self.source,
            seed=seed,
            attrs={
                "reward_source": self.reward.provenance,
                "interrupted": stop is not None,
                "stop_reason": "" if stop is None else f"{type(stop).__name__}: {stop}",
                "safety_events": json.dumps([e.to_dict() for e in self.robot.events]),
                "deploy_call": call,
                "deploy_slot": slot,
                "deploy_phase": phase,
                "params_sha": sha,
                "step_ms_mean": float(np.mean(step_ms)) if step_ms else 0.0,
            },
            arrays={
                "policy_actions": np.stack(sampled) if T else np.zeros((0, 0), np.float32),
                "step_success": final > 0 if self.reward.provenance.startswith("operator") else np.asarray(rewards) > 0,
                **({"offset": offsets[0]} if offsets is not None else {}),
                **{f"params/{k}": v.detach().cpu().numpy() for k, v in self._adapted(act, group).items()},
            },
        )
        if T:
            self.writer.append(episode)
            self.episodes_written += 1
        self.episode_number += 1
        self.display.update(done=self.display.fields["done"] + (stop is None),
                            successes=self.display.fields["successes"] + int(success),
                            last="interrupted" if stop else ("success" if success else "failure"))
        if self.on_episode:
            self.on_episode(episode)
        if stop is not None and not isinstance(stop, (RobotFault, FloatingPointError)):
            raise stop  # a bug, not a fault of the arm: the episode is on disk, the traceback is the message
        return episode, stop

    @staticmethod
    def _state(obs: dict[str, Any]) -> np.ndarray:
        """Simulators give their full state (exact replay); a real arm's state is its proprio."""
        return np.asarray(obs.get("state", obs["proprio"]), dtype=np.float64).ravel()

    @staticmethod
    def _adapted(act: Any, group: int) -> dict[str, torch.Tensor]:
        if not hasattr(act, "params_per_group"):
            return {}
        names = act.policy.adapted_names
        return {n: act.params_per_group[group][n] for n in names}

    @staticmethod
    def _batch(tasks: list[Task], episodes: list[Episode]) -> RolloutBatch:
        index = {t.task_id: i for i, t in enumerate(tasks)}
        offsets = [e.arrays.get("offset") for e in episodes]
        return RolloutBatch(
            tasks=list(tasks),
            task_index=np.array([index[e.task.task_id] for e in episodes]),
            images=np.stack([e.obs["image"][:-1] for e in episodes]),
            proprio=np.stack([e.obs["proprio"][:-1] for e in episodes]).astype(np.float32),
            actions=np.stack([e.arrays["policy_actions"] for e in episodes]).astype(np.float32),
            rewards=np.stack([e.rewards for e in episodes]).astype(np.float32),
            success=np.stack([np.asarray(e.arrays["step_success"], bool) for e in episodes]),
            offsets=None if offsets[0] is None else np.stack(offsets).astype(np.float32),
        )


def _action_dim(act: Any, offsets: np.ndarray | None) -> int:
    """Width of an episode stopped before its first action (a latent is not action-sized; an offset is)."""
    if hasattr(act, "policy"):
        return int(act.policy.spec.action_dim)
    return len(offsets[0]) if offsets is not None else 0
