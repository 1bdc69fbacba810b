"""A run report a person can read: learning curve, adaptation table, video, and what it shows."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vision_gmps.adaptation import AdaptationResult  # noqa: E402

CURVES = {
    "pre/success": "train tasks, before adaptation (stochastic)",
    "post/success": "train tasks, after adaptation (stochastic)",
    "eval/success_pre": "held-out tasks, before adaptation",
    "eval/success_post": "held-out tasks, after 1 step",
}


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_learning_curve(metrics: list[dict], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=120)
    for key, label in CURVES.items():
        points = [(m["env_episodes"], m[key]) for m in metrics if key in m]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if key.startswith("eval") else None, ms=3, label=label)
    ax.set_xlabel("meta-training environment episodes")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def adaptation_table(results: dict[str, AdaptationResult]) -> str:
    extra = [k for k in results[next(iter(results))].rows[0] if k.startswith("final_")]
    header = ["step sizes", "step", "success", "return", *extra, "adaptation episodes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode, result in results.items():
        for row in result.rows:
            cells = [mode, str(row["step"]), f"{row['success']:.2f}", f"{row['return']:.2f}",
                     *[f"{row[k]:.3f}" for k in extra], str(row["episodes"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_sentence(results: dict[str, AdaptationResult], num_tasks: int, inner_steps: int = 1) -> str:
    parts = []
    for mode, result in results.items():
        rates = [row["success"] for row in result.rows]
        steps = ", ".join(f"{r:.0%} after {i} step{'s' if i > 1 else ''}" for i, r in enumerate(rates) if i > 0)
        parts.append(f"With {mode} step sizes, held-out success was {rates[0]:.0%} before adaptation, {steps}.")
        best = max(range(len(rates)), key=rates.__getitem__)
        if best > 0 and best < len(rates) - 1 and rates[-1] < rates[best]:
            parts.append(
                f"Success peaks after {best} step{'s' if best > 1 else ''} and falls afterwards: the policy was "
                f"meta-trained for {inner_steps} inner step{'s' if inner_steps > 1 else ''} (algo.inner_steps), so further "
                f"steps of the same size overshoot."
            )
        elif rates[-1] <= rates[0]:
            parts.append("Adaptation did not help here.")
    parts.append(
        f"Each number is over {num_tasks} held-out tasks with one deterministic evaluation episode each, "
        f"so one task is {1 / num_tasks:.0%}; differences of one or two tasks are within noise."
    )
    return " ".join(parts)


def write_report(
    run_dir: Path,
    title: str,
    results: dict[str, AdaptationResult],
    num_tasks: int,
    env_episodes: int,
    video: Path | None,
    config_summary: str,
    inner_steps: int = 1,
    demo_episodes: int = 0,
) -> Path:
    metrics = read_metrics(run_dir / "train_metrics.jsonl")
    curve = plot_learning_curve(metrics, run_dir / "learning_curve.png")
    lines = [
        f"# {title}",
        "",
        "## What this shows",
        summary_sentence(results, num_tasks, inner_steps),
        f"Meta-training used {env_episodes} environment episodes"
        + (f" ({demo_episodes} of them the scripted demonstrations it learned from)." if demo_episodes else "."),
        "",
        "## Configuration",
        "```",
        config_summary.strip(),
        "```",
        "",
        "## Learning curve",
        f"![learning curve]({curve.name})",
        "",
        "## Adaptation on held-out tasks (reward only, no expert)",
        adaptation_table(results),
        "",
    ]
    if video is not None:
        lines += ["## Video", f"One held-out task, before (left) and after (right) adaptation: [{video.name}]({video.relative_to(run_dir)})", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return out
