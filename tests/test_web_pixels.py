"""The web page's pixels are the app's, byte for byte, in headless Chromium: core/serving/web/preprocess.js against
core.images.load_rgb on photos of every size and format, large JPEGs included (the app decodes those at reduced scale
with libjpeg-turbo, which the page does in draft.js: every chroma layout it takes, progressive, grey, each EXIF
orientation). No model needed: the page's own modules, served, on photos uploaded through a file input."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from core.images import load_rgb
from core.serving.web_export import PAGE_DIR
from tests.browser import browser_page
from tests.conftest import SHARED_DATASETS
from tests.photos import class_photo
from tests.web_page import served, varied_photos

pytestmark = pytest.mark.browser

HARNESS = """<!doctype html><html><body><input id="files" type="file" multiple>
<script type="module">
import {photoPixels} from './preprocess.js';
window.pixelsOf = async (size) => {
  const out = [];
  for (const file of document.getElementById('files').files) {
    const rgb = await photoPixels(file, size);
    let text = '';
    for (let i = 0; i < rgb.length; i += 0x8000) text += String.fromCharCode(...rgb.subarray(i, i + 0x8000));
    out.push(btoa(text));
  }
  return out;
};
document.body.dataset.ready = 'true';
</script></body></html>"""


def sources(count: int) -> list[Image.Image]:
    """Real photos where the shared sets are here (hymenoptera), drawn ones without them."""
    folder = SHARED_DATASETS / "hymenoptera" / "train"
    paths = sorted(folder.glob("*/*.jpg"))[:count] if folder.is_dir() else []
    return [Image.open(p) for p in paths] or [class_photo(i % 2, i) for i in range(count)]


def large_jpegs(folder: Path) -> list[Path]:
    """JPEGs the app decodes at 1/2, 1/4 and 1/8 scale, in every chroma layout Pillow writes, progressive, grey, low
    quality, and stored in each of the eight EXIF orientations."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, photo in enumerate(sources(6)):
        picture = ImageOps.exif_transpose(photo).convert("RGB")
        side = (500, 1000, 1900, 2300, 3700, 1201)[i]
        picture = picture.resize((side + 37 * i, side * 3 // 4 + 5 * i), Image.Resampling.LANCZOS)
        variants = {"420": dict(quality=90), "444": dict(quality=95, subsampling=0), "422": dict(quality=85, subsampling=1),
                    "q25": dict(quality=25), "progressive": dict(quality=80, progressive=True)}
        for name, options in variants.items():
            out.append(folder / f"{i}-{name}.jpg")
            picture.save(out[-1], **options)
        out.append(folder / f"{i}-gray.jpg")
        picture.convert("L").save(out[-1], quality=85)
        exif = Image.Exif()
        for orientation in ((i % 8 + 1, (i + 3) % 8 + 1) if i < 5 else (2, 4, 5, 7)):
            exif[0x0112] = orientation
            out.append(folder / f"{i}-orientation{orientation}.jpg")
            picture.save(out[-1], quality=88, exif=exif)
    return out


def size_of(photo: Path) -> tuple[int, int]:
    with Image.open(photo) as image:
        return image.size


def page_folder(root: Path) -> Path:
    """The page's own files beside a bare page that runs preprocess.js on the photos of its file input."""
    folder = root / "page"
    shutil.copytree(PAGE_DIR, folder)
    (folder / "harness.html").write_text(HARNESS)
    return folder


def differing(folder: Path, photos: list[Path], size: int) -> dict[str, tuple[int, float]]:
    """Photo name -> (largest, mean) gap between the page's pixels and the app's, for the photos where they differ."""
    out = {}
    for photo, pixels in zip(photos, page_pixels(folder, photos, size)):
        expected = load_rgb(photo, size)
        if not np.array_equal(pixels, expected):
            gap = np.abs(pixels.astype(int) - expected)
            out[photo.name] = (int(gap.max()), round(float(gap.mean()), 3))
    return out


def page_pixels(folder: Path, photos: list[Path], size: int) -> list[np.ndarray]:
    with served(folder) as url, browser_page() as page:
        page.goto(url + "harness.html")
        page.wait_for_function("document.body.dataset.ready === 'true'", timeout=60_000)
        page.set_input_files("#files", [str(p) for p in photos])
        encoded = page.evaluate(f"window.pixelsOf({size})")
    return [np.frombuffer(base64.b64decode(e), np.uint8).reshape(size, size, 3) for e in encoded]


@pytest.mark.parametrize("size", [224, 260])
def test_page_pixels_are_the_apps_byte_for_byte(tmp_path, size):
    photos = large_jpegs(tmp_path / "large")
    if size == 224:  # the export test's mix of sizes and formats (every format, 96 to 3400 pixels)
        originals = tmp_path / "originals"
        originals.mkdir()
        for i, photo in enumerate(sources(45)):
            photo.save(originals / f"{i}.jpg", quality=95)
        photos += varied_photos(sorted(originals.glob("*.jpg"), key=lambda p: int(p.stem)), tmp_path / "varied")
    assert differing(page_folder(tmp_path), photos, size) == {}


def test_shared_sets_large_jpegs_are_the_apps_byte_for_byte(tmp_path):
    """Every photo of the shared sets that the app decodes at reduced scale (46: phone and web JPEGs, progressive,
    Adobe-marked, 4:2:2 and 4:4:0 chroma among them), as they are."""
    photos = [p for p in sorted(SHARED_DATASETS.glob("*/*/*/*")) if p.suffix.lower() in (".jpg", ".jpeg")
              and min(size_of(p)) >= 2 * 224]
    if not photos:
        pytest.skip("the shared data sets are not here")
    assert differing(page_folder(tmp_path), photos, 224) == {}
