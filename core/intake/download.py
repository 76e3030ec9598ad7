"""Downloading web images: concurrent, polite to each host, bounded in time and size, and
refusing to reach into the local network.

Downloads stay in memory: a file is either returned whole or not at all, so nothing partial
is ever written. Whether the bytes are a usable photo is not decided here (content types lie);
the store's full decode is the gate.

The per-file deadline covers every step: DNS (looked up in a helper thread that is waited on
with the deadline and cancel), connecting (non-blocking, polled), TLS, response headers and
body. A watchdog thread shuts down the socket of a download that is cancelled or out of time,
so a read blocked on a server that drips a byte every few seconds returns at once.
"""

from __future__ import annotations

import errno
import heapq
import http.client
import ipaddress
import itertools
import logging
import os
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from bing_image_downloader.bing import Bing

from core import config

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]
CHUNK_BYTES = 64 * 1024
# The browser headers every request sends: bing_image_downloader's (an idle instance lends them), so a search
# (`core.intake.search`) and a photo download look like the library's own.
HEADERS: dict[str, str] = dict(Bing("", 1, Path("."), "off", 10, verbose=False).headers)
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_POLL_SECONDS = 0.05  # how quickly a waiting download notices it was cancelled
_TLS = ssl.create_default_context()
# IPv6 ranges that carry an IPv4 address in their last 32 bits: what they reach is that IPv4 address.
_IPV4_IN_LOW_BITS = [ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")]
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): always a private network


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
    """Public unicast addresses only; allow_private also admits loopback, private and link-local ones.

    An IPv6 address that carries an IPv4 one (mapped, compatible, translated, NAT64, 6to4, Teredo)
    is judged by the IPv4 address it leads to.
    """
    address = ipaddress.ip_address(ip)
    if address.is_multicast or address.is_unspecified:
        return False  # never a web server; 0.0.0.0 even reaches this machine
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_loopback or address.is_site_local or address in _NAT64_LOCAL:
            return allow_private
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(address_allowed(str(v4), allow_private) for v4 in embedded)
    if address.is_global:
        return True
    if address.version == 4 and address.is_reserved:
        return False  # 240.0.0.0/4 and broadcast: not hosts at all
    return allow_private


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to, if it is one of the forms that embed them."""
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address.sixtofour:
        return [address.sixtofour]
    if address.teredo:
        return list(address.teredo)  # (server, client)
    if any(address in network for network in _IPV4_IN_LOW_BITS):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


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
        self._watchdog = _Watchdog()
        self._tickets = itertools.count()  # submission order, which is the order hosts serve requests in

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop queued downloads; running ones end on their own (within _POLL_SECONDS once cancelled)."""
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
        with self._hosts.slot(target.host, ticket, cancel):
            clock.start()
            addresses = self._vetted_addresses(target, clock, cancel)
            watch = self._watchdog.watch(clock, cancel)
            connection = _Connection(target, lambda: _open_socket(target, addresses, clock, cancel, watch,
                                                                  self.settings.timeout))
            try:
                connection.request("GET", target.path, headers=HEADERS)
                sock = connection.sock  # getresponse() may hand the socket to the response and forget it
                response = connection.getresponse()
                if response.status in REDIRECT_STATUSES and response.getheader("Location"):
                    return _Redirect(response.getheader("Location", ""))
                if not 200 <= response.status < 300:
                    raise _http_failure(response)
                return self._read_body(response, sock, clock, cancel)
            except DownloadFailed:
                raise
            except (OSError, http.client.HTTPException) as exc:
                raise _network_failure(exc, clock, cancel) from exc
            finally:
                watch.end()  # before closing: the watchdog must never touch a closed socket
                connection.close()

    def _vetted_addresses(self, target: _Target, clock: _Clock, cancel: CancelSignal) -> list[str]:
        """The host's addresses, all of them allowed, or DownloadFailed before any connection is made."""
        try:
            addresses = _within_deadline(lambda: self._resolve(target.host, target.port), clock, cancel,
                                         self.settings.timeout)
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
                break
            size += len(chunk)
            if size > self.settings.max_bytes:
                raise DownloadFailed("too_big")
            chunks.append(chunk)
        if cancel.is_set():  # the watchdog ends a cancelled read as if the body had ended
            raise DownloadFailed("cancelled")
        clock.timeout(self.settings.timeout)  # and one that ran out of time
        if declared.isdigit() and size < int(declared):
            raise DownloadFailed("connection", transient=True)  # cut short: never pass on part of a file
        return b"".join(chunks)


