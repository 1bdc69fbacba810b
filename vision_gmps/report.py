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


def summary_sentence(results: dict[str, AdaptationResult], num_tasks: int) -> str:
    parts = []
    for mode, result in results.items():
        before, after = result.rows[0]["success"], result.rows[-1]["success"]
        verdict = "improved" if after > before else "did not improve"
        parts.append(
            f"With {mode} step sizes, held-out success {verdict}: {before:.0%} before adaptation, "
            f"{after:.0%} after {result.rows[-1]['step']} policy-gradient step(s)."
        )
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
) -> Path:
    metrics = read_metrics(run_dir / "train_metrics.jsonl")
    curve = plot_learning_curve(metrics, run_dir / "learning_curve.png")
    lines = [
        f"# {title}",
        "",
        "## What this shows",
        summary_sentence(results, num_tasks),
        f"Meta-training used {env_episodes} environment episodes.",
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
