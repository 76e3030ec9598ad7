"""Web collections that run in the background while a page keeps drawing.

A page starts a `CollectJob` for a project and, on every redraw (or after a browser refresh),
finds it again in a process-wide registry keyed by project (`core.jobs.background`). The job's thread runs
`core.intake.collect.collect` and folds its events into state the page reads through `view()`;
the thread never touches the UI.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

from core.jobs.background import Busy, Registry, Task, project_key
from core.intake.collect import CollectEvent, CollectReport, CollectRequest, collect
from core.intake.download import Downloader
from core.intake.search import SearchUnavailable
from core.store.project import Project, StoreError, validate_name

RECENT_PHOTOS = 12  # thumbnails of the newest photos kept for the live view


class CollectBusy(Busy):
    """A collection is already running for this project."""


@dataclass(frozen=True)
class ClassNames:
    """Class names typed one per line: the cleaned names, and what is wrong with the input (empty when fine)."""

    names: list[str]
    problems: list[str]


def parse_class_names(text: str) -> ClassNames:
    """Read class names, one per line; blank lines are ignored, bad or repeated names become problems."""
    names: list[str] = []
    problems: list[str] = []
    seen: dict[str, int] = {}  # lower-cased name -> line: the store compares class names without case
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            name = validate_name(line)
        except StoreError as exc:
            problems.append(f"Line {line_no}: {exc}")
            continue
        if name.lower() in seen:
            problems.append(f"Line {line_no}: '{name}' is already on line {seen[name.lower()]} "
                            "(capitals don't make a different class).")
            continue
        seen[name.lower()] = line_no
        names.append(name)
    if not names and not problems:
        problems.append("Type at least one class name, one per line.")
    return ClassNames(names, problems)


@dataclass(frozen=True)
class ClassProgress:
    name: str
    wanted: int
    saved: int = 0
    failed: int = 0  # links that gave no new photo (broken, not a picture, already had it)
    state: Literal["waiting", "running", "done"] = "waiting"


@dataclass(frozen=True)
class RecentPhoto:
    class_name: str
    thumbnail: bytes  # small JPEG


@dataclass(frozen=True)
class JobView:
    """A consistent copy of a job's state at one moment."""

    classes: list[ClassProgress]
    recent: list[RecentPhoto]  # newest first
    running: bool
    cancelling: bool
    report: CollectReport | None
    error: str | None  # set when the run could not start or broke off; str is for the user
    elapsed: float

    @property
    def saved(self) -> int:
        return sum(c.saved for c in self.classes)


class CollectJob(Task):
    """One collection running on its own thread; `view()` may be called from any thread at any time.
    `cancel()` stops it soon: no new downloads, and photos already stored stay."""

    def __init__(self, project: Project, request: CollectRequest, downloader: Downloader | None = None):
        super().__init__(f"collect {project.name}", self._collect, what="Collecting",
                         expected=(SearchUnavailable, StoreError))  # their messages are written for the user
        self.project = project
        self.request = request
        self._downloader = downloader
        self._classes = {name: ClassProgress(name, request.per_class)
                         for name in (validate_name(n) for n in request.class_names)}
        self._recent: deque[RecentPhoto] = deque(maxlen=RECENT_PHOTOS)

    def view(self) -> JobView:
        task = super().view()
        with self._lock:
            return JobView(classes=list(self._classes.values()), recent=list(reversed(self._recent)),
                           running=task.running, cancelling=task.cancelling, report=task.result, error=task.error,
                           elapsed=task.elapsed)

    def _collect(self, _task: Task) -> CollectReport:
        report = collect(self.project, self.request, on_event=self._on_event, cancel=self._cancel,
                         downloader=self._downloader)
        with self._lock:
            for c in report.classes:  # exact final counts, including links skipped without an event
                self._classes[c.class_name] = replace(
                    self._classes[c.class_name], saved=c.saved, failed=sum(c.failed.values()), state="done")
        return report

    def _on_event(self, event: CollectEvent) -> None:
        thumbnail = self._thumbnail(event) if event.kind == "image_saved" else None  # outside the lock: it decodes
        with self._lock:
            progress = self._classes[event.class_name]
            state = {"class_started": "running", "class_finished": "done"}.get(event.kind, progress.state)
            failed = progress.failed + (event.kind == "image_failed")
            self._classes[event.class_name] = replace(progress, saved=event.saved, failed=failed, state=state)
            if thumbnail:
                self._recent.append(RecentPhoto(event.class_name, thumbnail))

    def _thumbnail(self, event: CollectEvent) -> bytes | None:
        record = self.project.image_at(event.path) if event.path else None
        return self.project.thumbnail(record) if record else None


# ---- the registry: one job per project, for the life of the server process --------------------

_jobs: Registry[CollectJob] = Registry(lambda: CollectBusy(
    "Photos are already being collected for this project; wait for that search to finish or cancel it."))


def start(project: Project, request: CollectRequest, *, downloader: Downloader | None = None) -> CollectJob:
    """Start collecting in the background; CollectBusy if this project already has a run going."""
    return _jobs.start(project_key(project), lambda: CollectJob(project, request, downloader))


def current(project: Project) -> CollectJob | None:
    """The project's running job, or its last finished one until `forget` is called."""
    return _jobs.current(project_key(project))


def forget(project: Project) -> None:
    """Drop the project's finished job (a running one stays)."""
    _jobs.forget(project_key(project))
