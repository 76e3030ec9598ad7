"""Downloading web images: concurrent, polite to each host, bounded in time and size, and
refusing to reach into the local network.

Downloads stay in memory: a file is either returned whole or not at all, so nothing partial
is ever written. Whether the bytes are a usable photo is not decided here (content types lie);
the store's full decode is the gate.
"""

from __future__ import annotations

import heapq
import http.client
import ipaddress
import itertools
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from core import config
from core.search import HEADERS

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]
CHUNK_BYTES = 64 * 1024
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_POLL_SECONDS = 0.05  # how quickly a waiting download notices it was cancelled
_TLS = ssl.create_default_context()


class CancelSignal(Protocol):
    """Anything with `is_set()`, such as threading.Event."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class DownloadSettings:
    workers: int = 8
    per_host: int = 2  # concurrent requests to one host name
    timeout: float = 10.0  # seconds for the connection and for each read
    deadline: float = 30.0  # seconds for the whole file: retries and redirects included
    max_bytes: int = 15 * 1024 * 1024
    retries: int = 2  # further tries after a transient failure (connection error, 429, 5xx)
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_redirects: int = 5
    allow_private: bool | None = None  # None: config.allow_private_hosts()


@dataclass(frozen=True)
class Download:
    """One URL's outcome: the complete body, or a short reason code such as "http_404" or "timeout"."""

    url: str
    data: bytes | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None


