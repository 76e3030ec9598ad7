"""Trained runs for tests and benchmarks: two classes of synthetic photos, trained as the app trains them."""

from __future__ import annotations

from pathlib import Path

from core.jobs.pipeline import data_from_folders, data_from_project, train_and_save
from core.jobs.worker import StoreListener
from core.model.train import TrainConfig
from core.store.project import Project
from tests.photos import write_image_folder


def two_class_folders(root: Path, train: int = 16, val: int = 6) -> Path:
    """train/ and val/ folders of stripes and blobs, which a frozen backbone tells apart easily."""
    write_image_folder(root / "train", {"stripes": train, "blobs": train})
    write_image_folder(root / "val", {"stripes": val, "blobs": val}, offset=100)
    return root


def folder_run(folders: Path, run_dir: Path, cfg: TrainConfig | None = None) -> Path:
    """Train on `folders`' train/ and val/ as `python -m core train` does: the run folder with its downloads."""
    train_and_save(data_from_folders(folders / "train", folders / "val"), cfg or TrainConfig(), run_dir)
    return run_dir


def finished_run(project: Project, cfg: TrainConfig | None = None, *, assemble: bool = True,
                 epochs: bool = False) -> int:
    """A completed run made in this process (no worker): train, evaluate, save (with its downloads when
    `assemble`), record; with `epochs`, its stages and epochs go into the store as the worker writes them."""
    cfg = cfg or TrainConfig()
    run_id = project.create_run(cfg.to_dict())
    listener = StoreListener(project, run_id) if epochs else None
    metrics, _ = train_and_save(data_from_project(project), cfg, project.run_dir(run_id), listener, assemble=assemble)
    project.update_run(run_id, status="completed", summary=metrics)
    return run_id
