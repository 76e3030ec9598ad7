"""The server's side of training: hands runs to the warm worker process (`core.jobs.worker`) and reads them back
from the store. Nothing here imports TensorFlow.

The Streamlit page only starts a job, asks for a stop, and reads progress back from the
database, so a refresh, a closed tab or another page never touches the run. A worker that
dies without saying so is noticed (its process is gone, or its pid now belongs to another
process: `core.store.runs.worker_alive`) and its run marked failed. The database admits one
queued or running run per project, so two tabs or processes pressing Train start one run. A run
is usable as soon as its head is fit; its downloads are assembled afterwards (`downloads`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from core import config
from core.jobs.pipeline import data_from_project, has_model
from core.jobs.progress import LOG_FILE, SNAPSHOT_DIR
from core.model.train import TrainConfig
from core.serving import heatmap
from core.serving.export import DOWNLOADS_ERROR_FILE, DownloadsState, downloads_state
from core.serving.formats import FORMATS_FILE, REQUEST_FILE, formats_state
from core.store.project import Project, RunBusy, RunRecord
from core.store.runs import worker_alive

ACTIVE = ("queued", "running")
LOG_NAME = "worker.log"
ANSWERS = "answers"  # in the cache: one answer file per question put to the worker, removed once read
ANSWER_POLL = 0.1    # seconds between looks for an answer


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
        path = log_path()  # nothing of the run's own: what the worker said last
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
        project.update_run(run_id, pid=WORKER.submit("train", project, run=run_id))
    except (OSError, RuntimeError) as exc:  # the run must not hold the project while nothing trains it
        project.update_run(run_id, status="failed", error=f"The training process could not start: {exc}")
        raise JobRefused(f"The training process could not start: {exc}") from exc
    return run_id


def prepare(project: Project) -> None:
    """Have the worker keep this project's photos embedded ahead of training (cheap to repeat)."""
    WORKER.submit("watch", project)


def downloads(project: Project, run: RunRecord) -> DownloadsState | None:
    """Whether a usable run's downloads are ready, being made (asked of the worker again, in case it was
    restarted meanwhile) or failed; None for a run without a model."""
    if not has_model(run):
        return None
    state = downloads_state(run.dir)
    if state == "preparing":
        WORKER.submit("assemble", project, run=run.id)
    return state


def more_formats(project: Project, run: RunRecord) -> str:
    """Whether the full-integer TFLite and ONNX files are checked and ready, being made, or not asked for."""
    state = formats_state(run.dir)
    if state == "preparing":
        WORKER.submit("formats", project, run=run.id)
    return state


def request_formats(project: Project, run: RunRecord) -> None:
    """Have the worker make (or make again) the full-integer TFLite and ONNX files."""
    (run.dir / FORMATS_FILE).unlink(missing_ok=True)
    (run.dir / REQUEST_FILE).touch()
    WORKER.submit("formats", project, run=run.id)


def heat_map_ready(project: Project, run: RunRecord) -> bool:
    """Whether the LiteRT files of a usable run's heat maps are there; when not, the worker is asked for them
    (again, in case it was restarted meanwhile)."""
    if heatmap.ready(run.dir):
        return True
    WORKER.submit("heatmap", project, run=run.id)
    return False


def retry_downloads(project: Project, run: RunRecord) -> None:
    """Try making the downloads again after a failure."""
    (run.dir / DOWNLOADS_ERROR_FILE).unlink(missing_ok=True)
    WORKER.submit("assemble", project, run=run.id)


def stop(project: Project, run_id: int) -> None:
    """Ask the run to stop after the current batch; it keeps its best weights so far."""
    project.request_stop(run_id)
    refresh(project, run_id)  # a worker already gone cannot stop by itself: its run is marked failed now


class WorkerClient:
    """The server's handle on its worker: started on first use, restarted when it has died."""

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._cache: str | None = None
        self._lock = threading.Lock()

    def submit(self, task: str, project: Project | None, **fields) -> int:
        """Hand the worker a task (about a project, for most); returns the worker's process id."""
        where = {"meta": str(project.meta_dir), "images": str(project.images_dir)} if project is not None else {}
        line = json.dumps({"task": task, **where, **fields}) + "\n"
        with self._lock:
            for _ in range(2):  # a worker that died since it was last used is replaced once
                process = self._running()
                try:
                    process.stdin.write(line.encode())
                    process.stdin.flush()
                    return process.pid
                except OSError:
                    self._release()
        raise RuntimeError(f"The training worker stops as soon as it starts; see {log_path()}.")

    def ask(self, task: str, should_stop: Callable[[], bool] = lambda: False, **fields) -> dict:
        """Hand the worker a task that answers in a file, and wait for its answer. RuntimeError when the worker
        ended without one, InterruptedError when `should_stop` said so (the worker finishes the task anyway)."""
        reply = config.cache_dir() / ANSWERS / f"{task}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        reply.parent.mkdir(parents=True, exist_ok=True)
        pid = self.submit(task, None, reply=str(reply), **fields)
        try:
            while not reply.exists():
                if self.pid != pid and not reply.exists():  # a network too large for memory can end it
                    raise RuntimeError(f"The background process ended unexpectedly; see {log_path()}.")
                if should_stop():
                    raise InterruptedError(f"stopped while waiting for the worker's {task}")
                time.sleep(ANSWER_POLL)
            return json.loads(reply.read_text())
        finally:
            reply.unlink(missing_ok=True)

    def _running(self) -> subprocess.Popen:
        # A worker reads the cache setting once (projects come with each task): when it changes, start another.
        cache = str(config.cache_dir())
        if self._process is not None and (self._process.poll() is not None or self._cache != cache):
            self._release()
        if self._process is None:
            log_path().parent.mkdir(parents=True, exist_ok=True)
            with open(log_path(), "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "core.jobs.worker"], stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "TRANSFERLAB_CACHE": cache},
                    cwd=Path(__file__).resolve().parents[2], start_new_session=True)  # a Ctrl-C in the terminal spares a run
            self._cache = cache
        return self._process

    def _release(self) -> subprocess.Popen | None:
        """Close the worker's stdin (it finishes what it has and exits) and forget it."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
            threading.Thread(target=process.wait, daemon=True).start()  # reaped when it ends: no zombie
        return process

    def shutdown(self, timeout: float = 120.0) -> None:
        """Let the worker finish its tasks and wait for it to exit; kill it after `timeout` seconds."""
        with self._lock:
            process = self._release()
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None


WORKER = WorkerClient()


def log_path() -> Path:
    return config.cache_dir() / LOG_NAME