class DownloadFailed(Exception):
    """Why a download stopped; `transient` failures are worth another try."""

    def __init__(self, reason: str, *, transient: bool = False, retry_after: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Redirect:
    location: str


@dataclass(frozen=True)
class _Target:
    """A URL taken apart into what a connection needs."""

    https: bool
    host: str
    port: int
    path: str


class _Clock:
    """The per-file deadline. It starts with the first request, not while waiting for a host slot."""

    def __init__(self, seconds: float):
        self._seconds = seconds
        self._ends: float | None = None

    def start(self) -> None:
        if self._ends is None:
            self._ends = time.monotonic() + self._seconds

    def remaining(self) -> float:
        return self._seconds if self._ends is None else self._ends - time.monotonic()

    def timeout(self, limit: float) -> float:
        """Seconds the next network step may take; DownloadFailed("timeout") once the deadline has passed."""
        left = self.remaining()
        if left <= 0:
            raise DownloadFailed("timeout")
        return min(limit, left)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host; an IP literal comes back as it is."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_allowed(ip: str, allow_private: bool) -> bool:
    """Public unicast addresses only; allow_private also admits loopback, private and link-local ones."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if address.is_multicast or address.is_unspecified:
        return False  # never a web server; 0.0.0.0 even reaches this machine
    if address.is_global:
        return True
    if address.version == 4 and address.is_reserved:
        return False  # 240.0.0.0/4 and broadcast: not hosts at all
    return allow_private


class Downloader:
    """A pool of download workers sharing per-host limits. Use as a context manager.

    Tests and benchmarks pass `resolve` to map made-up host names to the loopback address.
    """

    def __init__(self, settings: DownloadSettings = DownloadSettings(), *, resolve: Resolver = resolve_host):
        self.settings = settings
        self._resolve = resolve
        self._allow_private = config.allow_private_hosts() if settings.allow_private is None else settings.allow_private
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="download")
        self._hosts = _HostSlots(settings.per_host)
        self._tickets = itertools.count()  # submission order, which is the order hosts serve requests in

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop queued downloads; running ones end on their own (at their next chunk once cancelled)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, url: str, cancel: CancelSignal | None = None) -> Future[Download]:
        """Download `url` on a worker thread; the future never raises.

        Requests to one host start in the order they were submitted, so better-ranked search
        results are fetched first whichever worker thread happens to run them.
        """
        return self._pool.submit(self._fetch, url, cancel, next(self._tickets))

    def fetch(self, url: str, cancel: CancelSignal | None = None) -> Download:
        """Download `url` in the calling thread, with the same limits and checks as `submit`."""
        return self._fetch(url, cancel, next(self._tickets))

    def _fetch(self, url: str, cancel: CancelSignal | None, ticket: int) -> Download:
        cancel = cancel or threading.Event()
        try:
            if cancel.is_set():
                raise DownloadFailed("cancelled")
            return Download(url, data=self._follow(url, _Clock(self.settings.deadline), cancel, ticket))
        except DownloadFailed as exc:
            return Download(url, reason=exc.reason)
        except Exception:  # a bug here must cost one image, not the whole collection
            log.exception("download of %s failed unexpectedly", url)
            return Download(url, reason="error")

    def _follow(self, url: str, clock: _Clock, cancel: CancelSignal, ticket: int) -> bytes:
        """The body at `url` after following redirects, each hop checked like the first."""
        visited = {url}
        for _ in range(self.settings.max_redirects + 1):
            outcome = self._with_retries(url, clock, cancel, ticket)
            if isinstance(outcome, bytes):
                return outcome
            url = urllib.parse.urljoin(url, outcome.location)
            if url in visited:
                raise DownloadFailed("redirect_loop")
            visited.add(url)
        raise DownloadFailed("too_many_redirects")

    def _with_retries(self, url: str, clock: _Clock, cancel: CancelSignal, ticket: int) -> bytes | _Redirect:
        attempt = 0
        while True:
            try:
                return self._get(url, clock, cancel, ticket)
            except DownloadFailed as exc:
                pause = max(self.settings.backoff * 2**attempt, exc.retry_after)
                if not exc.transient or attempt >= self.settings.retries or pause >= clock.remaining():
                    raise
                if _sleep(pause, cancel):
                    raise DownloadFailed("cancelled") from exc
                attempt += 1

    def _get(self, url: str, clock: _Clock, cancel: CancelSignal, ticket: int) -> bytes | _Redirect:
        """One GET: the body of a 2xx answer or where a redirect points."""
        target = _parse(url)
        addresses = self._vetted_addresses(target)
        with self._hosts.slot(target.host, ticket, cancel):
            clock.start()
            connection = _connection(target, addresses, clock.timeout(self.settings.timeout))
            try:
                connection.request("GET", target.path, headers=HEADERS)
                sock = connection.sock  # getresponse() may hand the socket to the response and forget it
                response = connection.getresponse()
                if response.status in REDIRECT_STATUSES and response.getheader("Location"):
                    return _Redirect(response.getheader("Location", ""))
                if not 200 <= response.status < 300:
                    raise _http_failure(response)
                return self._read_body(response, sock, clock, cancel)
            except TimeoutError as exc:
                raise DownloadFailed("timeout") from exc
            except ssl.SSLError as exc:
                raise DownloadFailed("tls") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadFailed("connection", transient=True) from exc
            finally:
                connection.close()

    def _vetted_addresses(self, target: _Target) -> list[str]:
        """The host's addresses, all of them allowed, or DownloadFailed before any connection is made."""
        try:
            addresses = self._resolve(target.host, target.port)
        except (socket.gaierror, UnicodeError) as exc:
            raise DownloadFailed("dns") from exc
        # One bad address blocks the host: a resolver may answer differently on the next lookup.
        if not addresses or not all(address_allowed(a, self._allow_private) for a in addresses):
            raise DownloadFailed("blocked_address")
        return addresses

    def _read_body(self, response: http.client.HTTPResponse, sock: socket.socket, clock: _Clock,
                   cancel: CancelSignal) -> bytes:
        """The whole body, read in chunks so cancel, deadline and byte cap apply as it streams."""
        declared = response.getheader("Content-Length", "")
        if declared.isdigit() and int(declared) > self.settings.max_bytes:
            raise DownloadFailed("too_big")
        chunks: list[bytes] = []
        size = 0
        while True:
            if cancel.is_set():
                raise DownloadFailed("cancelled")
            sock.settimeout(clock.timeout(self.settings.timeout))
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.settings.max_bytes:
                raise DownloadFailed("too_big")
            chunks.append(chunk)


class _HostSlots:
    """Each host's `per_host` request slots, granted to the waiting request with the lowest ticket.

    A plain semaphore would hand a freed slot to whichever thread polls first, so a top search
    result could wait behind later ones.
    """

    def __init__(self, per_host: int):
        self._per_host = per_host
        self._changed = threading.Condition()
        self._busy: Counter[str] = Counter()
        self._waiting: defaultdict[str, list[int]] = defaultdict(list)  # heaps of tickets

    @contextmanager
    def slot(self, host: str, ticket: int, cancel: CancelSignal) -> Iterator[None]:
        host = host.lower()
        with self._changed:
            heapq.heappush(self._waiting[host], ticket)
            try:
                while self._busy[host] >= self._per_host or self._waiting[host][0] != ticket:
                    if cancel.is_set():
                        raise DownloadFailed("cancelled")
                    self._changed.wait(_POLL_SECONDS)
            finally:
                self._leave_queue(host, ticket)
            if cancel.is_set():  # cancelled while we waited: don't start a request nobody wants
                raise DownloadFailed("cancelled")
            self._busy[host] += 1
        try:
            yield
        finally:
            with self._changed:
                self._busy[host] -= 1
                if not self._busy[host]:
                    del self._busy[host]
                self._changed.notify_all()

    def _leave_queue(self, host: str, ticket: int) -> None:
        """Take `ticket` out of the host's queue (the head, unless it gave up waiting) and wake the rest."""
        queue = self._waiting[host]
        queue.remove(ticket)
        heapq.heapify(queue)
        if not queue:
            del self._waiting[host]
        self._changed.notify_all()


def _parse(url: str) -> _Target:
    """Take an http(s) URL apart, percent-encoding what a request line cannot carry (spaces, non-ASCII)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DownloadFailed("bad_url") from exc
    if parts.scheme not in ("http", "https"):
        raise DownloadFailed("not_http")
    if not parts.hostname:
        raise DownloadFailed("bad_url")
    # As bing_image_downloader does, but keeping '%' so escapes already in the URL survive.
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe="=&+%:@!$'()*,;/?~")
    https = parts.scheme == "https"
    return _Target(https, parts.hostname, port or (443 if https else 80), path)


def _connection(target: _Target, addresses: list[str], timeout: float) -> http.client.HTTPConnection:
    """A connection to `target` that can only reach the vetted addresses.

    It never connects to what a second DNS lookup might say (DNS rebinding); TLS still checks
    the certificate against the host name.
    """

    def connect(address: tuple[str, int], timeout: float, source: object = None) -> socket.socket:
        return _connect_first(addresses, address[1], timeout)

    if target.https:
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=_TLS)
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    connection._create_connection = connect  # type: ignore[attr-defined]  # http.client's socket-opening hook
    return connection


def _connect_first(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A socket to the first address that answers."""
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error


def _http_failure(response: http.client.HTTPResponse) -> DownloadFailed:
    """http_<status>; 429 and 5xx are transient, and Retry-After (seconds) is honoured."""
    retry_after = response.getheader("Retry-After", "")
    return DownloadFailed(
        f"http_{response.status}",
        transient=response.status == 429 or response.status >= 500,
        retry_after=float(retry_after) if retry_after.isdigit() else 0.0,
    )


def _sleep(seconds: float, cancel: CancelSignal) -> bool:
    """Sleep unless cancelled; True when cancelled."""
    ends = time.monotonic() + seconds
    while (left := ends - time.monotonic()) > 0:
        if cancel.is_set():
            return True
        time.sleep(min(left, _POLL_SECONDS))
    return cancel.is_set()
