"""Training as a background job in the warm worker process (`core.jobs.worker`), reported through the store.

The Streamlit page only starts a job, asks for a stop, and reads progress back from the
database, so a refresh, a closed tab or another page never touches the run. A worker that
dies without saying so is noticed (its process is gone, or its pid now belongs to another
process: `core.store.runs.worker_alive`) and its run marked failed. The database admits one
queued or running run per project, so two tabs or processes pressing Train start one run. A run
is usable as soon as its head is fit; its downloads are assembled afterwards (`downloads`).
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path

from core.serving import heatmap

from core.jobs import worker
from core.serving.export import DOWNLOADS_ERROR_FILE, DownloadsState, downloads_state
from core.serving.formats import FORMATS_FILE, REQUEST_FILE, formats_state
from core.jobs.pipeline import data_from_project, has_model, photo_snapshot, train_and_save
from core.store.project import Project, RunBusy, RunRecord
from core.store.runs import worker_alive
from core.model.train import STAGE_EMBED, STAGE_FINETUNE, TrainConfig, TrainingStopped

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
    if run.status not in ACTIVE:  # a worker killed mid-run left its photo links behind (the photos stay)
        shutil.rmtree(run.dir / SNAPSHOT_DIR, ignore_errors=True)
    return run


def _log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        path = worker.log_path()  # nothing of the run's own: what the worker said last
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def active_run(project: Project) -> RunRecord | None:
    """The run in progress, if any (at most one per project)."""
    found = None
    for run in project.runs():
        if run.status in ACTIVE or (run.dir / SNAPSHOT_DIR).exists():
            if (current := refresh(project, run.id)).status in ACTIVE:
                found = current
    return found


def start_training(project: Project, cfg: TrainConfig) -> int:
    """Check the data, record a run and hand it to the warm worker; returns the run id."""
    running = active_run(project)  # marks a dead worker's run failed, so it no longer holds the project
    if running:
        raise JobRefused(f"Run {running.id} is still training. Stop it or wait for it to finish first.")
    data_from_project(project).check()
    try:
        run_id = project.create_run(cfg.to_dict())  # the database admits one active run, whoever asks
    except RunBusy as exc:
        raise JobRefused(str(exc)) from None
    try:
        project.update_run(run_id, pid=worker.WORKER.submit("train", project, run=run_id))
    except (OSError, RuntimeError) as exc:  # the run must not hold the project while nothing trains it
        project.update_run(run_id, status="failed", error=f"The training process could not start: {exc}")
        raise JobRefused(f"The training process could not start: {exc}") from exc
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


def more_formats(project: Project, run: RunRecord) -> str:
    """Whether the full-integer TFLite and ONNX files are checked and ready, being made, or not asked for."""
    state = formats_state(run.dir)
    if state == "preparing":
        worker.WORKER.submit("formats", project, run=run.id)
    return state


def request_formats(project: Project, run: RunRecord) -> None:
    """Have the worker make (or make again) the full-integer TFLite and ONNX files."""
    (run.dir / FORMATS_FILE).unlink(missing_ok=True)
    (run.dir / REQUEST_FILE).touch()
    worker.WORKER.submit("formats", project, run=run.id)


def heat_map_ready(project: Project, run: RunRecord) -> bool:
    """Whether the LiteRT files of a usable run's heat maps are there; when not, the worker is asked for them
    (again, in case it was restarted meanwhile)."""
    if heatmap.ready(run.dir):
        return True
    worker.WORKER.submit("heatmap", project, run=run.id)
    return False


def retry_downloads(project: Project, run: RunRecord) -> None:
    """Try making the downloads again after a failure."""
    (run.dir / DOWNLOADS_ERROR_FILE).unlink(missing_ok=True)
    worker.WORKER.submit("assemble", project, run=run.id)


def stop(project: Project, run_id: int) -> None:
    """Ask the run to stop after the current batch; it keeps its best weights so far."""
    project.request_stop(run_id)
    refresh(project, run_id)  # a worker already gone cannot stop by itself: its run is marked failed now


class Pace:
    """Seconds left in a stage at the pace measured since its first progress past 0: work done at once before that
    (photos whose embeddings were already cached, a first epoch's set-up) says nothing about the pace of the rest."""

    def __init__(self):
        self.first: tuple[float, float] | None = None  # (time, fraction) of that first progress

    def left(self, now: float, fraction: float) -> float | None:
        if self.first is None:
            self.first = (now, fraction) if fraction > 0 else None
            return None
        since, start = self.first
        if fraction - start <= 0.02 or now <= since:
            return None
        return (now - since) / (fraction - start) * (1 - fraction)


class StoreListener:
    """Writes a run's progress and per-epoch metrics to the store; reads stop requests from it."""

    def __init__(self, project: Project, run_id: int):
        self.project, self.run_id = project, run_id
        self.stage, self.stage_started = "", time.time()
        self.stage_info: dict = {}
        self._last_write = self._last_check = 0.0
        self._stop = False
        self._pace = Pace()

    def on_stage(self, stage: str, info: dict) -> None:
        self.stage, self.stage_started, self.stage_info = stage, time.time(), info
        self._pace = Pace()
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
        eta = self._pace.left(now, fraction)
        self.project.update_run(self.run_id, progress={
            "stage": self.stage, "fraction": fraction, "stage_elapsed": elapsed, "eta_seconds": eta, "written": now,
            "finetune_planned": self.stage_info.get("blocks", 0) > 0 or self.stage == STAGE_FINETUNE, **state})


def time_left(progress: dict, now: float | None = None) -> float | None:
    """Seconds the current stage should still take: its last estimate, counted down since it was written, never
    below 0 (0: the counted work is done, what follows it in the stage is not counted); None while unknown."""
    eta = progress.get("eta_seconds")
    if eta is None:
        return None
    if progress.get("fraction", 0.0) >= 1.0:
        return 0.0
    now = time.time() if now is None else now
    since = max(0.0, now - progress.get("written", now))  # progress written before this field existed: as fresh
    return max(0.0, eta - since)


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
        with photo_snapshot(data_from_project(project), run.dir / SNAPSHOT_DIR) as data:
            metrics, model = train_and_save(data, TrainConfig.from_dict(run.config), run.dir,
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
