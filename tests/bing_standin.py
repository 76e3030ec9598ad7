"""A local stand-in for Bing image search and for the image hosts its results point to.

One threaded HTTP server on 127.0.0.1 answers `/images/async?q=&first=&count=` the way Bing
does (HTML with `murl&quot;:&quot;URL&quot;` entries, paged by result offset, an empty body
past the end) and serves every URL it hands out: good photos and each kind of bad link.
Result URLs use made-up host names (`h3.standin.test`) so per-host limits can be exercised;
`BingStandin.resolve` maps them to 127.0.0.1 for `Downloader(resolve=...)`.

Nothing here ever contacts another address: `loopback_only` makes that a test failure.
"""

from __future__ import annotations

import html
import io
import socket
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from PIL import Image

from core.intake.download import DownloadSettings
from tests.photos import photo

FAST = DownloadSettings(timeout=1.0, deadline=4.0, max_bytes=1_000_000, backoff=0.05)  # limits for quick tests
HOST_SUFFIX = ".standin.test"
PRIVATE_URL = "http://10.255.255.1/x.jpg"  # refused before any connection; nothing listens there anyway
FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclass(frozen=True)
class Hit:
    """One request the stand-in answered."""

    host: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@lru_cache(maxsize=512)
def photo_file(seed: int, ext: str = "jpg", scale: float = 1.0) -> bytes:
    """A distinct 200-400 px picture per seed in a given format; `scale` < 1 gives a resized copy."""
    img = photo(seed, (200 + seed * 37 % 200, 200 + seed * 53 % 200))
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, FORMATS[ext], **({"quality": 90} if ext != "png" else {}))
    return buffer.getvalue()


def query_seed(query: str) -> int:
    """Where a query's default photos start: different queries get different pictures."""
    return zlib.crc32(query.encode()) % 100_000 * 1000


