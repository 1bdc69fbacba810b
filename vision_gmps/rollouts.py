"""Collect fixed-length episodes for many (task, parameters) pairs at once.

Episodes are ordered task-major (all episodes of task 0, then task 1, ...) and cut into
waves of ``num_envs``. A wave is stepped in lockstep so the policy forward is one batched
call per control step, and it is a pure function of its jobs, its episode seeds
(``(seed, episode index)``) and its wave seed (``(seed, wave index)``, which reseeds the
acting function's noise): so waves can run in any order and anywhere (in this process, in
worker processes, or on Ray actors that hold the policy and send back whole episodes), and
the batch is the same for the same seed and ``num_envs`` whichever backend ran it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from robot_envs import Task, TaskFamily
from vision_gmps.policy import ConvGaussianPolicy, Params
from vision_gmps.sampling import make_vector_env

# act(obs, states, groups) -> actions [n, A]; groups[i] is the task index of env i.
ActFn = Callable[[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray], np.ndarray]


@dataclass
class RolloutBatch:
    """Episodes of equal length ``T``; arrays are [N, T, ...] with N = tasks x episodes per task."""

    tasks: list[Task]
    task_index: np.ndarray  # [N] int: position in ``tasks``
    images: np.ndarray  # [N, T, H, W, 3] uint8
    proprio: np.ndarray  # [N, T, P] float32
    actions: np.ndarray  # [N, T, A] float32, as sampled (before the env clips them)
    rewards: np.ndarray  # [N, T] float32
    success: np.ndarray  # [N, T] bool, success after each step
    states: dict[str, np.ndarray] = field(default_factory=dict)  # privileged state before each action
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # per-step info scalars, e.g. distance
    offsets: np.ndarray | None = None  # [N, A] per-episode action offsets or [N, D] input latents (per-episode exploration)

    @property
    def num_episodes(self) -> int:
        return len(self.task_index)

    @property
    def episode_success(self) -> np.ndarray:
        """An episode succeeds if it ends in success."""
        return self.success[:, -1]

    def episodes_of(self, task: int) -> np.ndarray:
        return np.flatnonzero(self.task_index == task)

    def per_task(self, values: np.ndarray) -> np.ndarray:
        """Average a per-episode quantity within each task: [num_tasks]."""
        return np.array([values[self.episodes_of(i)].mean() for i in range(len(self.tasks))])

    def summary(self) -> dict[str, float]:
        out = {
            "success": float(self.episode_success.mean()),
            "return": float(self.rewards.sum(1).mean()),
        }
        for key, values in self.extras.items():
            out[f"final_{key}"] = float(values[:, -1].mean())
        return out


def episode_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def wave_seed(seed: int, wave: int) -> int:
    """Seed of one wave's acting noise: independent of every other wave, so waves run in any order."""
    return int(np.random.SeedSequence([seed, wave, 0x5A3E]).generate_state(1)[0])


@dataclass
class Wave:
    """One wave's work: ``jobs`` (task index, task) padded to ``num_envs``, their episode seeds, how many to keep."""

    jobs: list[tuple[int, Task]]
    seeds: list[int]
    keep: int
    seed: int  # reseeds the acting function (``act.reseed``) at the wave's start


