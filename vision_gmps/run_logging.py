"""Metrics to ``metrics.jsonl`` in the run folder and to wandb (offline unless asked otherwise)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("vision_gmps")
WANDB_MODES = ("offline", "online", "disabled")


class RunLogger:
    def __init__(self, run_dir: Path, cfg: DictConfig, job_type: str) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = run_dir / f"{job_type}_metrics.jsonl"
        self.wandb = None
        mode = cfg.wandb.mode
        if mode not in WANDB_MODES:
            raise ValueError(f"wandb.mode={mode!r} is not one of {WANDB_MODES}")
        if mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            self.wandb = wandb.init(
                project=cfg.wandb.project,
                entity=cfg.wandb.entity,
                mode=mode,
                dir=str(run_dir),
                name=f"{run_dir.name}-{job_type}",
                job_type=job_type,
                config=OmegaConf.to_container(cfg, resolve=True),
                reinit="finish_previous",
            )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        clean = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in metrics.items()}
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.wandb is not None:
            self.wandb.log(clean, step=step)

    def drop_after(self, step: int) -> None:
        """On resume: forget metrics logged after the checkpoint's iteration, so no step appears twice."""
        if not self.metrics_path.is_file():
            return
        lines = self.metrics_path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            log.info("dropping %d metric lines after iteration %d from %s", len(lines) - len(kept), step, self.metrics_path)
            self.metrics_path.write_text("".join(kept))

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        if self.wandb is not None and rows:
            import wandb

            columns = list(rows[0])
            self.wandb.log({name: wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])})

    def log_video(self, name: str, path: Path) -> None:
        """Log an MP4 we already wrote (passing a file avoids wandb's moviepy dependency)."""
        if self.wandb is not None:
            import wandb

            self.wandb.log({name: wandb.Video(str(path), format="mp4")})

    def log_artifact(self, path: Path, kind: str = "model") -> None:
        if self.wandb is not None:
            import wandb

            artifact = wandb.Artifact(f"{self.run_dir.name}-{path.stem}", type=kind)
            artifact.add_file(str(path))
            self.wandb.log_artifact(artifact)

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


class NullLogger:
    """The logger of ranks other than 0 in a data-parallel job: rank 0 writes the metrics and wandb."""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def drop_after(self, step: int) -> None:
        pass

    def log_artifact(self, path: Path, kind: str = "model") -> None:
        pass

    def finish(self) -> None:
        pass
