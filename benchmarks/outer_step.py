"""Time of one GMPS outer step at push_cpu sizes: how the rollout images reach the encoder.

A meta-iteration's 30 second-order outer steps all re-encode the same pre-update rollouts
(10 tasks x 40 episodes x 30 steps = 12,000 images at 24x32). Three ways, interleaved in rounds
on the same synthetic batch (the cost depends only on the shapes):

* ``per step``: the uint8 images converted to the encoder's float input at every outer step;
* ``once, one call``: converted once per iteration (``vision_gmps.meta.batch_pixels``, since
  2026-12-06), all 12,000 through the conv encoder in one call;
* ``once, chunks``: converted once, encoded in chunks of ``policy.ENCODE_CHUNK`` images (the
  default since 2026-12-07), which keeps each conv call's activations in the CPU caches.

Losses are asserted equal (bit for bit between the first two; to float rounding for chunks).

    python benchmarks/outer_step.py                 # push_cpu sizes, torch's default threads
    python benchmarks/outer_step.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vision_gmps.policy as policy_module
from vision_gmps.inner import TaskBatch
from vision_gmps.meta import batch_pixels, bc_loss, gmps_loss
from vision_gmps.policy import ConvGaussianPolicy, PolicySpec, StepSizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--frames-per-task", type=int, default=1200, help="rollouts x horizon (push_cpu: 40 x 30)")
    ap.add_argument("--expert-batch", type=int, default=64, help="algo.expert_batch_size")
    ap.add_argument("--image", type=int, nargs=2, default=[24, 32])
    ap.add_argument("--steps", type=int, default=10, help="outer steps per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--chunk", type=int, default=policy_module.ENCODE_CHUNK, help="images per encoder call for 'chunks'")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.image
    # push_cpu's policy (configs/policy/conv.yaml + configs/experiment/push_cpu.yaml); push: 5-d proprio, 3-d action.
    spec = PolicySpec(image_shape=(h, w, 3), proprio_dim=5, action_dim=3, conv_strides=(2, 2, 1),
                      init_log_std=-1.0, adapt=("head.4", "bias_transform"))
    policy = ConvGaussianPolicy(spec)
    step_sizes = StepSizes(policy, 0.5)
    opt = torch.optim.Adam([*policy.parameters(), *step_sizes.parameters()], lr=1e-3)

    def task_batch(m: int) -> TaskBatch:
        return TaskBatch(images=torch.randint(0, 256, (m, h, w, 3), dtype=torch.uint8), proprio=torch.randn(m, 5),
                         actions=torch.randn(m, 3), advantages=torch.randn(m), logp_old=torch.zeros(m))

    pre = [task_batch(args.frames_per_task) for _ in range(args.tasks)]
    experts = [(torch.randint(0, 256, (args.expert_batch, h, w, 3), dtype=torch.uint8),
                torch.randn(args.expert_batch, 5), torch.randn(args.expert_batch, 3)) for _ in range(args.tasks)]

    def loss(pixels):  # the trainer's GMPS loss with the pre-update anchor (algo.pre_update_bc_weight 1)
        params = policy.params()
        return gmps_loss(policy, params, step_sizes.as_dict(), pre, experts, pre_pixels=pixels) + bc_loss(
            policy, params, experts)

    variants = {"per step": (False, 0), "once, one call": (True, 0), f"once, chunks of {args.chunk}": (True, args.chunk)}

    def measure(once: bool, chunk: int) -> float:
        policy_module.ENCODE_CHUNK = chunk
        start = time.perf_counter()
        pixels = batch_pixels(policy, pre) if once else None  # counted: the trainer pays it once per iteration
        for _ in range(args.steps):
            opt.zero_grad(set_to_none=True)
            loss(pixels).backward()
            opt.step()
        return (time.perf_counter() - start) / args.steps

    losses = {}
    for name, (once, chunk) in variants.items():
        policy_module.ENCODE_CHUNK = chunk
        losses[name] = loss(batch_pixels(policy, pre) if once else None).detach()
    first, second, third = losses.values()
    assert torch.equal(first, second) and torch.allclose(second, third, rtol=1e-5), losses

    measure(True, args.chunk)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (once, chunk) in variants.items():
            times[name].append(measure(once, chunk))
    print(f"{args.tasks} tasks x {args.frames_per_task} images {h}x{w}, expert batch {args.expert_batch}, "
          f"threads {torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps")
    print("| images reach the encoder | s per outer step, median | best |\n|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} |")
    names = list(variants)
    for a, b in zip(names, names[1:]):
        ratios = [x / y for x, y in zip(times[a], times[b])]
        print(f"{b} against {a}: {' '.join(f'{r:.2f}x' for r in ratios)} per round (median {statistics.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
