"""Collecting photos from the web into a project: search, download, validate, store.

This is the one code path behind the Collect page and the command line. Per class it pages
through search results, keeps a bounded number of downloads in flight, and stores each
complete download through `Project.add_image`, which decodes it fully and rejects exact and
near duplicates. A run only ever adds photos; a class folder appears with its first photo.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Literal
from urllib.parse import unquote, urlsplit

from core.intake.download import Download, Downloader
from core.intake.search import SearchCancelled, SearchUnavailable, search_page
from core.store.project import ClassGone, Project, normalize, validate_name

PAGE_SIZE = 50  # results asked per search request
MAX_OFFSET = 1000  # Bing serves no results past about this many
IN_FLIGHT_MARGIN = 4  # downloads beyond those still needed, to cover the ones that fail
_POLL_SECONDS = 0.1  # how often the loop looks at `cancel` while downloads run
# Outcomes that mean "we already have this picture", as opposed to a broken link or file.
DUPLICATE_REASONS = ("duplicate", "near_duplicate", "already_stored")


@dataclass
class CollectRequest:
    class_names: list[str]
    per_class: int = 50
    image_type: str = "photo"
    safe_search: bool = True
    extra_words: str = ""

    def query(self, class_name: str) -> str:
        return normalize(f"{class_name} {self.extra_words}")


@dataclass
class ClassReport:
    """What one class got. `failed` counts every URL that gave no new photo, by reason code
    (download codes such as "http_404", store codes such as "not_image" or "duplicate");
    `duplicates` is the part of those that were pictures the project already had."""

    class_name: str
    query: str
    saved: int
    duplicates: int
    failed: dict[str, int]
    seconds: float
    requested: int
    exhausted: bool  # the search ran out of new results before `requested` photos were saved

    @property
    def link_failures(self) -> list[tuple[str, int]]:
        """(reason, count) for the URLs that gave nothing usable, copies of known pictures aside; most first."""
        return sorted(((reason, n) for reason, n in self.failed.items() if reason not in DUPLICATE_REASONS),
                      key=lambda item: (-item[1], item[0]))


@dataclass
class CollectReport:
    classes: list[ClassReport]
    cancelled: bool
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def rows(self) -> list[dict]:
        """One row per class, for a table."""
        return [
            {
                "class": c.class_name,
                "query": c.query,
                "saved": c.saved,
                "requested": c.requested,
                "duplicates": c.duplicates,
                "failed": sum(n for _, n in c.link_failures),
                "reasons": ", ".join(f"{reason} {n}" for reason, n in sorted(c.failed.items(), key=lambda kv: -kv[1])),
                "seconds": round(c.seconds, 1),
                "results ran out": c.exhausted,
            }
            for c in self.classes
        ]


EventKind = Literal["class_started", "image_saved", "image_failed", "class_finished"]


@dataclass
class CollectEvent:
    kind: EventKind
    class_name: str
    saved: int
    wanted: int
    path: Path | None = None
    url: str | None = None
    reason: str | None = None


def collect(project: Project, request: CollectRequest, *, on_event: Callable[[CollectEvent], None] | None = None,
            cancel: threading.Event | None = None, downloader: Downloader | None = None) -> CollectReport:
    """Add up to `request.per_class` new web photos to each class.

    `on_event` is only ever called from the thread that called `collect` (downloads run on
    worker threads but their results are stored and reported here), so a caller running
    `collect` in a background thread should hand events to its UI thread through a queue or
    a lock. Setting `cancel` stops new downloads at once and running ones at their next chunk;
    photos stored so far stay. `downloader` lets tests and benchmarks choose limits and a resolver.

    Raises SearchUnavailable when the very first search fails; the project is then untouched.
    Search failures later in a run end that class and are counted as "search_unavailable".
    """
    class_names = [validate_name(name) for name in request.class_names]  # a bad name fails before any traffic
    if request.per_class < 1:
        raise ValueError("per_class must be at least 1")
    cancel = cancel or threading.Event()
    emit = on_event or (lambda event: None)
    started = time.monotonic()
    reports: list[ClassReport] = []
    with (nullcontext(downloader) if downloader else Downloader()) as pool:
        for name in class_names:
            if cancel.is_set():
                break
            reports.append(_ClassRun(project, request, name, pool, cancel, emit, first=not reports).run())
    return CollectReport(reports, cancel.is_set(), time.monotonic() - started)


class _EitherEvent:
    """Set when the run is cancelled or the class is done: one signal stops a class's downloads for both."""

    def __init__(self, *events: threading.Event):
        self._events = events

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)


