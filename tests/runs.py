"""Finished runs for tests and benchmarks, with the head.npz a head-only run leaves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.serving.predict import Classifier
from core.model.head import HEAD_FILE
from core.jobs.pipeline import data_from_project, train_and_save
from core.store.project import Project
from core.model.train import TrainConfig


def write_head(run_dir: Path) -> None:
    """head.npz from the trained model's Dense layer, as head-only training writes it (kept if already there)."""
    if (Path(run_dir) / HEAD_FILE).exists():
        return
    kernel, bias = Classifier.load(run_dir).model.get_layer("predictions").get_weights()
    np.savez(Path(run_dir) / HEAD_FILE, kernel=kernel.astype(np.float32), bias=bias.astype(np.float32))


def finished_run(project: Project, cfg: TrainConfig | None = None) -> Path:
    """Train the project's photos as the app does, mark the run completed, and give it a head.npz."""
    cfg = cfg or TrainConfig()
    run_id = project.create_run(cfg.to_dict())
    metrics, _ = train_and_save(data_from_project(project), cfg, project.run_dir(run_id))
    project.update_run(run_id, status="completed", summary=metrics)
    write_head(project.run_dir(run_id))
    return project.run_dir(run_id)
