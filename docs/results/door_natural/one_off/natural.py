"""Door, valid split: one reward-only step, vanilla (learned step sizes) vs a natural-gradient step on the
output layer, compared to the supervised oracle (fit to expert actions) by direction and by success."""
import sys, time, json
import numpy as np, torch
from torch.func import functional_call
from omegaconf import OmegaConf
from robot_envs import make_family
from demos.scripted import expert_for
from vision_gmps.checkpoint import load_checkpoint, policy_from_checkpoint
from vision_gmps.rollouts import Sampler, ExpertActor, PolicyActor
from vision_gmps.adaptation import EVAL_SEED_OFFSET
from vision_gmps.inner import split_by_task, adapt_detached
from vision_gmps.meta import imitation_loss

ckpt, split, n_tasks, n_eval, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
etas = [float(x) for x in sys.argv[6].split(",")]
lam = float(sys.argv[7]) if len(sys.argv) > 7 else 1e-3
torch.set_num_threads(1)
state = load_checkpoint(ckpt)
cfg = OmegaConf.create(state["config_yaml"])
policy, step_sizes = policy_from_checkpoint(state)
sizes = {k: v.detach() for k, v in step_sizes.as_dict(1.0).items()}
family = make_family(cfg.env.family, **cfg.env.kwargs)
tasks = family.sample(split, n_tasks, cfg.env.tasks.seed)
sampler = Sampler.from_config(family, cfg.sampler)
base = {k: v.detach() for k, v in policy.params().items()}
hp = {k[5:]: v for k, v in base.items() if k.startswith("head.")}
last = max(int(k.split(".")[1]) for k in base if k.startswith("head."))

def hidden(images, proprio, params):
    with torch.no_grad():
        f = policy.encode(images, params)
        x = torch.cat([f, proprio.to(f.dtype), params["bias_transform"].expand(f.shape[0], -1)], -1)
        for i in range(last):
            layer = policy.head[i]
            x = functional_call(layer, {n: params[f"head.{i}.{n}"] for n, _ in layer.named_parameters()}, (x,)) if list(layer.parameters()) else layer(x)
    return x

# oracle: supervised fit of head.{last} and bias_transform to the task's expert actions
expert = expert_for(family)
demo = sampler.collect(tasks, 10, ExpertActor(expert, 0.1, seed=7), seed=777)
flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in demo.states.items()}
labels = expert.act_batch(flat).reshape(demo.num_episodes, -1, demo.actions.shape[-1])
W, B = f"head.{last}.weight", f"head.{last}.bias"
oracle = []
for i in range(len(tasks)):
    rows = demo.episodes_of(i)
    img = torch.from_numpy(demo.images[rows].reshape(-1, *demo.images.shape[2:]))
    p = torch.from_numpy(demo.proprio[rows].reshape(-1, demo.proprio.shape[-1]))
    a = torch.from_numpy(labels[rows].reshape(-1, labels.shape[-1])).float()
    h = hidden(img, p, base)
    X = torch.cat([h, torch.ones(len(h), 1)], 1)
    sol = torch.linalg.solve(X.T @ X / len(X) + 1e-4 * torch.eye(X.shape[1]), X.T @ a / len(X))  # least squares
    oracle.append((sol[:-1].T.contiguous(), sol[-1]))

batch = sampler.collect(tasks, 40, PolicyActor(policy, [base] * len(tasks), deterministic=False, seed=1), seed=1)
tbs = split_by_task(policy, batch, [base] * len(tasks), cfg.algo.gamma, cfg.algo.baseline)
def flatd(w, b): return torch.cat([w.flatten(), b.flatten()])
vanilla, natural = [], {e: [] for e in etas}
cos_v, cos_n = [], []
for i, tb in enumerate(tbs):
    phi = adapt_detached(policy, base, sizes, tb)
    vanilla.append(phi)
    h = hidden(tb.images, tb.proprio, base)
    X = torch.cat([h, torch.ones(len(h), 1)], 1)
    mu = X @ torch.cat([base[W].T, base[B][None]], 0)
    noise = tb.actions - mu  # exploration noise actually taken
    g = X.T @ (noise * tb.advantages[:, None]) / len(X)
    nat = torch.linalg.solve(X.T @ X / len(X) + lam * torch.eye(X.shape[1]), g)  # natural-gradient direction (action units)
    d_or = flatd(oracle[i][0] - base[W], oracle[i][1] - base[B])
    d_v = flatd(phi[W] - base[W], phi[B] - base[B])
    d_n = flatd(nat[:-1].T, nat[-1])
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm() + 1e-12))
    cos_v.append(cos(d_v, d_or)); cos_n.append(cos(d_n, d_or))
    for e in etas:
        natural[e].append({**base, W: base[W] + e * nat[:-1].T, B: base[B] + e * nat[-1]})
print(f"cosine with the oracle's change of the output layer: vanilla {np.mean(cos_v):.3f} +- {np.std(cos_v):.3f}; natural {np.mean(cos_n):.3f} +- {np.std(cos_n):.3f}", flush=True)
eval_seed = EVAL_SEED_OFFSET
res = {"cos_vanilla": cos_v, "cos_natural": cos_n}
for name, plist in [("before", [base] * len(tasks)), ("vanilla", vanilla)] + [(f"natural eta {e}", natural[e]) for e in etas]:
    ev = sampler.collect(tasks, n_eval, PolicyActor(policy, plist, deterministic=True), seed=eval_seed)
    per = ev.per_task(ev.episode_success.astype(float)); err = ev.per_task(ev.extras["angle_error"][:, -1])
    res[name] = {"success": per.tolist(), "angle_error": err.tolist()}
    print(f"{name}: success {per.mean():.2f}, angle error {err.mean():.1f}", flush=True)
json.dump(res, open(out, "w"), indent=1)
sampler.close()
