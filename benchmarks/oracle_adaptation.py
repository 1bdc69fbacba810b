"""How far could adapting these parameters go? Fit them to each held-out task's expert actions, then evaluate.

A reward-only step on the adapted parameters can at best move them to where supervised imitation of
that task's expert would. This fits each parameter set by least squares on the scripted expert's clean
actions (10 episodes per task at the demos' noise), from the meta-trained checkpoint, on the *valid*
split, and evaluates the fitted policies on the same starts as `run_adaptation`'s step 0. If the fitted
policies succeed, the adapted set can express the tasks and the reward-only step is what falls short;
if they do not, no step on that set can reach them.

    python benchmarks/oracle_adaptation.py runs/<door run>/checkpoints/last.pt --tasks 20 --eval-episodes 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from demos.scripted import expert_for
from robot_envs import make_family
from vision_gmps.adaptation import EVAL_SEED_OFFSET
from vision_gmps.checkpoint import load_checkpoint, policy_from_checkpoint
from vision_gmps.meta import imitation_loss
from vision_gmps.rollouts import ExpertActor, PolicyActor, Sampler

FIT_STEPS, FIT_LR = 400, 1e-3  # Adam on each task's ~600 expert steps: the loss has flattened by then


def parameter_sets(policy) -> dict[str, list[str]]:
    """The checkpoint's adapted set, the whole head, and the output layer's bias with the bias transform."""
    names = list(policy.params())
    out = policy.output_layer
    return {
        "adapted set (" + ", ".join(policy.spec.adapt) + ")": list(policy.adapted_names),
        "whole head + bias_transform": [n for n in names if n.startswith("head.") or n == "bias_transform"],
        "output bias + bias_transform": [f"{out}.bias", "bias_transform"],
    }


def fit(policy, start: dict, names: list[str], features, proprio, actions) -> tuple[dict, float, float]:
    """Adam on the imitation loss over ``names`` only; returns (parameters, loss before, loss after)."""
    params = {k: (v.clone().requires_grad_(True) if k in names else v) for k, v in start.items()}
    opt = torch.optim.Adam([params[k] for k in names], lr=FIT_LR)
    first = None
    for _ in range(FIT_STEPS):
        loss = imitation_loss(policy.head_mean(features, proprio, params), params["log_std"], actions, "mse")
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}, first, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tasks", type=int, default=20, help="valid-split tasks")
    parser.add_argument("--eval-episodes", type=int, default=2, help="evaluation starts per task")
    parser.add_argument("--expert-episodes", type=int, default=10, help="expert episodes per task to fit on")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the sampler's workers take the other cores
    state = load_checkpoint(args.checkpoint)
    cfg = OmegaConf.create(state["config_yaml"])
    policy, _ = policy_from_checkpoint(state)
    family = make_family(cfg.env.family, **cfg.env.kwargs)
    tasks = family.sample("valid", args.tasks, cfg.env.tasks.seed)
    sampler = Sampler.from_config(family, cfg.sampler)
    expert = expert_for(family)
    start = {k: v.detach() for k, v in policy.params().items()}
    evaluate = lambda plist: sampler.collect(tasks, args.eval_episodes,  # noqa: E731
                                             PolicyActor(policy, plist, deterministic=True), seed=EVAL_SEED_OFFSET)
    out: dict[str, dict] = {}
    try:
        t0 = time.perf_counter()
        demos = sampler.collect(tasks, args.expert_episodes, ExpertActor(expert, float(cfg.algo.expert.noise), seed=7), seed=777)
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in demos.states.items()}
        labels = expert.act_batch(flat).reshape(demos.num_episodes, -1, demos.actions.shape[-1])
        print(f"expert episodes: success {demos.episode_success.mean():.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        with torch.no_grad():
            features = policy.encode(torch.from_numpy(demos.images.reshape(-1, *demos.images.shape[2:])), start)
        features = features.reshape(demos.num_episodes, -1, features.shape[-1])
        runs = {"before": ([start] * len(tasks), [], [])}
        for name, names in parameter_sets(policy).items():
            fitted, before, after = [], [], []
            for i in range(len(tasks)):
                rows = demos.episodes_of(i)
                proprio = torch.from_numpy(demos.proprio[rows].reshape(-1, demos.proprio.shape[-1])).to(features.dtype)
                actions = torch.from_numpy(labels[rows].reshape(-1, labels.shape[-1])).to(features.dtype)
                params, first, last = fit(policy, start, names, features[rows].reshape(-1, features.shape[-1]), proprio, actions)
                fitted.append(params)
                before.append(first)
                after.append(last)
            runs[name] = (fitted, before, after)
        for name, (plist, before, after) in runs.items():
            batch = evaluate(plist)
            success = batch.per_task(batch.episode_success.astype(float))
            finals = {k: batch.per_task(v[:, -1].astype(float)) for k, v in batch.extras.items()}
            out[name] = {"per_task_success": success.tolist(), "imitation_mse_before": before, "imitation_mse_after": after,
                         **{f"per_task_final_{k}": v.tolist() for k, v in finals.items()}}
            mse = f"; imitation MSE {np.mean(before):.4f} -> {np.mean(after):.4f}" if before else ""
            print(f"{name}: success {success.mean():.2f}" + "".join(f"; final {k} {v.mean():.3g}" for k, v in finals.items())
                  + mse, flush=True)
    finally:
        sampler.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