class _Results:
    """A query's result URLs not seen before, fetched a page at a time as they are needed."""

    def __init__(self, query: str, request: CollectRequest, known: set[str], cancel: threading.Event, *,
                 fail_fast: bool):
        self.query = query
        self.cancel = cancel
        self.request = request
        self.known = known  # already in the class: skipped without downloading
        self.fail_fast = fail_fast  # let SearchUnavailable on the first page through
        self.seen: set[str] = set()
        self.offset = 0
        self.pages = 0
        self.exhausted = False  # a page brought nothing new
        self.unavailable = False  # the search failed; no more pages are asked for
        self.cancelled = False  # the run was cancelled while a page was on its way
        self.skipped_known = 0
        self._queue: deque[str] = deque()

    def next_url(self) -> str | None:
        """The next URL to try, or None when there are no more."""
        while not self._queue and not (self.exhausted or self.unavailable or self.cancelled):
            self._fetch_page()
        return self._queue.popleft() if self._queue else None

    def _fetch_page(self) -> None:
        try:
            urls = search_page(self.query, self.offset, PAGE_SIZE, image_type=self.request.image_type,
                               safe_search=self.request.safe_search, cancel=self.cancel)
        except SearchCancelled:
            self.cancelled = True
            return
        except SearchUnavailable:
            if self.fail_fast and self.pages == 0:
                raise
            self.unavailable = True
            return
        self.pages += 1
        self.offset += len(urls)  # Bing's `first` is a result offset, and pages may be shorter than asked
        new = [url for url in dict.fromkeys(urls) if url not in self.seen]
        self.seen.update(new)
        fresh = [url for url in new if url not in self.known]
        self.skipped_known += len(new) - len(fresh)
        self._queue.extend(fresh)
        self.exhausted = not new or self.offset >= MAX_OFFSET


class _ClassRun:
    """Collecting one class: keeps downloads in flight and stores what arrives, in the caller's thread."""

    def __init__(self, project: Project, request: CollectRequest, class_name: str, pool: Downloader,
                 cancel: threading.Event, emit: Callable[[CollectEvent], None], *, first: bool):
        self.project = project
        self.class_name = class_name
        self.query = request.query(class_name)
        self.wanted = request.per_class
        self.pool = pool
        self.cancel = cancel
        self.emit = emit
        # In the run's first class a failing first search aborts the run, before anything is stored.
        self.results = _Results(self.query, request, project.known_urls(class_name), cancel, fail_fast=first)
        self.done = threading.Event()
        self.signal = _EitherEvent(cancel, self.done)
        self.in_flight: set[Future[Download]] = set()
        self.failed: Counter[str] = Counter()
        self.saved = 0
        self.class_id = project.class_id(class_name)  # None until the first photo creates the class
        self.gone = False

    def run(self) -> ClassReport:
        started = time.monotonic()
        self._event("class_started")
        try:
            self._loop()
        finally:
            self.done.set()  # running downloads stop at their next chunk
            for future in self.in_flight:
                future.cancel()
        if self.results.skipped_known:
            self.failed["already_stored"] += self.results.skipped_known
        if self.results.unavailable:
            self.failed["search_unavailable"] += 1
        self._event("class_finished")
        return ClassReport(
            class_name=self.class_name, query=self.query, saved=self.saved,
            duplicates=sum(self.failed[reason] for reason in DUPLICATE_REASONS), failed=dict(self.failed),
            seconds=time.monotonic() - started, requested=self.wanted,
            exhausted=self.results.exhausted and self.saved < self.wanted,
        )

    def _loop(self) -> None:
        while self.saved < self.wanted and not self.cancel.is_set() and not self.gone:
            self._top_up()
            if not self.in_flight:
                return  # no more results and every download has been handled
            finished, _ = wait(self.in_flight, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                self.in_flight.remove(future)
                if self.saved < self.wanted and not self.cancel.is_set() and not self.gone:
                    self._store(future.result())

    def _top_up(self) -> None:
        """Start downloads until those in flight cover what is still needed, plus a margin."""
        limit = min(self.wanted - self.saved + IN_FLIGHT_MARGIN, 2 * self.pool.settings.workers)
        while len(self.in_flight) < limit and (url := self.results.next_url()) is not None:
            self.in_flight.add(self.pool.submit(url, self.signal))

    def _store(self, download: Download) -> None:
        if download.data is None:
            if download.reason != "cancelled":  # ours, not the link's fault
                self._failure(download.url, download.reason or "error")
            return
        try:
            result = self.project.add_image(
                self.class_name, download.data, source="web", source_url=download.url, query=self.query,
                original_name=_file_name(download.url), reject_near_duplicates=True, class_id=self.class_id,
            )
        except ClassGone:  # the class was deleted meanwhile: nothing more to collect for it
            self.gone = True
            self._failure(download.url, "class_deleted")
            return
        self.class_id = result.class_id or self.class_id  # later photos follow the class through a rename
        if result.status == "added":
            self.saved += 1
            self._event("image_saved", path=result.path, url=download.url)
        else:
            self._failure(download.url, result.reason or result.status)

    def _failure(self, url: str, reason: str) -> None:
        self.failed[reason] += 1
        self._event("image_failed", url=url, reason=reason)

    def _event(self, kind: EventKind, *, path: Path | None = None, url: str | None = None,
               reason: str | None = None) -> None:
        self.emit(CollectEvent(kind, self.class_name, self.saved, self.wanted, path, url, reason))


def _file_name(url: str) -> str | None:
    """The last path segment of a URL, as a hint for the stored file's name."""
    return unquote(PurePosixPath(urlsplit(url).path).name) or None
