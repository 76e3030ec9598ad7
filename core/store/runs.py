"""Training runs in the database: records, one active run per project, and whether a worker still lives.

"One run at a time" is a unique index over the active runs, so two processes pressing Train at
the same instant cannot both start one. A worker is known by its pid *and* its process start
time, so a pid the system has since given to another process does not keep a dead run alive.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from core.store.errors import RunBusy, StoreError

RunStatus = Literal["queued", "running", "completed", "stopped", "failed"]
ACTIVE = ("queued", "running")
FINAL = ("completed", "stopped", "failed")
START_TOLERANCE = 0.5  # seconds: psutil's start time is rounded to clock ticks


@dataclass(frozen=True)
class RunRecord:
    id: int
    created: float
    status: RunStatus
    config: dict
    summary: dict
    progress: dict
    error: str | None
    pid: int | None
    stop_requested: bool
    finished: float | None
    dir: Path
    worker_started: float | None = None  # the worker process's start time, with pid its identity


def run_record(row: sqlite3.Row, run_dir: Path) -> RunRecord:
    return RunRecord(
        id=row["id"], created=row["created"], status=row["status"], config=json.loads(row["config"]),
        summary=json.loads(row["summary"] or "{}"), progress=json.loads(row["progress"] or "{}"),
        error=row["error"], pid=row["pid"], stop_requested=bool(row["stop_requested"]), finished=row["finished"],
        dir=run_dir, worker_started=row["worker_started"],
    )


def insert_run(con: sqlite3.Connection, run_config: dict) -> int:
    """A new queued run, or RunBusy when the project already has one queued or training."""
    active = con.execute("SELECT id FROM runs WHERE status IN ('queued', 'running')").fetchone()
    if active is None:
        try:
            return con.execute("INSERT INTO runs (created, status, config) VALUES (?, 'queued', ?)",
                               (time.time(), json.dumps(run_config))).lastrowid
        except sqlite3.IntegrityError:  # a writer without the lock (an older version) got there first
            active = con.execute("SELECT id FROM runs WHERE status IN ('queued', 'running')").fetchone()
    raise RunBusy(f"Run {active['id']} is still training. Stop it or wait for it to finish first.")


def run_updates(status: RunStatus | None, summary: dict | None, progress: dict | None, error: str | None,
                pid: int | None) -> dict:
    """Column -> value for the fields given (None leaves a field as it is)."""
    fields = {"status": status, "summary": summary, "progress": progress, "error": error, "pid": pid}
    sets = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in fields.items() if v is not None}
    if pid is not None:
        sets["worker_started"] = process_started(pid)
    if status in FINAL:
        sets["finished"] = time.time()
    return sets


def apply_updates(con: sqlite3.Connection, run_id: int, sets: dict) -> None:
    if not sets:
        return
    if con.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is None:
        raise StoreError(f"There is no run {run_id}.")
    con.execute(f"UPDATE runs SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?", (*sets.values(), run_id))


def process_started(pid: int) -> float | None:
    """When the process with this pid started (its identity together with the pid), None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def worker_alive(pid: int | None, started: float | None) -> bool:
    """True while the run's own worker process exists and is not a zombie; a reused pid is not it."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) > START_TOLERANCE:
            return False
        if started is None and not _is_worker(process):  # a row from before start times: only a worker can be it
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process by that pid exists; without its start time we cannot tell more


def _is_worker(process: psutil.Process) -> bool:
    """Whether a process is a training worker (`python -m core.jobs.worker`); one we may not look at is not."""
    try:
        return "core.jobs.worker" in process.cmdline()
    except psutil.Error:
        return False