class BingStandin:
    """The server and its knobs. Use as a context manager, or through the `bing_standin` fixture.

    latency: seconds each image request waits before answering (for the benchmark).
    hang: seconds `/hang/` links wait, longer than a test's download timeout.
    huge_bytes: size of `/huge/` bodies (sent at once) and `/drip/` bodies (64 KiB every 50 ms).
    page_cap: most results per search page whatever `count` asks, as Bing does.
    per_query: how many good photos a query without an explicit result list gets.
    flaky_failures: how many 500s a `/flaky/` link answers before its photo.
    gate: image requests are held after `latency` while it is clear (tests open it once they have seen what
    they wait for: the requests held, counted in `active_total()`); set by default.
    """

    handler: type[BaseHTTPRequestHandler]  # set below the handler's definition; subclasses serve more routes

    def __init__(self, *, latency: float = 0.0, hang: float = 5.0, hosts: int = 8, page_cap: int = 35,
                 per_query: int = 60, flaky_failures: int = 1, huge_bytes: int = 4 * 1024 * 1024):
        self.latency = latency
        self.photo_latency = 0.0  # extra wait for good photos only: lets broken links answer first, deterministically
        self.hang = hang
        self.hosts = hosts
        self.page_cap = page_cap
        self.per_query = per_query
        self.flaky_failures = flaky_failures
        self.huge_bytes = huge_bytes
        self.results: dict[str, list[str]] = {}  # query -> result URLs; others get `per_query` photos
        self.down: set[str] = set()  # queries the search answers with 503
        self.hits: list[Hit] = []
        self.max_active: Counter[str] = Counter()  # per host: most image requests at once
        self.max_active_total = 0  # all hosts together
        self.gate = threading.Event()
        self.gate.set()
        self._active: Counter[str] = Counter()
        self._answered: Counter[str] = Counter()  # per path, for flaky links
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.standin = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="bing-standin",
                                        daemon=True)

    # ---- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> BingStandin:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        """What TRANSFERLAB_SEARCH_URL should be."""
        return f"http://127.0.0.1:{self.port}/images/async"

    def resolve(self, host: str, port: int) -> list[str]:
        """Resolver for Downloader: stand-in host names are loopback, IP literals themselves, the rest unknown."""
        if host == "127.0.0.1" or host.endswith(HOST_SUFFIX):
            return ["127.0.0.1"]
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not a stand-in host") from None
        return [host]

    # ---- URLs it serves ----------------------------------------------------------------

    def url(self, route: str, name: int | str, ext: str = "jpg", *, host: int | None = None, query: str = "") -> str:
        """http://h<host>.standin.test:<port>/<route>/<name>.<ext>; the host defaults to one picked by name."""
        host = zlib.crc32(str(name).encode()) % self.hosts if host is None else host
        return f"http://h{host}{HOST_SUFFIX}:{self.port}/{route}/{name}.{ext}" + (f"?{query}" if query else "")

    def photo_url(self, seed: int, ext: str = "jpg") -> str:
        return self.url("photo", seed, ext, host=seed % self.hosts)

    def query_photo_urls(self, query: str, n: int | None = None) -> list[str]:
        """The default results for a query: distinct photos, formats and hosts taking turns."""
        start = query_seed(query)
        return [self.photo_url(start + i, ("jpg", "png", "webp")[i % 3]) for i in range(n or self.per_query)]

    def redirect_url(self, target: str) -> str:
        return self.url("redirect", "to", query=f"u={quote(target, safe='')}")

    def image_hits(self) -> list[Hit]:
        with self._lock:
            return [hit for hit in self.hits if not hit.path.startswith("/images/async")]

    def search_hits(self) -> list[Hit]:
        with self._lock:
            return [hit for hit in self.hits if hit.path.startswith("/images/async")]

    # ---- answers -----------------------------------------------------------------------

    def _search_page(self, params: dict[str, str]) -> bytes:
        query = params.get("q", "")
        results = self.results[query] if query in self.results else self.query_photo_urls(query)
        first = int(params.get("first", "0"))
        count = min(int(params.get("count", "35")), self.page_cap)
        page = results[first:first + count]
        return "".join(_result_entry(i, url) for i, url in enumerate(page)).encode()

    @staticmethod
    def _image_route(path: str) -> tuple[str, str, str]:
        """('photo', '123', 'jpg') from '/photo/123.jpg'."""
        route, _, file = path.strip("/").partition("/")
        name, _, ext = file.rpartition(".")
        return route, name, ext

    def _track(self, host: str, delta: int) -> None:
        with self._lock:
            self._active[host] += delta
            self.max_active[host] = max(self.max_active[host], self._active[host])
            self.max_active_total = max(self.max_active_total, sum(self._active.values()))

    def active_total(self) -> int:
        """Image requests the stand-in holds now, all hosts together."""
        with self._lock:
            return sum(self._active.values())

    def _pass_gate(self) -> None:
        while not self.gate.wait(0.05) and not self._stopping.is_set():
            pass

    def _count_answer(self, path: str) -> int:
        with self._lock:
            self._answered[path] += 1
            return self._answered[path]

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _result_entry(index: int, url: str) -> str:
    """One result as Bing's async page writes it: JSON metadata HTML-escaped in an attribute."""
    metadata = html.escape(f'{{"cid":"c{index}","purl":"http://example.invalid/p{index}","murl":"{url}","turl":"t{index}"}}')
    return f'<div class="imgpt"><a class="iusc" m="{metadata}" href="/images/search?id={index}"></a></div>\n'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # don't wait for hanging requests when closing
    request_queue_size = 128  # the default backlog of 5 drops concurrent connects, which then stall for a second