class Sampler:
    """Owns a vector env for one family; collects batches of episodes with any acting function."""

    def __init__(self, family: TaskFamily, num_envs: int = 8, backend: str = "sync", **options) -> None:
        """``options`` go to the backend (``vision_gmps.sampling.make_vector_env``): workers, timeout_s, ray_address."""
        self.family = family
        self.num_envs = num_envs
        self.horizon = family.horizon
        self.backend = backend
        self.vec, self.remote = None, None
        if backend == "ray":  # actors hold the policy and return whole waves: nothing steps here
            from vision_gmps.sampling.ray_waves import RayWaveRunner

            self.remote = RayWaveRunner(family, num_envs, options.get("workers", 2), options.get("timeout_s", 120.0),
                                        address=options.get("ray_address"))
        else:
            self.vec = make_vector_env(family, num_envs, backend, **options)

    @classmethod
    def from_config(cls, family: TaskFamily, cfg) -> "Sampler":
        """From the ``sampler`` config group (``configs/config.yaml`` documents the keys)."""
        ray = cfg.get("ray") or {}
        return cls(family, cfg.num_envs, cfg.backend, workers=cfg.get("workers", 2),
                   timeout_s=cfg.get("timeout_s", 120.0), ray_address=ray.get("address"))

    @property
    def steps_in_this_process(self) -> bool:
        """True when the envs live in this process (``sync``): another thread must not step them."""
        return self.backend == "sync"

    def close(self) -> None:
        (self.remote or self.vec).close()

    def collect(
        self,
        tasks: list[Task],
        episodes_per_task: int,
        act: ActFn,
        seed: int,
        progress: str | None = None,
    ) -> RolloutBatch:
        jobs = [(i, task) for i, task in enumerate(tasks) for _ in range(episodes_per_task)]
        if not jobs:
            raise ValueError("nothing to collect: no tasks or zero episodes per task")
        waves = []
        for w, k in enumerate(range(0, len(jobs), self.num_envs)):
            wave = jobs[k : k + self.num_envs]
            # Pad the last wave by repeating its first job; the padding is stepped and dropped.
            padded = wave + [wave[0]] * (self.num_envs - len(wave))
            seeds = [episode_seed(seed, k + j) for j in range(self.num_envs)]
            waves.append(Wave(padded, seeds, len(wave), wave_seed(seed, w)))
        bar = tqdm(total=len(jobs), desc=progress, unit="ep", leave=False, disable=progress is None)
        if self.remote is not None:
            parts = self.remote.run_waves(waves, act, on_done=lambda wave: bar.update(wave.keep))
        else:
            parts = []
            for wave in waves:
                parts.append(run_wave(self.vec, self.horizon, self.family.step_metrics, wave, act))
                bar.update(wave.keep)
        bar.close()

        def cat(key: str):
            if parts[0][key] is None:
                return None
            if isinstance(parts[0][key], dict):
                return {k: np.concatenate([p[key][k] for p in parts]) for k in parts[0][key]}
            return np.concatenate([p[key] for p in parts])

        return RolloutBatch(
            tasks=list(tasks),
            task_index=np.array([i for i, _ in jobs]),
            images=cat("images"),
            proprio=cat("proprio"),
            actions=cat("actions"),
            rewards=cat("rewards"),
            success=cat("success"),
            states=cat("states"),
            extras=cat("extras"),
            offsets=cat("offsets"),
        )


def run_wave(vec, horizon: int, step_metrics: tuple[str, ...], wave: Wave, act: ActFn) -> dict:
    """Run one lockstep wave on ``vec``; return [keep, T, ...] arrays (padding dropped).

    Module-level because Ray actors run it too (``vision_gmps.sampling.ray_waves``).
    """
    if hasattr(act, "reseed"):
        act.reseed(wave.seed)
    groups = np.array([i for i, _ in wave.jobs])
    vec.set_attr("task", [task for _, task in wave.jobs])
    obs, info = vec.reset(seed=wave.seeds)
    offsets = act.start_episodes(groups) if hasattr(act, "start_episodes") else None
    images, proprio, actions, rewards, success = [], [], [], [], []
    states: dict[str, list[np.ndarray]] = {k: [] for k in info["state"]}
    extras: dict[str, list[np.ndarray]] = {k: [] for k in step_metrics}
    for _ in range(horizon):
        _check_finite(obs["proprio"], "proprio observation")
        images.append(obs["image"])
        proprio.append(obs["proprio"].astype(np.float32))
        for k in states:
            states[k].append(np.asarray(info["state"][k]))
        action = np.asarray(act(obs, info["state"], groups), dtype=np.float32)
        _check_finite(action, "action")
        obs, reward, _, _, info = vec.step(np.clip(action, -1.0, 1.0))
        actions.append(action)
        rewards.append(reward.astype(np.float32))
        success.append(np.asarray(info["success"], dtype=bool))
        for k in extras:
            extras[k].append(np.asarray(info[k], dtype=np.float32))
    keep = wave.keep
    stack = lambda xs: np.stack(xs, axis=1)[:keep]  # noqa: E731  [keep, T, ...]
    return {
        "images": stack(images),
        "proprio": stack(proprio),
        "actions": stack(actions),
        "rewards": stack(rewards),
        "success": stack(success),
        "states": {k: stack(v) for k, v in states.items()},
        "extras": {k: stack(v) for k, v in extras.items()},
        "offsets": None if offsets is None else offsets[:keep],
    }


