"""The exported web page in headless Chromium with the network cut off: served from a local folder, photos
uploaded through its file input, the live camera from Chromium's fake device. Shared by tests and bench."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageOps

from tests.browser import browser_page

CAMERA_SIZE = (640, 480)


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """`python -m http.server` on `folder` (what the zip's README says to run), on a free loopback port."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def unzip_page(zip_path: Path, destination: Path) -> Path:
    """The page's folder (the zip's one top-level folder) after unpacking."""
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(destination)
        tops = {name.split("/")[0] for name in zf.namelist()}
    assert len(tops) == 1, f"the zip should hold one folder, not {sorted(tops)}"
    return destination / tops.pop()


@contextmanager
def offline_page(url: str, extra_args: list[str] | None = None) -> Iterator[tuple[object, list[str]]]:
    """The page at `url` with every request to anywhere but its own server refused; yields (page, refused urls)."""
    refused: list[str] = []
    own = urlparse(url).netloc
    with browser_page(extra_args=extra_args) as page:
        def gate(route):
            if urlparse(route.request.url).netloc == own or route.request.url.startswith(("blob:", "data:")):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.context.route("**/*", gate)
        page.context.set_offline(False)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_function("document.body.dataset.ready === 'true' || !document.getElementById('status').hidden"
                               " && document.getElementById('status').classList.contains('error')", timeout=120_000)
        status = page.locator("#status")
        assert page.evaluate("document.body.dataset.ready") == "true", f"page did not load: {status.inner_text()} {errors}"
        yield page, refused


def classify_in_page(page, photos: list[Path], timeout_ms: float = 600_000) -> list[dict]:
    """Upload photos through the page's file input; each one's name, verdict, probabilities and time, in order."""
    page.set_input_files("#files", [str(p) for p in photos])
    page.wait_for_function(f"document.querySelectorAll('.card.photo[data-done]').length === {len(photos)}",
                           timeout=timeout_ms)
    cards = page.evaluate("""() => [...document.querySelectorAll('.card.photo')].reverse().map((card) => {
        const bars = card.querySelector('.bars');
        return {name: card.dataset.name, done: card.dataset.done, ms: Number(card.dataset.ms),
                verdict: bars.dataset.verdict, top: bars.dataset.top, text: bars.innerText, novelty: bars.dataset.novelty,
                probabilities: bars.dataset.probabilities ? JSON.parse(bars.dataset.probabilities) : null};
    })""")
    return cards


def camera_frames(page, frames: int = 10, timeout_ms: float = 120_000) -> dict:
    """Start the page's camera (unless on) and wait for `frames` live verdicts and a rate on the page; the latest."""
    if page.is_visible("#camera-start"):
        page.click("#camera-start")
    page.wait_for_function(f"Number(document.getElementById('live').dataset.frames) >= {frames}"
                           " && document.getElementById('live-rate').innerText.length > 0", timeout=timeout_ms)
    return page.evaluate("""() => { const live = document.getElementById('live');
        return {frames: Number(live.dataset.frames), top: live.dataset.top, verdict: live.dataset.verdict,
                probabilities: JSON.parse(live.dataset.probabilities),
                rate: document.getElementById('live-rate').innerText}; }""")


def write_y4m(path: Path, photo: Path, frames: int = 40) -> Image.Image:
    """A still 4:2:0 video of `photo` (cropped to 4:3) for Chromium's fake camera; returns the picture it shows,
    read back from its own YCbCr planes as a browser decodes them."""
    width, height = CAMERA_SIZE
    picture = ImageOps.fit(Image.open(photo).convert("RGB"), CAMERA_SIZE)
    y, cb, cr = picture.convert("YCbCr").split()
    half = (width // 2, height // 2)
    cb, cr = cb.resize(half), cr.resize(half)
    frame = b"FRAME\n" + y.tobytes() + cb.tobytes() + cr.tobytes()
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F20:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return Image.merge("YCbCr", (y, cb.resize(CAMERA_SIZE), cr.resize(CAMERA_SIZE))).convert("RGB")


def varied_photos(sources: list[Path], folder: Path) -> list[Path]:
    """Each source photo rewritten in a different size, shape and format (JPEG, PNG, WebP, GIF, BMP; progressive, EXIF-rotated,
    grayscale, with transparency), the mix every app user uploads."""
    folder.mkdir(parents=True, exist_ok=True)
    sides = (96, 150, 224, 300, 480, 800, 1200, 1900, 2600, 3400)
    out = []
    for i, source in enumerate(sources):
        image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
        side = sides[i % len(sides)]
        aspect = (0.6, 1.0, 1.33, 1.78, 0.75)[i % 5]
        image = image.resize((max(int(side * aspect), 40), side) if aspect < 1 else (side, max(int(side / aspect), 40)),
                             Image.Resampling.LANCZOS)
        kind = i % 9
        buffer = io.BytesIO()
        if kind == 0:
            image.save(buffer, "JPEG", quality=90)
            name = "photo.jpg"
        elif kind == 1:
            image.save(buffer, "PNG")
            name = "photo.png"
        elif kind == 2:
            image.save(buffer, "WEBP", quality=90)
            name = "photo.webp"
        elif kind == 3:  # stored on its side, EXIF says turn it upright
            exif = Image.Exif()
            exif[0x0112] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=92, exif=exif)
            name = "rotated.jpg"
        elif kind == 4:
            image.convert("L").save(buffer, "JPEG", quality=90)
            name = "gray.jpg"
        elif kind == 5:  # transparent border over the photo
            rgba = image.convert("RGBA")
            alpha = np.full((image.height, image.width), 255, np.uint8)
            alpha[: image.height // 10] = 0
            rgba.putalpha(Image.fromarray(alpha))
            rgba.save(buffer, "PNG")
            name = "transparent.png"
        elif kind == 6:
            image.save(buffer, "BMP")
            name = "photo.bmp"
        elif kind == 7:
            image.save(buffer, "GIF")
            name = "palette.gif"
        else:
            image.save(buffer, "JPEG", quality=75, progressive=True)
            name = "progressive.jpg"
        path = folder / f"{i:03d}-{source.parent.name}-{name}"
        path.write_bytes(buffer.getvalue())
        out.append(path)
    return out


def page_config(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text(encoding="utf-8"))
