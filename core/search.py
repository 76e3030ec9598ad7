"""Bing image search: one page of result URLs at a time.

Keeps bing_image_downloader's conventions (query parameters, browser headers, how result
URLs are pulled out of the page) and reuses its pieces, with one fix: Bing's `first` is a
result offset, not the page counter the library sends.
"""

from __future__ import annotations

import html
import http.client
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bing_image_downloader.bing import Bing

from core import config

# The library keeps its headers and filter table on an instance; one idle instance lends us both.
_LIBRARY = Bing("", 1, Path("."), "off", 10, verbose=False)
HEADERS: dict[str, str] = dict(_LIBRARY.headers)
IMAGE_TYPES = ("photo", "clipart", "line", "linedrawing", "gif", "transparent")  # the choices a page can offer
_MEDIA_URL = re.compile("murl&quot;:&quot;(.*?)&quot;")
_UNAVAILABLE_HINT = "You can still add photos by uploading files or a zip on this page."


class SearchUnavailable(RuntimeError):
    """The image-search endpoint could not be reached; str() is one sentence for the user."""


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
                timeout: float = 10) -> list[str]:
    """Image URLs for `query` starting at result `offset`; an empty list once results run out."""
    params = search_params(query, offset, count, image_type=image_type, safe_search=safe_search)
    request = urllib.request.Request(f"{config.search_endpoint()}?{urllib.parse.urlencode(params)}", headers=HEADERS)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                raise SearchUnavailable(_unavailable(f"it answered HTTP {response.status}"))
            body = response.read()
    except urllib.error.HTTPError as exc:  # before URLError: it is a subclass
        raise SearchUnavailable(_unavailable(f"it answered HTTP {exc.code}")) from exc
    except urllib.error.URLError as exc:
        raise SearchUnavailable(_unavailable(_network_problem(exc.reason))) from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts and resets while reading the body
        raise SearchUnavailable(_unavailable(_network_problem(exc))) from exc
    return parse_result_urls(body.decode("utf-8", errors="replace"))


def _unavailable(detail: str) -> str:
    return f"Could not reach Bing image search ({detail}). {_UNAVAILABLE_HINT}"


def _network_problem(reason: object) -> str:
    """A few words on why a connection failed, for the user."""
    if isinstance(reason, socket.gaierror):
        return "the address could not be found; is this computer offline?"
    if isinstance(reason, TimeoutError):
        return "no answer in time"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused"
    return str(reason) or type(reason).__name__
