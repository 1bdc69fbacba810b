"""A run report a person can read: learning curve, adaptation table with intervals, the control, video, and what it shows.

Every success rate carries its 95% interval (``vision_gmps.evaluation``); the reward-shuffled
control sits next to the real adaptation; the text says in plain words what the numbers do
and do not show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vision_gmps.adaptation import AdaptationResult  # noqa: E402
from vision_gmps.evaluation import CONTROL, format_interval, protocol_rows, with_unit  # noqa: E402

TRAIN_CURVES = {
    "pre/success": "train tasks, before adaptation (stochastic)",
    "post/success": "train tasks, after adaptation (stochastic)",
}
EVAL_CURVES = {
    "eval/success_pre": "validation tasks, before adaptation",
    "eval/success_post": "validation tasks, after {k} step",
}


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def eval_points(metrics: list[dict], key: str) -> list[tuple[int, float, float, float]]:
    """(episodes, success, Wilson low, Wilson high) of each training-time evaluation."""
    return [(m["env_episodes"], m[key], m.get(f"{key}_low", m[key]), m.get(f"{key}_high", m[key])) for m in metrics if key in m]


def plot_learning_curve(metrics: list[dict], out: Path, inner_steps: int = 1) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=120)
    for key, label in TRAIN_CURVES.items():
        points = [(m["env_episodes"], m[key]) for m in metrics if key in m]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, lw=1, alpha=0.6, label=label)
    for key, label in EVAL_CURVES.items():
        points = eval_points(metrics, key)
        if points:
            xs, ys, lo, hi = zip(*points)
            err = [[y - low for y, low in zip(ys, lo)], [high - y for y, high in zip(ys, hi)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=3, label=label.format(k=inner_steps) + " (95% Wilson)")
    ax.set_xlabel("meta-training environment episodes")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


STEP_LABELS = {
    "experts_training": "training the RL experts", "experts_eval": "evaluating the RL experts",
    "demo_files": "recorded demonstrations", "expert_episodes": "expert episodes", "dagger": "DAgger rollouts", "meta_pre": "pre-update meta-training rollouts",
    "meta_post": "post-update meta-training rollouts", "eval": "validation checks during training",
}


def step_budget_text(metrics: list[dict]) -> str:
    """The run's full environment-step budget, experts included (the report's first paragraph)."""
    last = next((m for m in reversed(metrics) if "steps/total" in m), None)
    if last is None:
        return "This run's metrics hold no environment-step counts (trained before they were recorded)."
    parts = [f"{last[f'steps/{k}']:,} {label}" for k, label in STEP_LABELS.items() if last.get(f"steps/{k}")]
    padding = last.get("steps/sampler_padding", 0)
    return (f"**Environment-step budget: {last['steps/total']:,} steps** up to the last training iteration: "
            + ", ".join(parts) + "." + (f" The sampler also simulated {padding:,} padding steps that it dropped "
                                        "(filling its last wave of envs); they are not in the total." if padding else "")
            + " The held-out adaptation below adds its own rollouts (the table's last column, in episodes).")


STEP_NAMES = {"learned": "learned step sizes", "fixed": "fixed step sizes",
              "natural": "natural-gradient steps on the output layer"}


def step_name(mode: str) -> str:
    """How the report names an adaptation mode (``adapt.step_size``)."""
    return STEP_NAMES.get(mode, f"{mode} step sizes")


def adaptation_table(results: dict[str, AdaptationResult], units: Mapping[str, str] | None = None) -> str:
    extra = [k for k in results[next(iter(results))].rows[0] if k.startswith("final_")]
    header = ["run", "step", "success [95% Wilson]", "[95% bootstrap over tasks]", "improved / same / worse vs step 0",
              "gain vs step 0 [95% paired bootstrap]", *[with_unit(k, units) for k in extra], "adaptation episodes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode, result in results.items():
        name = "reward-shuffled control" if mode == CONTROL else f"adaptation ({step_name(mode)})"
        for row in protocol_rows(result.rows, result.per_task_success):
            cells = [name, str(row["step"]), format_interval(row["success"], (row["success_wilson_low"], row["success_wilson_high"])),
                     f"[{row['success_boot_low']:.2f}, {row['success_boot_high']:.2f}]",
                     f"{row['improved']} / {row['same']} / {row['worse']}",
                     format_interval(row["gain"], (row["gain_low"], row["gain_high"])),
                     *[f"{row[k]:.3f}" for k in extra], str(row["episodes"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def final_metric_text(results: dict[str, AdaptationResult], units: Mapping[str, str] | None = None) -> list[str]:
    """The family's final distance or angle error, before -> after, with a paired interval, beside the control's.

    Success is a threshold; a run can move every block or door closer to its goal without crossing it,
    and the shuffled control tells whether that movement comes from each task's own reward.
    """
    real_modes = [m for m in results if m != CONTROL]
    first = results[real_modes[0]]
    signed = lambda v, lo, hi: f"{v:+.3g} [{lo:+.3g}, {hi:+.3g}]"  # noqa: E731
    if not first.per_task_final:
        return []
    rows = {mode: protocol_rows(r.rows, r.per_task_success, per_task_final=r.per_task_final)
            for mode, r in results.items()}
    r0, rk = rows[real_modes[0]][0], rows[real_modes[0]][-1]
    parts = []
    for key in first.per_task_final:
        name, unit = key.replace("_", " "), f" {units[key]}" if units and units.get(key) else ""
        change = f"change_final_{key}"
        text = (f"The final {name} went from {r0[f'final_{key}']:.3g}{unit} to {rk[f'final_{key}']:.3g}{unit} after "
                f"{rk['step']} steps, a paired change of {signed(rk[change], rk[change + '_low'], rk[change + '_high'])}{unit} "
                "per task")
        if CONTROL in rows:
            ck = rows[CONTROL][-1]
            text += f"; with the shuffled reward {signed(ck[change], ck[change + '_low'], ck[change + '_high'])}{unit}"
        parts.append(text + ".")
    return parts


def summary_text(results: dict[str, AdaptationResult], inner_steps: int = 1, units: Mapping[str, str] | None = None) -> str:
    """Plain-words reading of the table: what changed, whether it beats the control, what it does not show."""
    real_modes = [m for m in results if m != CONTROL]
    first = results[real_modes[0]]
    n_tasks = len(first.first_eval.tasks)
    starts = first.first_eval.num_episodes // n_tasks
    split = first.first_eval.tasks[0].split  # test for the tables; valid when choosing settings
    parts = []
    for mode in real_modes:
        rows = protocol_rows(results[mode].rows, results[mode].per_task_success)
        r0, rk = rows[0], rows[-1]
        steps = ", ".join(f"{r['success']:.2f} after {r['step']}" for r in rows[1:])
        parts.append(
            f"With {step_name(mode)}, held-out success was {format_interval(r0['success'], (r0['success_wilson_low'], r0['success_wilson_high']))} "
            f"before adaptation and {steps} step(s); after {rk['step']} steps "
            f"{rk['improved']} tasks improved, {rk['same']} stayed and {rk['worse']} got worse, a mean gain of "
            f"{format_interval(rk['gain'], (rk['gain_low'], rk['gain_high']))}."
        )
        rates = [r["success"] for r in rows]
        best = max(range(len(rates)), key=rates.__getitem__)
        if 0 < best < len(rates) - 1 and rates[-1] < rates[best]:
            parts.append(f"Success peaks after {best} step(s): the policy was meta-trained for {inner_steps} inner step(s) "
                         "(algo.inner_steps), so further steps of the same size can overshoot.")
    if CONTROL in results:
        real = protocol_rows(first.rows, first.per_task_success)[-1]
        ctrl = protocol_rows(results[CONTROL].rows, results[CONTROL].per_task_success)[-1]
        parts.append(
            f"The reward-shuffled control (the same {ctrl['step']} steps, each task adapted on another task's rewards) "
            f"gained {format_interval(ctrl['gain'], (ctrl['gain_low'], ctrl['gain_high']))}, against "
            f"{format_interval(real['gain'], (real['gain_low'], real['gain_high']))} with each task's own reward."
        )
        if real["gain_low"] > ctrl["gain_high"]:
            parts.append("The two gain intervals do not overlap: the improvement comes from the task's own reward, "
                         "not from taking policy-gradient steps as such.")
        elif real["gain"] <= 0:
            parts.append("Adaptation did not raise held-out success in this run, so there is no gain to credit to "
                         "the task's own reward; the control is shown for comparison only.")
        elif real["gain"] > ctrl["gain"]:
            parts.append("The real gain is larger than the control's, but the intervals overlap: at this number of tasks "
                         "the run does not show that the gain is adaptation rather than the steps themselves.")
        else:
            parts.append("The control gained as much as the real adaptation: this run gives no evidence that the "
                         "policy adapts to the hidden goal from reward.")
    parts += final_metric_text(results, units)
    parts.append(
        f"Every rate is over {n_tasks} held-out ({split}-split) tasks x {starts} evaluation start(s) "
        f"({n_tasks * starts} deterministic episodes, one task = {1 / n_tasks:.0%} of the bootstrap). "
        "The Wilson interval treats the episodes as independent; the starts of one task are correlated, so the "
        "bootstrap over tasks is the more honest of the two. What the run does not show: variation between "
        "training seeds (this is one seed; benchmarks/adaptation.md has the seed tables), and settings in "
        "configs/experiment were chosen on earlier runs that looked at the test split (the learning curve below "
        "uses the separate validation split)."
    )
    return " ".join(parts)


def write_report(
    run_dir: Path,
    title: str,
    results: dict[str, AdaptationResult],
    env_episodes: int,
    video: Path | None,
    config_summary: str,
    inner_steps: int = 1,
    demo_episodes: int = 0,
    sheet: Path | None = None,
    units: Mapping[str, str] | None = None,
) -> Path:
    """``units``: the family's ``step_metric_units``, for the final distance or angle columns and sentence."""
    metrics = read_metrics(run_dir / "train_metrics.jsonl")
    curve = plot_learning_curve(metrics, run_dir / "learning_curve.png", inner_steps)
    points = eval_points(metrics, "eval/success_post")
    pre = {e: (s, lo, hi) for e, s, lo, hi in eval_points(metrics, "eval/success_pre")}
    lines = [
        f"# {title}",
        "",
        step_budget_text(metrics),
        "",
        "## What this shows",
        summary_text(results, inner_steps, units),
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
        f"Held-out success on the **validation split** (never the test split) before and after {inner_steps} "
        f"step(s), measured during meta-training ({len(points)} points; 95% Wilson intervals):",
        "",
        "| meta-training episodes | before adaptation | after adaptation |",
        "|---|---|---|",
        *[f"| {e} | {format_interval(*pre[e][:1], pre[e][1:]) if e in pre else '-'} | {format_interval(s, (lo, hi))} |"
          for e, s, lo, hi in points],
        "",
        "## Adaptation on held-out test tasks (reward only, no expert)",
        adaptation_table(results, units),
        "",
    ]
    if video is not None:
        lines += ["## Video", f"Held-out task 0 before (left) and after (right) adaptation, filmed by a viewer camera "
                  f"with the hidden goal drawn for the viewer only (the policy never sees it): "
                  f"[{video.name}]({video.relative_to(run_dir)})", ""]
    if sheet is not None and sheet.is_file():
        lines += ["## Held-out tasks after adaptation", f"![contact sheet]({sheet.relative_to(run_dir)})", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return out
