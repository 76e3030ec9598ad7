"""Bing image search: one page of result URLs at a time.

Keeps bing_image_downloader's conventions (query parameters, browser headers, how result
URLs are pulled out of the page) and reuses its pieces, with one fix: Bing's `first` is a
result offset, not the page counter the library sends.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from pathlib import Path

from bing_image_downloader.bing import Bing

from core import config

# The library keeps its filter table on an instance; one idle instance lends it (the headers: `download.HEADERS`).

from core.intake import download

# The library keeps its filter table on an instance; one idle instance lends it (the headers: `download.HEADERS`).
_LIBRARY = Bing("", 1, Path("."), "off", 10, verbose=False)
HEADERS = download.HEADERS  # what every request sends (the transport's, from the same library)
IMAGE_TYPES = ("photo", "clipart", "line", "linedrawing", "gif", "transparent")  # the choices a page can offer
_MEDIA_URL = re.compile("murl&quot;:&quot;(.*?)&quot;")
MAX_PAGE_BYTES = 5 * 1024 * 1024  # a real result page is about 100 KB
DEADLINE = 20.0  # seconds for a whole result page: DNS, connecting, headers and body


class SearchUnavailable(RuntimeError):
    """The image-search endpoint could not be reached; str() is one sentence for the user."""


class SearchCancelled(Exception):
    """The search request was cancelled before its page arrived."""


def search_params(query: str, offset: int, count: int, *, image_type: str = "photo",
                  safe_search: bool = True) -> dict[str, str]:
    """Bing's query parameters; an unknown image_type means no filter, as in the library."""
    return {
        "q": query,
        "first": str(offset),
        "count": str(count),
        "adlt": "strict" if safe_search else "off",
        "qft": _LIBRARY.get_filter(image_type),
    }


def parse_result_urls(page: str) -> list[str]:
    """Full-size image URLs in a Bing async result page, in page order."""
    return [html.unescape(url).replace(" ", "%20") for url in _MEDIA_URL.findall(page)]


def search_page(query: str, offset: int, count: int, *, image_type: str = "photo", safe_search: bool = True,
                timeout: float = 10, cancel: download.CancelSignal | None = None) -> list[str]:
    """Image URLs for `query` starting at result `offset`; an empty list once results run out.

    The request is bounded like a download: `timeout` per network step, DEADLINE in all,
    MAX_PAGE_BYTES at most, and `cancel` ends it within a fraction of a second.
    """
    params = search_params(query, offset, count, image_type=image_type, safe_search=safe_search)
    settings = download.DownloadSettings(workers=1, timeout=min(timeout, DEADLINE), deadline=DEADLINE,
                                         max_bytes=MAX_PAGE_BYTES, retries=0,
                                         allow_private=True)  # the endpoint is configured, not found on the web
    with download.Downloader(settings) as requester:
        page = requester.fetch(f"{config.search_endpoint()}?{urllib.parse.urlencode(params)}", cancel)
    if page.data is not None:
        return parse_result_urls(page.data.decode("utf-8", errors="replace"))
    if page.reason == "cancelled":
        raise SearchCancelled()
    raise SearchUnavailable(_unavailable(_problem(page.reason or "error")))


def _unavailable(detail: str) -> str:
    """The sentence for the user; each caller adds what can be done instead where it is (a page, a terminal)."""
    return f"Could not reach Bing image search ({detail})."


def _problem(reason: str) -> str:
    """A few words on why the search request failed, for the user."""
    if reason.startswith("http_"):
        return f"it answered HTTP {reason[5:]}"
    return {
        "dns": "the address could not be found; is this computer offline?",
        "timeout": "no answer in time",
        "connection": "the connection failed or was refused",
        "too_big": f"its answer was larger than {MAX_PAGE_BYTES // 1024**2} MB",
        "tls": "its secure connection could not be verified",
    }.get(reason, reason.replace("_", " "))