def _check_finite(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise FloatingPointError(
            f"{what} contains NaN or inf; the env or the policy diverged "
            "(for a diverged policy, lower algo.outer_lr or algo.inner_lr)"
        )


class PolicyActor:
    """Acts with one parameter dict per task group; samples from the Gaussian unless deterministic."""

    def __init__(
        self,
        policy: ConvGaussianPolicy,
        params_per_group: list[Params],
        deterministic: bool = False,
        seed: int = 0,
    ) -> None:
        self.policy = policy
        self.params_per_group = [{k: v.detach() for k, v in p.items()} for p in params_per_group]
        self.deterministic = deterministic
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.offsets: torch.Tensor | None = None

    def reseed(self, wave_seed: int) -> None:
        """The sampler calls this at each wave's start: its noise depends on this actor's seed and the wave only."""
        self.generator.manual_seed(int(np.random.SeedSequence([self.seed, wave_seed]).generate_state(1)[0]))

    def start_episodes(self, groups: np.ndarray) -> np.ndarray | None:
        """New episodes in every env: draw each one's action offset or input latent (per-episode exploration)."""
        if self.deterministic or not self.policy.has_episode_noise:
            self.offsets = None
            return None
        dtype = self.policy.log_std.dtype
        dists = [self.policy.episode_noise_distribution(self.params_per_group[g]) for g in groups]
        mean = torch.stack([m.cpu() for m, _ in dists])
        std = torch.stack([s.cpu() for _, s in dists]).exp()
        self.offsets = (mean + std * torch.randn(mean.shape, generator=self.generator, dtype=dtype)).to(
            self.policy.log_std.device)
        return self.offsets.cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def __call__(self, obs: dict[str, np.ndarray], states: dict[str, np.ndarray], groups: np.ndarray) -> np.ndarray:
        dtype, device = self.policy.log_std.dtype, self.policy.log_std.device
        image = torch.from_numpy(np.ascontiguousarray(obs["image"])).to(device)
        proprio = torch.from_numpy(np.asarray(obs["proprio"])).to(device, dtype)
        mean = torch.empty(len(groups), self.policy.spec.action_dim, dtype=dtype, device=device)
        shared = None if self.policy.encoder_adapted else self.policy.encode(image, self.params_per_group[0])
        log_std = torch.empty_like(mean)
        for g in np.unique(groups):
            rows = torch.from_numpy(np.flatnonzero(groups == g)).to(device)
            params = self.params_per_group[g]
            features = shared[rows] if shared is not None else self.policy.encode(image[rows], params)
            offsets = None if self.offsets is None else self.offsets[rows]
            mean[rows] = self.policy.head_mean(features, proprio[rows], params, offsets)
            log_std[rows] = params["log_std"]
        if self.deterministic:
            return mean.cpu().numpy()
        # Noise is drawn on the CPU so a run gives the same actions on any device.
        noise = torch.randn(mean.shape, generator=self.generator, dtype=dtype).to(device)
        return (mean + noise * log_std.exp()).cpu().numpy()


class ExpertActor:
    """Scripted expert on privileged state, with optional Gaussian action noise for state diversity."""

    def __init__(self, expert, noise: float = 0.0, seed: int = 0) -> None:
        self.expert = expert
        self.noise = noise
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reseed(self, wave_seed: int) -> None:
        self.rng = np.random.default_rng([self.seed, wave_seed])

    def __call__(self, obs: dict[str, np.ndarray], states: dict[str, np.ndarray], groups: np.ndarray) -> np.ndarray:
        actions = self.expert.act_batch(states)
        if self.noise > 0:
            actions = actions + self.noise * self.rng.standard_normal(actions.shape)
        return actions
