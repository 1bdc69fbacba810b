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
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from robot_envs import Task, make_family
from vision_gmps.adaptation import run_adaptation
from vision_gmps.checkpoint import CheckpointError, check_compatible, resume_checkpoint, save_checkpoint
from vision_gmps.config import ConfigError
from vision_gmps.expert_data import ExpertBuffer, attach_demo_files
from vision_gmps.inner import split_by_task
from vision_gmps.meta import adapt_all, bc_loss, gmps_loss, maml_loss
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


def iteration_seed(seed: int, iteration: int, phase: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, phase]).generate_state(1)[0] % (2**31))


class MetaTrainer:
    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        if cfg.algo.name not in ALGOS:
            raise ValueError(f"unknown algo {cfg.algo.name!r}; use one of {ALGOS}")
        self.cfg = cfg
        self.run_dir = run_dir
        self.device = resolve_device(cfg.device)
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
        self.step_sizes = StepSizes(self.policy, cfg.algo.inner_lr, learnable=cfg.algo.learn_step_sizes,
                                    by_prefix=cfg.algo.get("inner_lr_by_param")).to(self.device)
        groups = [{"params": list(self.policy.parameters())}]
        if cfg.algo.learn_step_sizes:
            # Step sizes live on another scale than weights; they may get their own Adam rate.
            groups.append({"params": list(self.step_sizes.parameters()),
                           "lr": cfg.algo.get("step_size_lr") or cfg.algo.outer_lr})
        self.optimizer = torch.optim.Adam(groups, lr=cfg.algo.outer_lr)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]  # before algo.outer_lr_warmup scales them
        self.bc_loss_after_pretrain: float | None = None
        self.iteration = 0
        self.env_episodes = 0
        self.env_steps = dict.fromkeys(STEP_PARTS, 0)
        # Steps of the padding envs that fill a sampler's last wave: simulated, never used, kept out of the total.
        self.padding_steps = 0
        self.expert_steps = {"experts_training": 0, "experts_eval": 0}  # the RL experts' own cost, from the zoo
        self.buffer: ExpertBuffer | None = None
        self.expert = None
        if cfg.algo.name in ("gmps", "bc"):
            from demos.scripted import expert_for, has_expert

            dagger = cfg.algo.get("dagger", {}).get("enabled", False)
            if cfg.algo.expert.source == "zoo":  # RL experts (vgmps experts train), checked before any rollout
                from demos.rl.zoo import load_zoo_expert

                self.expert = load_zoo_expert(cfg.algo.expert.zoo, self.family, self.train_tasks)
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
            if fresh:  # the recorded demos' steps (one sample per step); a resumed run has counted them already
                self._count("demo_files", sum(self.buffer.size(i) for i in range(len(self.train_tasks))) - held, 1, 0)
        elif fresh:
            batch = self.sampler.collect(
                self.train_tasks,
                cfg.expert.episodes_per_task,
                ExpertActor(self.expert, cfg.expert.noise, seed=self.cfg.seed),
                seed=iteration_seed(self.cfg.seed, 0, 6),
                progress="expert demos",
            )
            self.env_episodes += batch.num_episodes
            self._count("expert_episodes", batch.num_episodes, batch.actions.shape[1])
            self.buffer.add_relabelled(batch, self._label(batch), pin=True)

    def _count(self, part: str, episodes: int, length: int, collects: int = 1) -> None:
        """Add ``episodes`` used episodes of ``length`` steps, gathered in ``collects`` equal sampler calls."""
        self.env_steps[part] += int(episodes) * int(length)
        if collects:
            self.padding_steps += collects * (-(int(episodes) // collects) % self.sampler.num_envs) * int(length)

    def step_metrics(self) -> dict[str, int]:
        """Every environment step so far, by part and in total, the experts' own training included."""
        parts = {**self.expert_steps, **self.env_steps}
        return {**{f"steps/{k}": v for k, v in parts.items()}, "steps/total": sum(parts.values()),
                "steps/sampler_padding": self.padding_steps}

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
        rng = np.random.default_rng(iteration_seed(self.cfg.seed, 0, 7))
        theta = self.policy.params()
        slots = range(len(self.train_tasks))
        losses = []
        for _ in tqdm(range(steps), desc="BC pre-training", unit="step", leave=False):
            batch = self._expert_batches(slots, rng)
            losses.append(self._outer_step(lambda: bc_loss(self.policy, theta, batch, self.cfg.algo.imitation_loss)))
        # Fresh Adam moments for meta-training: the BC steps' statistics belong to another objective.
        self.optimizer.state.clear()
        first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
        log.info("BC pre-training: %d steps, imitation loss %.4f -> %.4f", steps, first, last)
        self.bc_loss_after_pretrain = last
        return {"pretrain/bc_loss_first": first, "pretrain/bc_loss": last}

    # ---------------------------------------------------------------- one iteration
    def _iteration_tasks(self) -> list[int]:
        n = self.cfg.algo.meta_batch_size or len(self.train_tasks)
        if n >= len(self.train_tasks):
            return list(range(len(self.train_tasks)))
        rng = np.random.default_rng(iteration_seed(self.cfg.seed, self.iteration, 1))
        return sorted(rng.choice(len(self.train_tasks), size=n, replace=False).tolist())

    def _collect(self, tasks: list[Task], params: list, episodes: int, phase: int, label: str, part: str) -> RolloutBatch:
        seed = iteration_seed(self.cfg.seed, self.iteration, phase)
        batch = self.sampler.collect(tasks, episodes, PolicyActor(self.policy, params, seed=seed), seed=seed, progress=label)
        self.env_episodes += batch.num_episodes
        self._count(part, batch.num_episodes, batch.actions.shape[1])
        return batch

    def _outer_step(self, loss_fn) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"meta-loss became {loss.item()} at iteration {self.iteration}; lower algo.outer_lr or algo.inner_lr"
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.algo.grad_clip
        )
        self.optimizer.step()
        return loss.item()

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

    def _calibrate_step_sizes(self, loss_fn, batch) -> float:
        """Halve the step sizes until the adapted policy imitates within ``algo.inner_step_calibration``x the pre-update one.

        Run once, at the first meta-iteration. Without it a step size tuned on another family can make
        the adapted policy's imitation loss several times the warm start's, and the outer steps then
        undo the warm start rather than shrink the step (Adam moves a step size of 0.5 by ~outer_lr per step).
        """
        bound = float(self.cfg.algo.get("inner_step_calibration", 0) or 0)
        if bound <= 0:
            return 1.0
        pre = float(bc_loss(self.policy, self.policy.params(), batch, self.cfg.algo.imitation_loss).detach())
        scale = 1.0
        for _ in range(10):
            post = float(loss_fn(batch).detach())
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

    def train_iteration(self) -> dict[str, float]:
        cfg = self.cfg.algo
        idx = self._iteration_tasks()
        tasks = [self.train_tasks[i] for i in idx]
        theta = self.policy.params()
        alpha = self.step_sizes.as_dict()
        metrics: dict[str, float] = {}
        second_order = not cfg.first_order
        rng = np.random.default_rng(iteration_seed(self.cfg.seed, self.iteration, 2))
        expert_batch = lambda: self._expert_batches(idx, rng)  # noqa: E731

        if cfg.name == "bc":
            losses = [self._outer_step(lambda: bc_loss(self.policy, theta, expert_batch(), cfg.imitation_loss))
                      for _ in range(cfg.outer_steps)]
            return {"loss": float(np.mean(losses))}

        pre = self._collect(tasks, [theta] * len(tasks), cfg.rollouts_per_task, 3, "pre-update rollouts", "meta_pre")
        metrics.update({f"pre/{k}": v for k, v in pre.summary().items()})
        pre_batches = split_by_task(self.policy, pre, [theta] * len(tasks), cfg.gamma, cfg.baseline)

        post_batches = None
        need_post = cfg.name == "maml" or (cfg.dagger.enabled and self.iteration % cfg.dagger.every == 0)
        if need_post:
            phis = [{k: v.detach() for k, v in p.items()}
                    for p in adapt_all(self.policy, theta, alpha, pre_batches, cfg.inner_steps, create_graph=False)]
            episodes = cfg.rollouts_per_task if cfg.name == "maml" else cfg.dagger.rollouts_per_task
            post = self._collect(tasks, phis, episodes, 4, "post-update rollouts",
                                 "meta_post" if cfg.name == "maml" else "dagger")
            metrics.update({f"post/{k}": v for k, v in post.summary().items()})
            if cfg.name == "maml":
                post_batches = split_by_task(self.policy, post, phis, cfg.gamma, cfg.baseline)
            else:
                self.buffer.add_relabelled(post, self._label(post), slots=idx)
                metrics["dagger/buffer_mean"] = float(np.mean([self.buffer.size(i) for i in idx]))

        if cfg.name == "gmps":
            warm_started = int(cfg.get("pretrain_steps", 0) or 0) > 0  # the guards keep a BC warm start
            anchor = float(cfg.get("pre_update_bc_weight", 0) or 0) if warm_started else 0.0

            def adapted_loss(batch):
                return gmps_loss(self.policy, theta, alpha, pre_batches, batch, cfg.inner_steps, second_order,
                                 cfg.imitation_loss)

            def fn():
                # pre_update_bc_weight: the pre-update policy keeps imitating the expert too, so the
                # meta-update cannot trade away what the BC warm start taught it.
                batch = expert_batch()
                loss = adapted_loss(batch)
                return loss + anchor * bc_loss(self.policy, theta, batch, cfg.imitation_loss) if anchor else loss

            if self.iteration == 0 and warm_started:
                metrics["step_size_calibration"] = self._calibrate_step_sizes(adapted_loss, expert_batch())
        else:
            fn = lambda: maml_loss(  # noqa: E731
                self.policy, theta, alpha, pre_batches, post_batches, cfg.inner_steps, second_order, cfg.clip
            )
        metrics["outer_lr_scale"] = self._warm_up_outer_lr()
        losses = [self._outer_step(fn) for _ in range(cfg.outer_steps)]
        if cfg.name == "gmps":
            self._check_imitation_jump(metrics, expert_batch())
        metrics["loss"] = float(np.mean(losses))
        metrics["loss_last"] = losses[-1]
        metrics["step_size_mean"] = float(torch.cat([a.detach().flatten() for a in alpha.values()]).mean())
        metrics["log_std_mean"] = float(self.policy.log_std.detach().mean())
        return metrics

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, steps: int = 1) -> dict[str, float]:
        """Validation-split adaptation check: success before and after ``steps`` PG steps (not counted as training)."""
        result = run_adaptation(
            self.policy,
            {k: v.detach() for k, v in self.step_sizes.as_dict().items()},
            self.sampler,
            self.eval_tasks,
            steps,
            self.cfg.algo.rollouts_per_task,
            self.cfg.algo.gamma,
            self.cfg.algo.baseline,
            eval_episodes=int(self.cfg.train.get("eval_episodes", 1)),
            seed=iteration_seed(self.cfg.seed, self.iteration, 5),
        )
        pre, post = result.rows[0], result.rows[-1]
        per_eval = len(self.eval_tasks) * int(self.cfg.train.get("eval_episodes", 1))
        self._count("eval", post["episodes"], self.family.horizon, collects=steps)  # the adaptation rollouts
        self._count("eval", len(result.rows) * per_eval, self.family.horizon, collects=len(result.rows) if per_eval else 0)
        return {"eval/success_pre": pre["success"], "eval/success_post": post["success"], "eval/return_post": post["return"],
                "eval/success_pre_low": pre["success_wilson_low"], "eval/success_pre_high": pre["success_wilson_high"],
                "eval/success_post_low": post["success_wilson_low"], "eval/success_post_high": post["success_wilson_high"]}

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "policy_spec": self.policy.spec.to_dict(),
            "step_sizes": self.step_sizes.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "env_episodes": self.env_episodes,
            "env_steps": {**self.env_steps, "sampler_padding": self.padding_steps},
            "algo": self.cfg.algo.name,
            "env_args": self.family.env_args(),
            "config_yaml": OmegaConf.to_yaml(self.cfg, resolve=True),
            "buffer": self.buffer.state_dict() if self.buffer is not None else {},
        }

    def save(self) -> Path:
        """``last.pt`` and ``iter_<i>.pt``: the same full state (expert buffer included), so either resumes exactly."""
        state = self.state_dict()
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
        if state["buffer"]:
            self.buffer = ExpertBuffer.from_state_dict(state["buffer"])

    # ---------------------------------------------------------------- main loop
    def run(self, logger: RunLogger, resume: bool = False, resume_from: tuple[Path, dict] | None = None) -> dict[str, float]:
        """Train to ``train.iterations``; ``resume`` continues from ``resume_from`` (default: ``resume_checkpoint``)."""
        tcfg = self.cfg.train
        if resume:
            path, state = resume_from or resume_checkpoint(self.run_dir, bool(self.cfg.get("resume_fallback")))
            self.load(path, state)
            logger.drop_after(self.iteration)  # metrics of iterations the checkpoint does not hold would repeat
            log.info("resumed from %s at iteration %d", path, self.iteration)
        if self.cfg.algo.name in ("gmps", "bc"):
            self.init_expert_data(fresh=self.buffer is None)
            if self.iteration == 0 and (pretrain := self.pretrain()):
                logger.log(pretrain, step=0)
        metrics: dict[str, float] = {}
        bar = tqdm(total=tcfg.iterations, initial=self.iteration, desc=f"{self.cfg.algo.name} meta-training", unit="it")
        while self.iteration < tcfg.iterations:
            start = time.perf_counter()
            metrics = self.train_iteration()
            self.iteration += 1
            metrics["env_episodes"] = self.env_episodes
            metrics["time/iteration_s"] = time.perf_counter() - start
            if tcfg.eval_every and (self.iteration % tcfg.eval_every == 0 or self.iteration == tcfg.iterations):
                metrics.update(self.evaluate())
            metrics.update(self.step_metrics())
            logger.log(metrics, step=self.iteration)
            if self.iteration % tcfg.checkpoint_every == 0 or self.iteration == tcfg.iterations:
                self.save()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k in ("loss", "pre/success", "post/success", "eval/success_post")})
        bar.close()
        return metrics


