"""Training as a background job in the warm worker process (`core.worker`), reported through the store.

The Streamlit page only starts a job, asks for a stop, and reads progress back from the
database, so a refresh, a closed tab or another page never touches the run. A worker that
dies without saying so is noticed (its process is gone) and its run marked failed. A run is
usable as soon as its head is fit; its downloads are assembled afterwards (`downloads`).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path

from core import worker
from core.export import DOWNLOADS_ERROR_FILE, DownloadsState, downloads_state
from core.runs import data_from_project, has_model, train_and_save
from core.store import Project, RunRecord
from core.train import STAGE_EMBED, STAGE_FINETUNE, TrainConfig, TrainingStopped

ACTIVE = ("queued", "running")
LOG_FILE = "log.txt"
PROGRESS_INTERVAL = 0.5  # seconds between progress writes: live enough, cheap for SQLite

_start_lock = threading.Lock()


class JobRefused(RuntimeError):
    """A job that cannot start now; the message says why."""


def _alive(pid: int | None) -> bool:
    """True while the process exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) succeeding is all we know


def refresh(project: Project, run_id: int) -> RunRecord:
    """The run as stored, after marking it failed if its worker vanished without a word."""
    run = project.run(run_id)
    grace = time.time() - run.created < 10  # a queued run's worker may not have written its pid yet
    if run.status in ACTIVE and not _alive(run.pid) and not grace:
        log_tail = _log_tail(run.dir / LOG_FILE)
        project.update_run(run_id, status="failed",
                           error="The training process ended unexpectedly." + (f"\n\n{log_tail}" if log_tail else ""))
        run = project.run(run_id)
    return run


def _log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        path = worker.log_path()  # nothing of the run's own: what the worker said last
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def active_run(project: Project) -> RunRecord | None:
    """The run in progress, if any (at most one per project)."""
    for run in project.runs():
        if run.status in ACTIVE and (current := refresh(project, run.id)).status in ACTIVE:
            return current
    return None


def start_training(project: Project, cfg: TrainConfig) -> int:
    """Check the data, record a run and hand it to the worker; returns the run id."""
    with _start_lock:
        running = active_run(project)
        if running:
            raise JobRefused(f"Run {running.id} is still training. Stop it or wait for it to finish first.")
        data_from_project(project).check()
        run_id = project.create_run(cfg.to_dict())
        try:
            project.update_run(run_id, pid=worker.WORKER.submit("train", project, run=run_id))
        except RuntimeError as exc:
            project.update_run(run_id, status="failed", error=str(exc))
            raise
    return run_id


def prepare(project: Project) -> None:
    """Have the worker keep this project's photos embedded ahead of training (cheap to repeat)."""
    worker.WORKER.submit("watch", project)


def downloads(project: Project, run: RunRecord) -> DownloadsState | None:
    """Whether a usable run's downloads are ready, being made (asked of the worker again, in case it was
    restarted meanwhile) or failed; None for a run without a model."""
    if not has_model(run):
        return None
    state = downloads_state(run.dir)
    if state == "preparing":
        worker.WORKER.submit("assemble", project, run=run.id)
    return state


def retry_downloads(project: Project, run: RunRecord) -> None:
    """Try making the downloads again after a failure."""
    (run.dir / DOWNLOADS_ERROR_FILE).unlink(missing_ok=True)
    worker.WORKER.submit("assemble", project, run=run.id)


def stop(project: Project, run_id: int) -> None:
    """Ask the run to stop after the current batch; it keeps its best weights so far."""
    project.request_stop(run_id)


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


def run_job(project: Project, run_id: int) -> tuple[bool, object]:
    """Worker side: train the project's data with the run's settings and record the outcome, usable before its
    downloads exist. Returns whether it left a model, and the fine-tuned Keras model (None: head only)."""
    run = project.run(run_id)
    if run.stop_requested:
        project.update_run(run_id, status="stopped", error="Stopped before training started.")
        return False, None
    project.update_run(run_id, status="running", pid=os.getpid())
    try:
        metrics, model = train_and_save(data_from_project(project), TrainConfig.from_dict(run.config), run.dir,
                                        StoreListener(project, run_id), assemble=False)
        project.update_run(run_id, status="stopped" if metrics["stopped_early_by_user"] else "completed",
                           summary=metrics)
        return True, model
    except TrainingStopped as exc:
        project.update_run(run_id, status="stopped", error=str(exc))
    except Exception as exc:  # the page must show the reason, never an endless spinner
        with open(run.dir / LOG_FILE, "a") as log:
            traceback.print_exc(file=log)
        project.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
    return False, None