class _Watchdog:
    """Shuts down the sockets of requests that were cancelled or ran past their deadline.

    http.client reads response headers with blocking reads that only a per-read timeout bounds;
    shutting the socket down makes such a read return at once. One thread serves all requests
    and ends while none is watched.
    """

    def __init__(self):
        self._watched: dict[int, _Watch] = {}
        self._lock = threading.Lock()
        self._running = False
        self._ids = itertools.count()

    def watch(self, clock: _Clock, cancel: CancelSignal) -> _Watch:
        watch = _Watch(self, next(self._ids), clock, cancel)
        with self._lock:
            self._watched[watch.key] = watch
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="download-watchdog", daemon=True).start()
        return watch

    def _forget(self, watch: _Watch) -> None:
        with self._lock:
            self._watched.pop(watch.key, None)

    def _run(self) -> None:
        while True:
            time.sleep(_POLL_SECONDS)
            with self._lock:  # held while shutting down, so no socket is closed meanwhile (see _Watch.end)
                if not self._watched:
                    self._running = False
                    return
                for watch in self._watched.values():
                    if watch.cancel.is_set() or watch.clock.remaining() <= 0:
                        watch.shut_down()


class _Watch:
    """One request's sockets under the watchdog, from connecting until `end`."""

    def __init__(self, watchdog: _Watchdog, key: int, clock: _Clock, cancel: CancelSignal):
        self.key = key
        self.clock = clock
        self.cancel = cancel
        self._watchdog = watchdog
        self._sockets: list[socket.socket] = []

    def add(self, sock: socket.socket) -> None:
        self._sockets.append(sock)

    def shut_down(self) -> None:
        for sock in self._sockets:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket under TLS too
            except OSError:  # not connected yet, or already shut down
                pass

    def end(self) -> None:
        self._watchdog._forget(self)


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


class _Connection(http.client.HTTPConnection):
    """An HTTP or HTTPS connection whose socket comes from `opener` (vetted addresses, TLS, deadline, cancel)."""

    def __init__(self, target: _Target, opener: Callable[[], socket.socket]):
        super().__init__(target.host, target.port)
        self.default_port = 443 if target.https else 80  # the Host header leaves the usual port out
        self._opener = opener

    def connect(self) -> None:
        self.sock = self._opener()


def _open_socket(target: _Target, addresses: list[str], clock: _Clock, cancel: CancelSignal, watch: _Watch,
                 step: float) -> socket.socket:
    """A socket to the first vetted address that answers, TLS-wrapped for https, watched from the start.

    It never connects to what a second DNS lookup might say (DNS rebinding); TLS still checks
    the certificate against the host name.
    """
    error: OSError = OSError("no address")
    for address in addresses:
        try:
            sock = _connect(address, target.port, clock, cancel, step)
            break
        except OSError as exc:
            error = exc
    else:
        raise error
    watch.add(sock)
    if target.https:
        sock = _TLS.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
        watch.add(sock)
        sock.do_handshake()
    return sock


def _connect(address: str, port: int, clock: _Clock, cancel: CancelSignal, step: float) -> socket.socket:
    """A connected socket (blocking, with a timeout), waited for in short polls so cancel and the deadline apply."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        ends = time.monotonic() + clock.timeout(step)
        status = sock.connect_ex((address, port))
        while status in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            if cancel.is_set():
                raise DownloadFailed("cancelled")
            if time.monotonic() >= ends:
                raise TimeoutError(f"connecting to {address} took too long")
            if select.select([], [sock], [], min(_POLL_SECONDS, ends - time.monotonic()))[1]:
                status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if status:
            raise OSError(status, os.strerror(status))
        sock.settimeout(clock.timeout(step))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except BaseException:
        sock.close()
        raise


def _within_deadline(work: Callable[[], list[str]], clock: _Clock, cancel: CancelSignal, step: float) -> list[str]:
    """Run a blocking call (a DNS lookup) in a helper thread and wait for it under the deadline and cancel.

    A lookup cannot be interrupted: one that hangs is left to finish in its daemon thread.
    """
    outcome: list = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="dns-lookup", daemon=True).start()
    ends = time.monotonic() + clock.timeout(step)
    while not done.wait(_POLL_SECONDS):
        if cancel.is_set():
            raise DownloadFailed("cancelled")
        if time.monotonic() >= ends:
            raise DownloadFailed("timeout")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _network_failure(exc: BaseException, clock: _Clock, cancel: CancelSignal) -> DownloadFailed:
    """Why a request failed on the network: cancelled or out of time (the watchdog's doing), TLS, or the connection."""
    if cancel.is_set():
        return DownloadFailed("cancelled")
    if isinstance(exc, TimeoutError) or clock.remaining() <= 0:
        return DownloadFailed("timeout")
    if isinstance(exc, ssl.SSLError):
        return DownloadFailed("tls")
    return DownloadFailed("connection", transient=True)


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
