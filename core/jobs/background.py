"""Work that runs on a thread of the server process while pages keep drawing, found again after a refresh.

A page starts a job under a key (a project, or the machine for work that concerns every project) in a
`Registry`; every redraw, in any tab, finds it there again and reads its state, so nothing about it
lives in a browser session. At most one job runs per key. `Task` is a job made of one function that
reports progress and checks for a cancel (the suspects check, timing the networks); `core.jobs.collect`
builds its richer job on it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Protocol, TypeVar

from core.store.project import Project, StoreError

log = logging.getLogger(__name__)


class Busy(StoreError):
    """A job of this kind is already running under this key; the message says what to do."""


class Cancelled(Exception):
    """Raised inside a task's function when the person asked it to stop."""


class Job(Protocol):
    @property
    def running(self) -> bool: ...

    def start(self) -> None: ...


J = TypeVar("J", bound=Job)


class Registry(Generic[J]):
    """One job per key for the life of the server process: the running one, or the last one until forgotten."""

    def __init__(self, busy: Callable[[], Busy]):
        self._busy = busy  # the error to raise when a job is still running under the key
        self._jobs: dict[str, J] = {}
        self._lock = threading.Lock()

    def start(self, key: str, make: Callable[[], J]) -> J:
        """Make and start a job under `key`; Busy if one is still running there."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.running:
                raise self._busy()
            job = make()
            self._jobs[key] = job
            job.start()
        return job

    def current(self, key: str) -> J | None:
        """The running job under `key`, or its last finished one until `forget` is called."""
        with self._lock:
            return self._jobs.get(key)

    def forget(self, key: str) -> None:
        """Drop a finished job (a running one stays)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.running:
                del self._jobs[key]


def project_key(project: Project) -> str:
    """A project's key, the same for every `Project` object opened on it."""
    return str(project.meta_dir.resolve())


@dataclass(frozen=True)
class TaskView:
    """A consistent copy of a task's state at one moment."""

    running: bool
    cancelling: bool
    done: int            # steps finished so far, of `total` (0 of 0 before the first report)
    total: int
    text: str            # what it is doing now, for the person
    result: object       # what the function returned; None while running or after a failure
    error: str | None    # why it failed or stopped, for the person
    cancelled: bool
    elapsed: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class Task:
    """A function on its own thread: `work(task)` reports with `task.report` and calls `task.check` to honour a
    cancel; what it returns is the result. Exceptions of the `expected` types are the person's message; any other
    is logged and summarised. `view()` may be called from any thread at any time."""

    def __init__(self, name: str, work: Callable[["Task"], object], *, what: str, text: str = "Starting…",
                 expected: tuple[type[Exception], ...] = ()):
        self.name, self.what = name, what  # what: the work, for the person ("Collecting", "The check")
        self._work, self._expected = work, expected
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._done = self._total = 0
        self._text = text
        self._result: object = None
        self._error: str | None = None
        self._cancelled = False
        self._started = time.monotonic()
        self._ended: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise Cancelled when a stop was asked for: call it between steps."""
        if self._cancel.is_set():
            raise Cancelled

    def report(self, done: int, total: int, text: str | None = None) -> None:
        with self._lock:
            self._done, self._total = done, total
            if text is not None:
                self._text = text

    @property
    def running(self) -> bool:
        with self._lock:
            return self._ended is None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task has ended; False if it is still going after `timeout` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def view(self) -> TaskView:
        with self._lock:
            end = self._ended or time.monotonic()
            return TaskView(running=self._ended is None, cancelling=self._cancel.is_set() and self._ended is None,
                            done=self._done, total=self._total, text=self._text, result=self._result,
                            error=self._error, cancelled=self._cancelled, elapsed=end - self._started)

    def _run(self) -> None:
        result, error, cancelled = None, None, False
        try:
            result = self._work(self)
        except Cancelled:
            error, cancelled = "Stopped as you asked.", True
        except self._expected as exc:
            error = str(exc)
        except Exception as exc:  # the page must learn that the task ended, whatever happened
            log.exception("%s failed", self.name)
            error = f"{self.what} stopped because of an unexpected error: {exc}"
        with self._lock:
            self._result, self._error, self._cancelled, self._ended = result, error, cancelled, time.monotonic()
