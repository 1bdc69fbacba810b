"""Meta-training loop for GMPS, MAML and multi-task BC on any task family.

One meta-iteration:
  1. collect ``rollouts_per_task`` episodes per training task with the current
     meta-parameters (GMPS, MAML);
  2. GMPS: optionally roll out each task's adapted policy and label its visited
     states with the scripted expert (DAgger), adding them to that task's data;
     MAML: roll out each adapted policy for the outer policy gradient;
  3. take ``outer_steps`` Adam steps on the meta-objective.

Every random draw of iteration i is seeded from ``(seed, i)``, so a run
resumed from a checkpoint repeats exactly what an uninterrupted run does.

The validation check after iteration i (``train.eval_every``) needs only a copy of the
policy and the sampler, so with ``train.overlap_eval`` it runs in a thread while iteration
i+1 takes its outer steps (the sampler is otherwise idle then); its metrics row is written
once it finishes. The rows, checkpoints and parameters are the same as without the overlap.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from robot_envs import Task, make_family
from vision_gmps.adaptation import exploration_for, exploration_of, natural_scale_of, run_adaptation
from vision_gmps.checkpoint import CheckpointError, check_compatible, resume_checkpoint, save_checkpoint
from vision_gmps import distributed
from vision_gmps.config import ConfigError
from vision_gmps.distributed import Ranks
from vision_gmps.expert_data import ExpertBuffer, attach_demo_files
from vision_gmps.inner import split_by_task
from vision_gmps.meta import adapt_all, batch_pixels, bc_loss, gmps_loss, maml_loss
from vision_gmps.policy import ConvGaussianPolicy, StepSizes, build_policy
from vision_gmps.rollouts import ExpertActor, PolicyActor, RolloutBatch, Sampler
from vision_gmps.run_logging import RunLogger

log = logging.getLogger("vision_gmps")
ALGOS = ("gmps", "maml", "bc")
# Environment steps by what they were spent on (``steps/<part>`` in the metrics; the report's first paragraph).
STEP_PARTS = ("demo_files", "expert_episodes", "dagger", "meta_pre", "meta_post", "eval")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu")
    return torch.device(name)


def iteration_seed(seed: int, iteration: int, phase: int, *more: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, phase, *more]).generate_state(1)[0] % (2**31))


class MetaTrainer:
    def __init__(self, cfg: DictConfig, run_dir: Path, ranks: Ranks = Ranks()) -> None:
        """``ranks``: this process's place in a data-parallel job (``vision_gmps.distributed``); default one process."""
        if cfg.algo.name not in ALGOS:
            raise ValueError(f"unknown algo {cfg.algo.name!r}; use one of {ALGOS}")
        self.cfg = cfg
        self.run_dir = run_dir
        self.ranks = ranks
        self.device = resolve_device(cfg.device)
        if ranks.active and self.device.type == "cuda":
            self.device = torch.device("cuda", ranks.local_rank)
        if cfg.torch_threads:
            torch.set_num_threads(int(cfg.torch_threads))
        torch.manual_seed(cfg.seed)
        self.family = make_family(cfg.env.family, **cfg.env.kwargs)
        self.train_tasks = self.family.sample("train", cfg.env.tasks.train, cfg.env.tasks.seed)
        # the learning curve is measured on the valid split: the test split stays for the final tables
        self.eval_tasks = self.family.sample("valid", cfg.train.eval_tasks, cfg.env.tasks.seed)
        self.sampler = Sampler.from_config(self.family, cfg.sampler)
        space = self.sampler.vec.single_observation_space
        self.policy: ConvGaussianPolicy = build_policy(
            space["image"].shape, space["proprio"].shape[0], self.sampler.vec.single_action_space.shape[0], cfg.policy
        ).to(self.device)
        exploration_for(self.policy, cfg.get("adapt") or {}, "adapt.")  # the curve's check explores so: refuse a bad shift now
        # algo.inner_step=natural: meta-train through the natural output-layer step that meta-test takes, at its size
        # (the config check requires adapt.step_size=natural with it); None: the gradient step with learned step sizes
        self.inner_natural_scale = (natural_scale_of(cfg.get("adapt") or {})
                                    if cfg.algo.get("inner_step", "gradient") == "natural" else None)
        self.step_sizes = StepSizes(self.policy, cfg.algo.inner_lr, learnable=cfg.algo.learn_step_sizes,
                                    by_prefix=cfg.algo.get("inner_lr_by_param")).to(self.device)
        groups = [{"params": list(self.policy.parameters())}]
        if cfg.algo.learn_step_sizes:
            # Step sizes live on another scale than weights; they may get their own Adam rate.
            groups.append({"params": list(self.step_sizes.parameters()),
                           "lr": cfg.algo.get("step_size_lr") or cfg.algo.outer_lr})
        self.optimizer = torch.optim.Adam(groups, lr=cfg.algo.outer_lr)
        self.learned = [p for g in groups for p in g["params"]]
        if ranks.active and self.policy.has_latent and int(cfg.algo.get("pretrain_steps", 0) or 0) > 0:
            raise ConfigError("policy.latent_log_std with BC pre-training runs on one process: the per-task latents "
                              "are fitted over all training tasks at once; drop torchrun or set policy.latent_log_std=null")
        if ranks.active:
            batch = self.meta_batch
            if ranks.world > batch:
                raise ConfigError(f"{ranks.world} data-parallel ranks, but a meta-batch of {batch} tasks: every rank needs "
                                  "at least one; use fewer ranks (torchrun --nproc_per_node) or more env.tasks.train")
            distributed.broadcast_tensors(self.learned)  # the same start on every rank
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]  # before algo.outer_lr_warmup scales them
        self.bc_loss_after_pretrain: float | None = None
        self.bc_task_latents: torch.Tensor | None = None  # BC's per-task input latents (policy.latent_log_std), for diagnostics
        self.iteration = 0
        self.env_episodes = 0
        self.env_steps = dict.fromkeys(STEP_PARTS, 0)
        # Steps of the padding envs that fill a sampler's last wave: simulated, never used, kept out of the total.
        self.padding_steps = 0
        self.expert_steps = {"experts_training": 0, "experts_eval": 0}  # the RL experts' own cost, from the zoo
        self.buffer: ExpertBuffer | None = None
        self.pending_row: dict[str, float] | None = None  # see save(): a checkpointed row awaiting its check
        self.expert = None
        if cfg.algo.name in ("gmps", "bc"):
            from demos.scripted import expert_for, has_expert

            dagger = cfg.algo.get("dagger", {}).get("enabled", False)
            if cfg.algo.expert.source == "zoo":  # RL experts (vgmps experts train), checked before any rollout
                from demos.rl.zoo import load_zoo_expert

                self.expert = load_zoo_expert(cfg.algo.expert.zoo, self.family, self.train_tasks)
                if ranks.is_main:  # counted once in a data-parallel job, where every rank loads the zoo
                    self.expert_steps = {"experts_training": int(self.expert.meta["env_steps"]),
                                         "experts_eval": int(self.expert.meta["eval_env_steps"])}
            elif cfg.algo.expert.source == "scripted" or dagger:
                if not has_expert(self.family):
                    raise ValueError(
                        f"algo.expert.source=scripted / algo.dagger.enabled need a scripted expert, and family "
                        f"{cfg.env.family!r} has none; use algo.expert.source=demos with algo.dagger.enabled=false"
                    )
                self.expert = expert_for(self.family)

    # ---------------------------------------------------------------- expert data
    def init_expert_data(self, fresh: bool = True) -> None:
        """Attach demo files (always) and, for a fresh run, collect scripted expert episodes."""
        cfg = self.cfg.algo
        if cfg.expert.source not in ("scripted", "demos", "zoo"):
            raise ValueError(f"unknown algo.expert.source {cfg.expert.source!r}; use scripted, demos or zoo")
        if self.buffer is None:
            self.buffer = ExpertBuffer(len(self.train_tasks), cfg.buffer_max_per_task)
        if cfg.expert.source == "demos":
            space = self.sampler.vec.single_observation_space["image"].shape
            held = sum(self.buffer.size(i) for i in range(len(self.train_tasks)))
            attach_demo_files(self.buffer, list(cfg.expert.demo_files), self.family.name, space[:2],
                              self.sampler.vec.single_action_space.shape[0], self.train_tasks)
            if fresh and self.ranks.is_main:  # the recorded demos' steps (one sample per step, counted once); a resumed run has them
                self._count("demo_files", sum(self.buffer.size(i) for i in range(len(self.train_tasks))) - held, 1, 0)
        elif fresh:
            slots = self.ranks.share(list(range(len(self.train_tasks))))  # data-parallel: each rank collects its share
            batch = self.sampler.collect(
                [self.train_tasks[i] for i in slots],
                cfg.expert.episodes_per_task,
                ExpertActor(self.expert, cfg.expert.noise, seed=self.cfg.seed),
                seed=self._seed(0, 6),
                progress="expert demos",
            )
            self.env_episodes += batch.num_episodes
            self._count("expert_episodes", batch.num_episodes, batch.actions.shape[1])
            self._add_relabelled(batch, self._label(batch), slots, pin=True)

    def _add_relabelled(self, batch: RolloutBatch, labels: np.ndarray, slots: list[int], pin: bool = False) -> None:
        """Add expert-labelled visits to the buffer; data-parallel: every rank's, so each holds all the data."""
        parts = distributed.gather((batch, labels, slots), self.ranks) if self.ranks.active else [(batch, labels, slots)]
        for part_batch, part_labels, part_slots in parts:
            self.buffer.add_relabelled(part_batch, part_labels, pin=pin, slots=part_slots)

    def _count(self, part: str, episodes: int, length: int, collects: int = 1) -> None:
        """Add ``episodes`` used episodes of ``length`` steps, gathered in ``collects`` equal sampler calls."""
        self.env_steps[part] += int(episodes) * int(length)
        if collects:
            self.padding_steps += collects * (-(int(episodes) // collects) % self.sampler.num_envs) * int(length)

    def step_metrics(self) -> dict[str, int]:
        """Every environment step so far, by part and in total, the experts' own training included (all ranks')."""
        parts = self._mean({**self.expert_steps, **self.env_steps, "sampler_padding": self.padding_steps}, 1.0)
        padding = parts.pop("sampler_padding")
        return {**{f"steps/{k}": v for k, v in parts.items()}, "steps/total": sum(parts.values()),
                "steps/sampler_padding": padding}

    def total_episodes(self) -> int:
        """Meta-training episodes so far, every rank's."""
        return self._mean({"episodes": self.env_episodes}, 1.0)["episodes"]

    def _label(self, batch: RolloutBatch) -> np.ndarray:
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.states.items()}
        labels = self.expert.act_batch(flat)
        return labels.reshape(batch.num_episodes, -1, labels.shape[-1])

    def _expert_batches(self, slots, rng: np.random.Generator) -> list[tuple[torch.Tensor, ...]]:
        """One imitation batch (images, proprio, actions) per training-task slot, on the device."""
        size, dtype = self.cfg.algo.expert_batch_size, self.policy.log_std.dtype
        return [tuple(x.to(self.device) for x in self.buffer.sample(i, size, rng, dtype)) for i in slots]

    def pretrain(self) -> dict[str, float]:
        """Multi-task BC on the expert data before meta-training (``algo.pretrain_steps`` Adam steps).

        On sparse-reward tasks a randomly initialised policy never reaches a goal, so the
        inner policy-gradient step is zero and the imitation loss alone must first teach
        the pre-update policy to reach the goal region at all. Doing that here costs no
        environment episodes; each meta-iteration costs ``rollouts_per_task`` per task.
        """
        steps = int(self.cfg.algo.get("pretrain_steps", 0) or 0)
        if steps <= 0:
            return {}
        rng = np.random.default_rng(self._seed(0, 7))
        theta = self.policy.params()
        slots = self.ranks.share(list(range(len(self.train_tasks))))
        weight = len(slots) / len(self.train_tasks)
        latents, latent_optimizer = self._task_latents(len(slots)) if self.policy.has_latent else (None, None)
        losses = []
        for _ in tqdm(range(steps), desc="BC pre-training", unit="step", leave=False):
            batch = self._expert_batches(slots, rng)
            if latent_optimizer is not None:
                latent_optimizer.zero_grad(set_to_none=True)
            losses.append(self._outer_step(
                lambda: bc_loss(self.policy, theta, batch, self.cfg.algo.imitation_loss, latents), weight))
            if latent_optimizer is not None:
                latent_optimizer.step()
        # Fresh Adam moments for meta-training: the BC steps' statistics belong to another objective.
        self.optimizer.state.clear()
        first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
        log.info("BC pre-training: %d steps, imitation loss %.4f -> %.4f", steps, first, last)
        metrics = {"pretrain/bc_loss_first": first, "pretrain/bc_loss": last}
        if latents is not None:
            self._fit_latent_distribution(latents.detach())
            # The warm-start check compares the pre-update policy, which acts at the shared latent, with
            # this number: measure it there, not with each task's own latent.
            with torch.no_grad():
                last = float(np.mean([bc_loss(self.policy, self.policy.params(), self._expert_batches(slots, rng),
                                              self.cfg.algo.imitation_loss).item() for _ in range(10)]))
            log.info("BC imitation loss at the shared latent: %.4f", last)
            metrics = {**metrics, "pretrain/bc_loss_own_latents": metrics["pretrain/bc_loss"], "pretrain/bc_loss": last}
        self.bc_loss_after_pretrain = last
        return metrics

    def _task_latents(self, tasks: int) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
        """One input latent per training task for BC, drawn from the policy's initial latent distribution.

        Why: with one shared bias transform during BC the head learns to ignore it, and then a sampled
        latent moves nothing and its policy gradient carries no task information (MAESN learns
        per-task latents for the same reason).
        """
        mean, log_std = (t.detach() for t in self.policy.episode_noise_distribution(self.policy.params()))
        generator = torch.Generator().manual_seed(self._seed(0, 8))
        draw = torch.randn(tasks, mean.numel(), generator=generator, dtype=mean.dtype).to(mean.device)
        latents = torch.nn.Parameter(mean + log_std.exp() * draw)
        return latents, torch.optim.Adam([latents], lr=self.cfg.algo.outer_lr)

    @torch.no_grad()
    def _fit_latent_distribution(self, latents: torch.Tensor) -> None:
        """The shared latent becomes the tasks' mean and its exploration std their spread, so sampled
        latents cover the training tasks' behaviours and a step on the mean moves between them."""
        self.bc_task_latents = latents.clone()
        self.policy.bias_transform.copy_(latents.mean(0))
        spread = latents.std(0) if len(latents) > 1 else self.policy.latent_log_std.exp()
        self.policy.latent_log_std.copy_(spread.clamp_min(1e-3).log())
        log.info("BC task latents: mean %s, std %s", np.round(latents.mean(0).cpu().numpy(), 3),
                 np.round(spread.cpu().numpy(), 3))

    # ---------------------------------------------------------------- one iteration
    @property
    def meta_batch(self) -> int:
        """Training tasks per iteration: ``algo.meta_batch_size``, or all of them when it is null."""
        return min(self.cfg.algo.meta_batch_size or len(self.train_tasks), len(self.train_tasks))

    def _iteration_tasks(self) -> list[int]:
        n = self.meta_batch
        if n >= len(self.train_tasks):
            return list(range(len(self.train_tasks)))
        rng = np.random.default_rng(iteration_seed(self.cfg.seed, self.iteration, 1))
        return sorted(rng.choice(len(self.train_tasks), size=n, replace=False).tolist())

    def _seed(self, iteration: int, phase: int) -> int:
        """The seed of one phase of one iteration; each rank of a data-parallel job draws its own."""
        return iteration_seed(self.cfg.seed, iteration, phase, *((self.ranks.rank,) if self.ranks.active else ()))

    def _collect(self, tasks: list[Task], params: list, episodes: int, phase: int, label: str, part: str) -> RolloutBatch:
        seed = self._seed(self.iteration, phase)
        batch = self.sampler.collect(tasks, episodes, PolicyActor(self.policy, params, seed=seed), seed=seed, progress=label)
        self.env_episodes += batch.num_episodes
        self._count(part, batch.num_episodes, batch.actions.shape[1])
        return batch

    def _outer_step(self, loss_fn, weight: float = 1.0) -> float:
        """One Adam step on ``loss_fn``; ``weight``: this rank's share of the tasks (data-parallel: gradients summed)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        if not torch.isfinite(loss):  # checked on every rank before the all-reduce, so none waits on a dead one
            raise FloatingPointError(
                f"meta-loss became {loss.item()} at iteration {self.iteration}; lower algo.outer_lr or algo.inner_lr"
            )
        loss.backward()
        value = loss.item()
        if self.ranks.active:
            value = distributed.all_reduce_gradients(self.learned, weight, value)
        torch.nn.utils.clip_grad_norm_(self.learned, self.cfg.algo.grad_clip)
        self.optimizer.step()
        return value

    def _mean(self, metrics: dict[str, float], weight: float) -> dict[str, float]:
        """Data-parallel: ``metrics`` averaged over ranks by their share of the tasks (ints summed); else unchanged."""
        return distributed.weighted_mean(metrics, weight) if self.ranks.active else metrics

    def _warm_up_outer_lr(self) -> float:
        """Scale the outer learning rate by (i+1)/(k+1) over the first k = ``algo.outer_lr_warmup`` iterations.

        Right after the BC warm start, full-rate Adam steps on the post-adaptation imitation loss
        can move the pre-update policy far from what BC taught it (seen on a new family: training
        success 0.30 after BC, 0.01 after one iteration); a short ramp lets the step sizes adjust first.
        """
        k = int(self.cfg.algo.get("outer_lr_warmup", 0) or 0)
        scale = 1.0 if k <= 0 else min(1.0, (self.iteration + 1) / (k + 1))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * scale
        return scale

    def _check_imitation_jump(self, metrics: dict[str, float], batch) -> None:
        """Warn when the pre-update policy's imitation loss has jumped far above its value after BC."""
        factor = float(self.cfg.algo.get("bc_jump_warning", 0) or 0)
        with torch.no_grad():
            loss = float(bc_loss(self.policy, self.policy.params(), batch, self.cfg.algo.imitation_loss))
        metrics["pre_bc_loss"] = loss
        if factor and self.bc_loss_after_pretrain and loss > factor * self.bc_loss_after_pretrain:
            log.warning("iteration %d: the pre-update policy's imitation loss is %.4f, %.1fx its %.4f after BC: the "
                        "meta-update is undoing the warm start; raise algo.pre_update_bc_weight or lower algo.outer_lr",
                        self.iteration, loss, loss / self.bc_loss_after_pretrain, self.bc_loss_after_pretrain)

    def _calibrate_step_sizes(self, loss_fn, batch, weight: float = 1.0) -> float:
        """Halve the step sizes until the adapted policy imitates within ``algo.inner_step_calibration``x the pre-update one.

        Run once, at the first meta-iteration. Without it a step size tuned on another family can make
        the adapted policy's imitation loss several times the warm start's, and the outer steps then
        undo the warm start rather than shrink the step (Adam moves a step size of 0.5 by ~outer_lr per step).
        """
        bound = float(self.cfg.algo.get("inner_step_calibration", 0) or 0)
        if bound <= 0:
            return 1.0
        pre = float(bc_loss(self.policy, self.policy.params(), batch, self.cfg.algo.imitation_loss).detach())
        pre = self._mean({"loss": pre}, weight)["loss"]  # every rank decides on the same numbers
        scale = 1.0
        for _ in range(10):
            post = self._mean({"loss": float(loss_fn(batch).detach())}, weight)["loss"]
            if post <= bound * pre:
                break
            with torch.no_grad():
                for value in self.step_sizes.values:
                    value.mul_(0.5)
            scale *= 0.5
        if scale < 1.0:
            log.warning("inner step sizes scaled by %g: the adapted policy's imitation loss was above %gx the "
                        "pre-update policy's %.4f (algo.inner_step_calibration)", scale, bound, pre)
        return scale

    def train_iteration(self, before_outer_steps: Callable[[], None] | None = None) -> dict[str, float]:
        """One meta-iteration; ``before_outer_steps`` is called once the sampler is no longer needed."""
        cfg = self.cfg.algo
        learn = before_outer_steps or (lambda: None)
        every = self._iteration_tasks()
        idx = self.ranks.share(every)  # data-parallel: this rank's tasks; else all of them
        weight = len(idx) / len(every)
        tasks = [self.train_tasks[i] for i in idx]
        theta = self.policy.params()
        alpha = self.step_sizes.as_dict()
        metrics: dict[str, float] = {}
        second_order = not cfg.first_order
        rng = np.random.default_rng(self._seed(self.iteration, 2))
        expert_batch = lambda: self._expert_batches(idx, rng)  # noqa: E731

        if cfg.name == "bc":
            learn()
            losses = [self._outer_step(lambda: bc_loss(self.policy, theta, expert_batch(), cfg.imitation_loss), weight)
                      for _ in range(cfg.outer_steps)]
            return {"loss": float(np.mean(losses))}  # the losses are every rank's already

        pre = self._collect(tasks, [theta] * len(tasks), cfg.rollouts_per_task, 3, "pre-update rollouts", "meta_pre")
        metrics.update({f"pre/{k}": v for k, v in pre.summary().items()})
        pre_batches = split_by_task(self.policy, pre, [theta] * len(tasks), cfg.gamma, cfg.baseline)

        post_batches = None
        need_post = cfg.name == "maml" or (cfg.dagger.enabled and self.iteration % cfg.dagger.every == 0)
        if need_post:
            phis = [{k: v.detach() for k, v in p.items()}
                    for p in adapt_all(self.policy, theta, alpha, pre_batches, cfg.inner_steps, create_graph=False,
                                       natural_scale=self.inner_natural_scale)]
            episodes = cfg.rollouts_per_task if cfg.name == "maml" else cfg.dagger.rollouts_per_task
            post = self._collect(tasks, phis, episodes, 4, "post-update rollouts",
                                 "meta_post" if cfg.name == "maml" else "dagger")
            metrics.update({f"post/{k}": v for k, v in post.summary().items()})
            if cfg.name == "maml":
                post_batches = split_by_task(self.policy, post, phis, cfg.gamma, cfg.baseline)
            else:
                self._add_relabelled(post, self._label(post), idx)
                metrics["dagger/buffer_mean"] = float(np.mean([self.buffer.size(i) for i in idx]))

        # The rollouts' encoder input, converted once for every outer step (after the post-update
        # collection, so the collection's peak memory does not hold it).
        pre_pixels = batch_pixels(self.policy, pre_batches)
        if cfg.name == "gmps":
            warm_started = int(cfg.get("pretrain_steps", 0) or 0) > 0  # the guards keep a BC warm start
            anchor = float(cfg.get("pre_update_bc_weight", 0) or 0) if warm_started else 0.0

            def adapted_loss(batch):
                return gmps_loss(self.policy, theta, alpha, pre_batches, batch, cfg.inner_steps, second_order,
                                 cfg.imitation_loss, pre_pixels, self.inner_natural_scale)

            def fn():
                # pre_update_bc_weight: the pre-update policy keeps imitating the expert too, so the
                # meta-update cannot trade away what the BC warm start taught it.
                batch = expert_batch()
                loss = adapted_loss(batch)
                return loss + anchor * bc_loss(self.policy, theta, batch, cfg.imitation_loss) if anchor else loss

            if self.iteration == 0 and warm_started and self.inner_natural_scale is None:  # no step sizes to calibrate
                metrics["step_size_calibration"] = self._calibrate_step_sizes(adapted_loss, expert_batch(), weight)
        else:
            post_pixels = batch_pixels(self.policy, post_batches)
            fn = lambda: maml_loss(  # noqa: E731
                self.policy, theta, alpha, pre_batches, post_batches, cfg.inner_steps, second_order, cfg.clip,
                pre_pixels, post_pixels, self.inner_natural_scale,
            )
        metrics["outer_lr_scale"] = self._warm_up_outer_lr()
        learn()
        losses = [self._outer_step(fn, weight) for _ in range(cfg.outer_steps)]
        if cfg.name == "gmps":
            self._check_imitation_jump(metrics, expert_batch())
        metrics["loss"] = float(np.mean(losses))
        metrics["loss_last"] = losses[-1]
        metrics["step_size_mean"] = float(torch.cat([a.detach().flatten() for a in alpha.values()]).mean())
        metrics["log_std_mean"] = float(self.policy.log_std.detach().mean())
        return self._mean(metrics, weight)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, steps: int = 1) -> dict[str, float]:
        """Validation-split adaptation check: success before and after ``steps`` PG steps (not counted as training)."""
        self._count_evaluation(steps)
        return self._evaluation(self.policy, self._detached_step_sizes(), self.iteration, steps)

    def _detached_step_sizes(self):
        return {k: v.detach().clone() for k, v in self.step_sizes.as_dict().items()}

    def _count_evaluation(self, steps: int) -> None:
        """The check's environment steps, known from the config before it runs (so a deferred check's row is complete)."""
        tasks, starts = len(self.eval_tasks), int(self.cfg.train.get("eval_episodes", 1))
        self._count("eval", steps * tasks * self.cfg.algo.rollouts_per_task, self.family.horizon, collects=steps)
        self._count("eval", (steps + 1) * tasks * starts, self.family.horizon, collects=steps + 1 if starts else 0)

    def _evaluation(self, policy: ConvGaussianPolicy, step_sizes, iteration: int, steps: int = 1) -> dict[str, float]:
        """The check itself: reads only its arguments, the sampler and the config, so it can run in a thread."""
        result = run_adaptation(
            policy,
            step_sizes,
            self.sampler,
            self.eval_tasks,
            steps,
            self.cfg.algo.rollouts_per_task,
            self.cfg.algo.gamma,
            self.cfg.algo.baseline,
            eval_episodes=int(self.cfg.train.get("eval_episodes", 1)),
            seed=iteration_seed(self.cfg.seed, iteration, 5),
            natural_scale=natural_scale_of(self.cfg.get("adapt") or {}),  # the curve adapts as the final table will
            **exploration_of(self.cfg.get("adapt") or {}),
        )
        pre, post = result.rows[0], result.rows[-1]
        return {"eval/success_pre": pre["success"], "eval/success_post": post["success"], "eval/return_post": post["return"],
                "eval/success_pre_low": pre["success_wilson_low"], "eval/success_pre_high": pre["success_wilson_high"],
                "eval/success_post_low": post["success_wilson_low"], "eval/success_post_high": post["success_wilson_high"]}

    def _check_snapshot(self, row: dict[str, float]) -> tuple[dict[str, float], int, ConvGaussianPolicy, dict]:
        """What a deferred check needs: its row, the iteration, and copies of the policy and step sizes now."""
        return row, self.iteration, copy.deepcopy(self.policy), self._detached_step_sizes()

    def _overlaps_evaluation(self) -> bool:
        # envs stepped in this process (sampler.backend=sync) must not be stepped from a second thread
        return bool(self.cfg.train.get("overlap_eval", True)) and not self.sampler.steps_in_this_process

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "policy_spec": self.policy.spec.to_dict(),
            "step_sizes": self.step_sizes.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            # every rank's counts (data-parallel); load() gives them back to rank 0 only
            "env_episodes": self.total_episodes(),
            "env_steps": self._mean({**self.env_steps, "sampler_padding": self.padding_steps}, 1.0),
            "algo": self.cfg.algo.name,
            "env_args": self.family.env_args(),
            "config_yaml": OmegaConf.to_yaml(self.cfg, resolve=True),
            "buffer": self.buffer.state_dict() if self.buffer is not None else {},
        }

    def save(self, pending_row: dict[str, float] | None = None) -> Path:
        """``last.pt`` and ``iter_<i>.pt``: the same full state (expert buffer included), so either resumes exactly.

        ``pending_row``: this iteration's metrics while its validation check still runs (overlapped);
        a run resumed from here runs the check again and writes the row.
        """
        state = self.state_dict()
        if pending_row is not None:
            state["pending_row"] = dict(pending_row)
        if self.ranks.active:
            distributed.check_in_sync(self.learned, "parameters")
            if not self.ranks.is_main:  # rank 0 writes; every rank holds the same state
                return self.run_dir / "checkpoints" / "last.pt"
        path = save_checkpoint(self.run_dir / "checkpoints" / "last.pt", state)
        save_checkpoint(self.run_dir / "checkpoints" / f"iter_{self.iteration:05d}.pt", state)
        return path

    def load(self, path: Path, state: dict[str, Any]) -> None:
        check_compatible(state, self.policy.spec, self.family.name, path)
        if state["algo"] != self.cfg.algo.name:
            raise CheckpointError(f"checkpoint {path} was trained with algo={state['algo']}, the config says {self.cfg.algo.name}")
        self.policy.load_state_dict(state["policy"])
        self.step_sizes.load_state_dict(state["step_sizes"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.env_episodes = int(state["env_episodes"])
        steps = {k: int(v) for k, v in state.get("env_steps", {}).items()}
        self.padding_steps = steps.pop("sampler_padding", 0)
        self.env_steps.update(steps)
        if not self.ranks.is_main:  # the counts are all ranks' together: rank 0 carries them on
            self.env_episodes, self.padding_steps = 0, 0
            self.env_steps = dict.fromkeys(STEP_PARTS, 0)
        if state["buffer"]:
            self.buffer = ExpertBuffer.from_state_dict(state["buffer"])
        self.pending_row = dict(state["pending_row"]) if state.get("pending_row") else None

    # ---------------------------------------------------------------- main loop
    def run(self, logger: RunLogger, resume: bool = False, resume_from: tuple[Path, dict] | None = None) -> dict[str, float]:
        """Train to ``train.iterations``; ``resume`` continues from ``resume_from`` (default: ``resume_checkpoint``)."""
        tcfg = self.cfg.train
        self.pending_row = None
        if resume:
            path, state = resume_from or resume_checkpoint(self.run_dir, bool(self.cfg.get("resume_fallback")))
            self.load(path, state)
            # metrics of iterations the checkpoint does not hold would repeat; a row whose check was
            # still running when the checkpoint was written is written again below
            logger.drop_after(self.iteration - (self.pending_row is not None))
            log.info("resumed from %s at iteration %d", path, self.iteration)
        if self.cfg.algo.name in ("gmps", "bc"):
            self.init_expert_data(fresh=self.buffer is None)
            if self.iteration == 0 and (pretrain := self.pretrain()):
                logger.log(pretrain, step=0)
        overlap = self._overlaps_evaluation()
        # the row of the last iteration whose check runs during this one's outer steps, with what the check needs
        pending: tuple[dict[str, float], int, ConvGaussianPolicy, dict] | None = None
        if self.pending_row is not None and self.ranks.is_main:
            pending = self._check_snapshot(self.pending_row)
        metrics: dict[str, float] = {}
        bar = tqdm(total=tcfg.iterations, initial=self.iteration, desc=f"{self.cfg.algo.name} meta-training", unit="it")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation") as pool:
            while self.iteration < tcfg.iterations:
                start = time.perf_counter()
                check: list[Future] = []

                def start_check() -> None:
                    if pending is not None and overlap:  # else (a resumed row, sampler now sync) it runs in line below
                        check.append(pool.submit(self._evaluation, pending[2], pending[3], pending[1]))

                metrics = self.train_iteration(before_outer_steps=start_check)
                if pending is not None:
                    row, step = pending[0], pending[1]
                    row.update(check[0].result() if check else self._evaluation(*pending[2:], step))
                    logger.log(row, step=step)
                    pending = None
                self.iteration += 1
                metrics["env_episodes"] = self.total_episodes()
                metrics["time/iteration_s"] = time.perf_counter() - start
                due = (bool(tcfg.eval_every) and self.ranks.is_main  # data-parallel: rank 0 checks, alone
                       and (self.iteration % tcfg.eval_every == 0 or self.iteration == tcfg.iterations))
                if due:
                    self._count_evaluation(1)
                metrics.update(self.step_metrics())
                if due and overlap and self.iteration < tcfg.iterations:
                    pending = self._check_snapshot(metrics)
                else:
                    if due:
                        metrics.update(self._evaluation(self.policy, self._detached_step_sizes(), self.iteration))
                    logger.log(metrics, step=self.iteration)
                if self.iteration % tcfg.checkpoint_every == 0 or self.iteration == tcfg.iterations:
                    self.save(pending_row=pending[0] if pending is not None else None)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k in ("loss", "pre/success", "post/success", "eval/success_post")})
        bar.close()
        return metrics