class _Handler(BaseHTTPRequestHandler):
    server_version = "BingStandin/1.0"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    @property
    def standin(self) -> BingStandin:
        return self.server.standin  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        host = self.headers.get("Host", "")
        standin = self.standin
        with standin._lock:
            standin.hits.append(Hit(host, parts.path, params, dict(self.headers)))
        if parts.path == "/images/async" and params.get("q") in standin.down:
            self._send(503, b"unavailable", "text/plain")
            return
        if parts.path == "/images/async":
            self._send(200, standin._search_page(params), "text/html; charset=utf-8")
            return
        # An image request counts as active while the server holds it, before answering: the client's
        # host slot covers all of that time, so `max_active` shows the client's limit exactly.
        standin._track(host, +1)
        try:
            standin._wait(standin.latency)
            standin._pass_gate()
        finally:
            standin._track(host, -1)
        self._answer_image(parts.path, params)

    def _answer_image(self, path: str, params: dict[str, str]) -> None:
        standin = self.standin
        route, name, ext = standin._image_route(path)
        seed = int(name) if name.isdigit() else 1
        if route in ("photo", "mirror") and ext in FORMATS:  # a mirror is the same file at another URL
            standin._wait(standin.photo_latency)
            self._send(200, photo_file(seed, ext), CONTENT_TYPES[ext])
        elif route == "resized":
            self._send(200, photo_file(seed, "jpg", 0.6), "image/jpeg")
        elif route == "tiny":
            self._send(200, _tiny_png(), "image/png")
        elif route == "truncated":
            self._send(200, photo_file(seed)[: len(photo_file(seed)) // 2], "image/jpeg")
        elif route == "page":
            self._send(200, b"<!doctype html><html><body>Not a photo</body></html>", "text/html")
        elif route == "hang":
            standin._wait(standin.hang)
            self._send(200, photo_file(seed), "image/jpeg")
        elif route == "huge":
            self._send_big(declared=params.get("declared") == "1", pause=0.0)
        elif route == "drip":
            self._send_big(declared=True, pause=0.05)
        elif route == "loop":  # /loop/a.jpg <-> /loop/b.jpg
            self._redirect(f"/loop/{'b' if name == 'a' else 'a'}.jpg")
        elif route == "redirect":
            self._redirect(params["u"])
        elif route == "flaky" and standin._count_answer(path) <= standin.flaky_failures:
            self._send(500, b"try again", "text/plain")
        elif route == "flaky":
            self._send(200, photo_file(seed), "image/jpeg")
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_big(self, *, declared: bool, pause: float) -> None:
        """A JPEG-looking body of `huge_bytes`, in 64 KiB chunks `pause` seconds apart."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if declared:
            self.send_header("Content-Length", str(self.standin.huge_bytes))
        self.end_headers()
        chunk = b"\xff\xd8\xff\xe0" + bytes(64 * 1024 - 4)
        for _ in range(self.standin.huge_bytes // len(chunk)):
            if not self._write(chunk):
                return
            self.standin._wait(pause)

    def _write(self, data: bytes) -> bool:
        """Write unless the client has gone (it may rightly hang up on a body it does not want)."""
        try:
            self.wfile.write(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False


BingStandin.handler = _Handler


@lru_cache(maxsize=1)
def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    photo(3, (16, 16)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def bing_standin(monkeypatch) -> Iterator[BingStandin]:
    """A running stand-in with TRANSFERLAB_SEARCH_URL pointing at it."""
    with BingStandin() as standin:
        monkeypatch.setenv("TRANSFERLAB_SEARCH_URL", standin.endpoint)
        yield standin


@pytest.fixture
def standin(bing_standin, loopback_only, monkeypatch) -> BingStandin:
    """The stand-in, loopback allowed (it is the only host there is), every connection checked."""
    monkeypatch.setenv("TRANSFERLAB_ALLOW_PRIVATE_HOSTS", "1")
    return bing_standin


@pytest.fixture
def loopback_only(monkeypatch) -> list[tuple[str, int]]:
    """Fail any connection to an address other than 127.0.0.1; returns the addresses tried."""
    attempts: list[tuple[str, int]] = []
    real = socket.create_connection

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address) -> None:
        attempts.append(address[:2])
        if address[0] != "127.0.0.1":
            raise AssertionError(f"test tried to connect to {address}")

    def guarded(address, *args, **kwargs):
        check(address)
        return real(address, *args, **kwargs)

    def guarded_connect(sock, address):
        check(address)
        return real_connect(sock, address)

    def guarded_connect_ex(sock, address):
        check(address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "create_connection", guarded)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    return attempts
