"""A hostile stand-in for Bing and its image hosts: every trick a bad server or file can play.

Loopback only, like `BingStandin`, and every case ends on its own (`limit` seconds at most), so
a client that fails to give up makes a test slow, never stuck. Routes, besides BingStandin's:

  /headerdrip/N.jpg   status line, then one header byte every `drip` seconds
  /bodydrip/N.jpg     headers, then one body byte every `drip` seconds
  /silent/N.jpg       accepts the request and never answers
  /eps/N.jpg          PostScript served as image/jpeg
  /forgedjpeg/N.jpg   a 6 KB JPEG whose header says 7000x8000
  /forgedpng/N.png    a 180 KB PNG of 59 MP
  /html/N.jpg         an HTML page served as image/jpeg

Search queries `endless` (a result page that never ends, sent as fast as it is read) and `slow`
(one byte every `drip` seconds) attack the search request itself.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.bing_standin import BingStandin, _Handler
from tests.hostile_files import EPS, HTML, forged_jpeg, forged_png

PRIVATE_IPV6_FORMS = ["::127.0.0.1", "::ffff:127.0.0.1", "::ffff:0:7f00:1", "64:ff9b::a00:1", "64:ff9b:1::a00:1",
                      "2002:a00:1::1", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "fec0::1", "::1"]
HOSTILE_ROUTES = ("headerdrip", "bodydrip", "silent", "eps", "forgedjpeg", "forgedpng", "html")
ENDLESS_QUERY, SLOW_QUERY = "endless", "slow"


class HostileStandin(BingStandin):
    """BingStandin plus hostile routes and search pages; `drip` and `limit` bound each case in time."""

    def __init__(self, *, drip: float = 0.5, limit: float = 60.0, **kwargs):
        super().__init__(**kwargs)
        self.drip = drip
        self.limit = limit
        forged_png(), forged_jpeg()  # made once, now: a slow first answer would look like a hostile one

    def hostile_urls(self, *, private_redirects: bool = False) -> list[str]:
        """One URL per hostile route; with private_redirects, also redirects to each private IPv6 form
        (only for a client that refuses private addresses: the others would connect there)."""
        urls = [self.url(route, i, "png" if route == "forgedpng" else "jpg", host=i % self.hosts)
                for i, route in enumerate(HOSTILE_ROUTES)]
        if private_redirects:
            urls += [self.redirect_url(f"http://[{form}]:{self.port}/photo/1.jpg") for form in PRIVATE_IPV6_FORMS]
        return urls

    def dripping(self) -> Iterator[None]:
        """Yields every `drip` seconds until `limit` has passed or the stand-in stops."""
        ends = time.monotonic() + self.limit
        while time.monotonic() < ends and not self._stopping.is_set():
            yield
            self._wait(self.drip)


class _HostileHandler(_Handler):
    def do_GET(self) -> None:
        if self.path.startswith("/images/async") and f"q={ENDLESS_QUERY}&" in self.path + "&":
            self._endless_page()
        elif self.path.startswith("/images/async") and f"q={SLOW_QUERY}&" in self.path + "&":
            self._drip_body(b"<div>" * 10_000, "text/html")
        else:
            super().do_GET()

    def _answer_image(self, path: str, params: dict[str, str]) -> None:
        route, _, _ = self.standin._image_route(path)
        if route == "headerdrip":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for _ in self.standin.dripping():
                if not self._write(b"X"):
                    return
        elif route == "bodydrip":
            self._drip_body(bytes(100_000), "image/jpeg")
        elif route == "silent":
            for _ in self.standin.dripping():
                pass
        elif route in ("eps", "forgedjpeg", "forgedpng", "html"):
            body = {"eps": lambda: EPS, "forgedjpeg": forged_jpeg, "forgedpng": forged_png, "html": lambda: HTML}[route]
            self._send(200, body(), "image/png" if route == "forgedpng" else "image/jpeg")
        else:
            super()._answer_image(path, params)

    @property
    def standin(self) -> HostileStandin:
        return self.server.standin  # type: ignore[attr-defined]

    def _drip_body(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i, _ in enumerate(self.standin.dripping()):
            if i >= len(body) or not self._write(body[i:i + 1]):
                return

    def _endless_page(self) -> None:
        """Result entries, as fast as the client reads them, until `limit` (or 256 MB) is reached."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        chunk = b'<div class="imgpt">' * 4096
        ends = time.monotonic() + self.standin.limit
        for _ in range(256 * 1024 ** 2 // len(chunk)):
            if time.monotonic() > ends or self.standin._stopping.is_set() or not self._write(chunk):
                return


HostileStandin.handler = _HostileHandler


@pytest.fixture
def hostile(monkeypatch, loopback_only) -> Iterator[HostileStandin]:
    """A running hostile stand-in with TRANSFERLAB_SEARCH_URL pointing at it; private hosts not allowed."""
    with HostileStandin() as standin:
        monkeypatch.setenv("TRANSFERLAB_SEARCH_URL", standin.endpoint)
        monkeypatch.delenv("TRANSFERLAB_ALLOW_PRIVATE_HOSTS", raising=False)
        yield standin
