"""Experiment: door meta-test with the reward counted every step (default) vs only at the final step/window.

Tests the hypothesis that the per-step in-band reward biases the step toward opening further
(an overshooting rollout earns reward while passing the band, an undershooting one earns none).
"""
import json, sys, time
import numpy as np, torch
from omegaconf import OmegaConf
from robot_envs import make_family
import vision_gmps.adaptation as A
from vision_gmps.checkpoint import load_checkpoint, policy_from_checkpoint
from vision_gmps.rollouts import Sampler

ckpt, split, n_tasks, n_eval, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
variants = sys.argv[6].split(",")
torch.set_num_threads(1)
state = load_checkpoint(ckpt)
cfg = OmegaConf.create(state["config_yaml"])
policy, step_sizes = policy_from_checkpoint(state)
family = make_family(cfg.env.family, **cfg.env.kwargs)
tasks = family.sample(split, n_tasks, cfg.env.tasks.seed)
sampler = Sampler.from_config(family, cfg.sampler)
orig_split = A.split_by_task
orig_collect = sampler.collect
results = {}

def transform(rewards, success, mode):
    if mode == "steps":
        return rewards
    r = np.zeros_like(rewards)
    if mode == "final":
        r[:, -1] = success[:, -1]
    elif mode.startswith("window"):
        k = int(mode[6:])
        r[:, -k:] = rewards[:, -k:]
    return r

for mode in variants:
    evals = []
    def collect(tasks_, n, actor, **kw):
        b = orig_collect(tasks_, n, actor, **kw)
        if actor.deterministic:
            evals.append(b)
        return b
    def split_by_task(policy_, batch, params, gamma, baseline):
        import dataclasses
        batch = dataclasses.replace(batch, rewards=transform(batch.rewards, batch.success, mode).astype(np.float32))
        return orig_split(policy_, batch, params, gamma, baseline)
    A.split_by_task = split_by_task
    sampler.collect = collect
    t0 = time.perf_counter()
    res = A.run_adaptation(policy, {k: v.detach() for k, v in step_sizes.as_dict(1.0).items()}, sampler, tasks,
                           3, 40, cfg.algo.gamma, cfg.algo.baseline, n_eval, 0)
    steps = []
    for b in evals:
        signed = np.rad2deg(b.states["hinge_angle"][:, -1, 0] - b.states["target_angle"][:, -1, 0])
        first = np.array([np.argmax(s) if s.any() else -1 for s in b.success])
        steps.append({"signed_final_error": b.per_task(signed).tolist(),
                      "success": b.per_task(b.episode_success.astype(float)).tolist(),
                      "first_in_band": b.per_task(first.astype(float)).tolist()})
    results[mode] = {"rows": res.rows, "evals": steps}
    print(mode, "success", " -> ".join(f"{r['success']:.2f}" for r in res.rows),
          "err", " -> ".join(f"{r.get('final_angle_error', float('nan')):.1f}" for r in res.rows),
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    json.dump(results, open(out, "w"), indent=1)
sampler.close()
