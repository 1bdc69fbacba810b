"""The validation check overlapped with the next iteration's outer steps, against the check in line.

Trains push_cpu (the main job's settings: 10 tasks x 40 rollouts, 30 second-order outer steps,
the ``parallel`` sampler) for ``--iterations`` iterations with a check after each, once with
``train.overlap_eval=false`` and once with ``true``, in alternating order over ``--rounds``
rounds so load changes hit both alike, and checks that the two runs wrote the same rows.

    python benchmarks/overlap_eval.py --rounds 1 --json overlap.json     # ~12 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vision_gmps.config import load_config
from vision_gmps.train import train


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "train_metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def run(overlap: bool, iterations: int, eval_tasks: int, out: Path) -> float:
    cfg = load_config(["+experiment=push_cpu", "wandb.mode=disabled", f"train.iterations={iterations}",
                       "train.eval_every=1", f"train.eval_tasks={eval_tasks}", f"train.overlap_eval={str(overlap).lower()}",
                       f"run_dir={out}"])
    start = time.perf_counter()
    train(cfg)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--eval-tasks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"inline": [], "overlap": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("inline", "overlap") if r % 2 == 0 else ("overlap", "inline")
            for name in order:
                times[name].append(run(name == "overlap", args.iterations, args.eval_tasks, Path(tmp) / f"{name}{r}"))
                print(f"round {r} {name}: {times[name][-1]:.1f} s", flush=True)
            assert _rows(Path(tmp) / f"inline{r}") == _rows(Path(tmp) / f"overlap{r}"), "the overlap changed the rows"
    ratios = [a / b for a, b in zip(times["inline"], times["overlap"])]
    print(f"wall time inline / overlapped per round: {', '.join(f'{x:.2f}' for x in ratios)}")
    if args.json:
        args.json.write_text(json.dumps({"times_s": times, "ratios": ratios, "iterations": args.iterations,
                                         "eval_tasks": args.eval_tasks}))


if __name__ == "__main__":
    main()
