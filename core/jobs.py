"""Training as a background job: a worker process that reports through the project store.

The Streamlit page only starts a job, asks for a stop, and reads progress back from the
database, so a refresh, a closed tab or another page never touches the run. A worker that
dies without saying so is noticed (its process is gone, or its pid now belongs to another
process: `core.storage.runs.worker_alive`) and its run marked failed. The database admits one
queued or running run per project, so two tabs or processes pressing Train start one run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from core.runs import data_from_project, photo_snapshot, train_and_save
from core.store import Project, RunBusy, RunRecord
from core.storage.runs import worker_alive
from core.train import STAGE_EMBED, STAGE_FINETUNE, TrainConfig, TrainingStopped

ACTIVE = ("queued", "running")
LOG_FILE = "log.txt"
SNAPSHOT_DIR = "photos"  # in the run folder while it trains: the photos as they were when it started
PROGRESS_INTERVAL = 0.5  # seconds between progress writes: live enough, cheap for SQLite


class JobRefused(RuntimeError):
    """A job that cannot start now; the message says why."""


def refresh(project: Project, run_id: int) -> RunRecord:
    """The run as stored, after marking it failed if its worker vanished without a word."""
    run = project.run(run_id)
    grace = time.time() - run.created < 10  # a queued run's worker may not have written its pid yet
    if run.status in ACTIVE and not worker_alive(run.pid, run.worker_started) and not grace:
        log_tail = _log_tail(run.dir / LOG_FILE)
        project.update_run(run_id, status="failed",
                           error="The training process ended unexpectedly." + (f"\n\n{log_tail}" if log_tail else ""))
        run = project.run(run_id)
    return run


def _log_tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def active_run(project: Project) -> RunRecord | None:
    """The run in progress, if any (at most one per project)."""
    for run in project.runs():
        if run.status in ACTIVE and (current := refresh(project, run.id)).status in ACTIVE:
            return current
    return None


def start_training(project: Project, cfg: TrainConfig) -> int:
    """Check the data, record a run and start its worker process; returns the run id."""
    running = active_run(project)  # marks a dead worker's run failed, so it no longer holds the project
    if running:
        raise JobRefused(f"Run {running.id} is still training. Stop it or wait for it to finish first.")
    data_from_project(project).check()
    try:
        run_id = project.create_run(cfg.to_dict())  # the database admits one active run, whoever asks
    except RunBusy as exc:
        raise JobRefused(str(exc)) from None
    try:
        with open(project.run_dir(run_id) / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "core.jobs", str(project.meta_dir), str(project.images_dir), str(run_id)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=Path(__file__).resolve().parents[1], start_new_session=True,  # outlives the page and the server
            )
    except OSError as exc:  # the run must not hold the project while nothing trains it
        project.update_run(run_id, status="failed", error=f"The training process could not start: {exc}")
        raise JobRefused(f"The training process could not start: {exc}") from exc
    project.update_run(run_id, pid=process.pid)
    threading.Thread(target=process.wait, daemon=True).start()  # reap it, so a finished worker is no zombie
    return run_id


def stop(project: Project, run_id: int) -> None:
    """Ask the run to stop after the current batch; it keeps its best weights so far."""
    project.request_stop(run_id)
    refresh(project, run_id)  # a worker already gone cannot stop by itself: its run is marked failed now


class StoreListener:
    """Writes a run's progress and per-epoch metrics to the store; reads stop requests from it."""

    def __init__(self, project: Project, run_id: int):
        self.project, self.run_id = project, run_id
        self.stage, self.stage_started = "", time.time()
        self.stage_info: dict = {}
        self._last_write = self._last_check = 0.0
        self._stop = False

    def on_stage(self, stage: str, info: dict) -> None:
        self.stage, self.stage_started, self.stage_info = stage, time.time(), info
        self._write({"epoch": 0, "epochs": info.get("epochs", 1), "batch": 0, "batches": 0, "logs": {}}, force=True)

    def on_batch(self, stage: str, epoch: int, batch: int, batches: int, logs: dict) -> None:
        epochs = self.stage_info.get("epochs", 1)
        self._write({"epoch": epoch, "epochs": epochs, "batch": batch, "batches": batches, "logs": logs})

    def on_epoch(self, stage: str, epoch: int, epochs: int, logs: dict) -> None:
        self.project.add_epoch(self.run_id, stage, epoch, logs)
        self._write({"epoch": epoch, "epochs": epochs, "batch": 0, "batches": 0, "logs": logs}, force=True)

    def should_stop(self) -> bool:
        now = time.time()
        if not self._stop and now - self._last_check >= PROGRESS_INTERVAL:
            self._last_check = now
            self._stop = self.project.run(self.run_id).stop_requested
        return self._stop

    def _write(self, state: dict, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write = now
        fraction = stage_fraction(self.stage, state)
        elapsed = now - self.stage_started
        eta = elapsed / fraction * (1 - fraction) if fraction > 0.02 else None
        self.project.update_run(self.run_id, progress={
            "stage": self.stage, "fraction": fraction, "stage_elapsed": elapsed, "eta_seconds": eta,
            "finetune_planned": self.stage_info.get("blocks", 0) > 0 or self.stage == STAGE_FINETUNE, **state})


def stage_fraction(stage: str, state: dict) -> float:
    """How far through the current stage the run is, 0..1."""
    if stage == STAGE_EMBED:
        return state["batch"] / state["batches"] if state.get("batches") else 0.0
    epochs = max(1, state.get("epochs") or 1)
    within = state["batch"] / state["batches"] if state.get("batches") else 0.0
    done = state.get("epoch", 0) - (1 if state.get("batches") and state.get("batch") else 0)
    return min(1.0, (max(done, 0) + within) / epochs)


def run_job(project: Project, run_id: int) -> None:
    """Worker side: train the project's data with the run's settings and record the outcome."""
    run = project.run(run_id)
    project.update_run(run_id, status="running", pid=os.getpid())
    try:
        with photo_snapshot(data_from_project(project), run.dir / SNAPSHOT_DIR) as data:
            metrics = train_and_save(data, TrainConfig.from_dict(run.config), run.dir, StoreListener(project, run_id))
        project.update_run(run_id, status="stopped" if metrics["stopped_early_by_user"] else "completed",
                           summary=metrics)
    except TrainingStopped as exc:
        project.update_run(run_id, status="stopped", error=str(exc))
    except Exception as exc:  # the page must show the reason, never an endless spinner
        traceback.print_exc()
        project.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    meta_dir, images_dir, run_arg = sys.argv[1:4]
    run_job(Project(Path(meta_dir), Path(images_dir)), int(run_arg))
