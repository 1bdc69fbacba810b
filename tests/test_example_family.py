"""The example outside family (examples/reach_family, installed by `make test`) end to end through
its entry points: `vgmps collect`, `train` from the recorded demos and `adapt`, in CI size; it passes
check_family; and our packages never mention it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

try:
    import vgmps_reach
except ImportError:  # a failure, not a skip: `make test` installs it, and a skip would hide a broken install
    pytest.fail("the example family is not installed: run `make test` or pip install -e examples/reach_family",
                pytrace=False)

from demos.scripted import expert_for  # noqa: E402
from robot_envs import available_families, make_family  # noqa: E402
from robot_envs.testing import check_family  # noqa: E402
from vision_gmps.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_ENV = ["env=reach", "env.kwargs.image_size=[16,16]", "env.kwargs.horizon=8", "env.tasks.train=2"]
TINY_TRAIN = [
    *TINY_ENV, "wandb.mode=disabled", "torch_threads=1", "policy.conv_channels=[4,4]", "policy.conv_strides=[2,1]",
    "policy.hidden_sizes=[16]", "algo.pretrain_steps=2", "algo.rollouts_per_task=2", "algo.outer_steps=2",
    "algo.dagger.rollouts_per_task=1", "train.iterations=1", "train.eval_every=0", "sampler.num_envs=2",
]


@pytest.fixture(autouse=True)
def example_configs(monkeypatch):
    """The example ships its configs (env=reach, +experiment=reach_cpu); users put them on VGMPS_CONFIG_PATH."""
    monkeypatch.setenv("VGMPS_CONFIG_PATH", str(vgmps_reach.CONFIG_DIR))


def test_entry_points_register_the_family_and_its_expert():
    assert available_families()["reach"] == "vgmps_reach.family:ReachFamily"
    family = make_family("reach", image_size=(16, 16), horizon=6)
    assert type(expert_for(family)).__name__ == "ReachExpert" and expert_for(family).max_delta == family.max_delta


def test_the_example_passes_check_family():
    family = make_family("reach", image_size=(16, 16), horizon=6)
    check_family(family, expert=expert_for(family))


def test_collect_train_adapt_through_the_cli(tmp_path):
    demos = tmp_path / "reach.hdf5"
    assert main(["collect", *TINY_ENV, "num_tasks=2", "demos_per_task=2", f"output={demos}", "progress=false"]) == 0
    assert main(["demos", "replay", str(demos), "--demo", "demo_0"]) == 0  # exact state restore, from the contract
    run = tmp_path / "run"
    assert main(["train", *TINY_TRAIN, "algo.expert.source=demos", f"algo.expert.demo_files=[{demos}]",
                 "algo.dagger.enabled=false", f"run_dir={run}"]) == 0
    metrics = [json.loads(line) for line in (run / "train_metrics.jsonl").read_text().splitlines()]
    assert "pre/final_distance" in metrics[-1]  # the family's declared step metric is logged
    assert main(["adapt", "wandb.mode=disabled", f"adapt.checkpoint={run / 'checkpoints' / 'last.pt'}",
                 "adapt.num_tasks=2", "adapt.steps=1", "adapt.rollouts_per_task=2", "sampler.num_envs=2",
                 f"run_dir={tmp_path / 'adapt'}"]) == 0
    rows = json.loads((tmp_path / "adapt" / "adapt_results.json").read_text())
    assert [r["step"] for r in rows] == [0, 1] and all(0 <= r["final_distance"] < 0.5 for r in rows)


def test_our_packages_never_mention_the_example():
    pattern = re.compile(r"vgmps_reach|ReachFamily|ReachExpert|reach_family")
    hits = [str(p.relative_to(REPO)) for folder in ("vision_gmps", "robot_envs", "demos")
            for p in (REPO / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert not hits, f"our package names the example family: {hits}"
