"""Image decoding and validation: the one gate every photo passes on its way into a dataset.

Photos come from the web, phones and zip files in every shape: rotated by EXIF, palette or
CMYK or 16-bit, animated, truncated, or not images at all. `decode_image` turns any of them
into a plain RGB picture or rejects it with a reason a person can read.

Every decode, for storing, training, evaluating or predicting, goes through `_open` and
`_decoded`: only the raster formats in RASTER_FORMATS are tried (never PostScript, which Pillow
hands to Ghostscript), any decoder failure becomes ImageRejected, and the pixels a decode
allocates are taken from one budget shared by all threads, so a batch of forged 59 MP files
costs the same memory on 2 cores as on 64. JPEGs larger than WORKING_PIXELS decode at a reduced
scale; other formats are reduced right after decoding.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

MIN_SIDE = 32
MAX_PIXELS = 60_000_000  # ~ a 60 MP photo; larger is treated as a decompression bomb
WORKING_PIXELS = 16_000_000  # what a decoded photo is reduced to: more than the models or thumbnails need
DECODE_BUDGET_PIXELS = 64_000_000  # decoded pixels alive at once in all threads (~256 MB at 4 bytes a pixel)
# What Pillow may try to read. Never EPS/PS (Ghostscript), PDF, or exotic decoders nobody uploads photos in.
RASTER_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes phone MPO files
THUMBNAIL_SIDE = 256
JPEG_QUALITY = 95

# Pillow's own bomb check only warns below 2x its limit; ours is explicit and applied before decoding.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Pillow allocates pixels in blocks (16 MB by default). glibc keeps freed blocks below its 32 MB mmap
# threshold in per-thread arenas, so every decode thread would hoard a big photo's worth of memory;
# larger blocks are mapped and unmapped, and a freed photo goes back to the system (small images are
# allocated at their own size either way).
Image.core.set_block_size(64 * 1024 * 1024)

REJECT_REASONS = {
    "empty": "The file is empty (0 bytes).",
    "not_image": "The file is not a picture (expected JPEG, PNG, WebP, GIF, BMP or TIFF).",
    "truncated": "The image file is truncated or corrupt.",
    "too_small": f"The image is smaller than {MIN_SIDE} pixels on a side.",
    "too_large": f"The image has more than {MAX_PIXELS // 1_000_000} million pixels.",
}


class ImageRejected(ValueError):
    """A file that cannot enter a dataset; `reason` is a short code, str() a sentence."""

    def __init__(self, reason: str, detail: str | None = None):
        self.reason = reason
        super().__init__(detail or REJECT_REASONS.get(reason, reason))


@dataclass(frozen=True)
class DecodedImage:
    """A validated photo: RGB pixels (at most WORKING_PIXELS of them) plus what the store records about it."""

    image: Image.Image
    sha256: str
    phash: int
    original_format: str
    stored_bytes: bytes
    extension: str
    size: tuple[int, int]  # of the stored file, which may be larger than `image`

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PixelBudget:
    """Decoded pixels that may be alive at once across threads; a decode waits for its share."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        """Reserve `pixels` (at most the whole budget) for the duration of the block."""
        pixels = min(pixels, self.limit)
        with self._changed:
            self._changed.wait_for(lambda: self.in_use + pixels <= self.limit)
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()

    def reset_peak(self) -> None:
        with self._changed:
            self.peak = self.in_use


DECODE_BUDGET = PixelBudget(DECODE_BUDGET_PIXELS)


def _open(source: Path | bytes, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Image.Image:
    """Open (not decode) a file of an allowed raster format whose header size is within limits."""
    if not source or (isinstance(source, Path) and source.stat().st_size == 0):
        raise ImageRejected("empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(source if isinstance(source, Path) else io.BytesIO(source), formats=RASTER_FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("not_image" if isinstance(exc, UnidentifiedImageError) else "too_large") from exc
    except Exception as exc:  # a broken header trips parsers in many ways; all of them mean "not usable"
        raise ImageRejected("truncated", f"The image file is truncated or corrupt ({exc}).") from exc
    if opened.width * opened.height > max_pixels:
        opened.close()
        raise ImageRejected("too_large")
    if min(opened.size) < min_side:
        opened.close()
        raise ImageRejected("too_small", f"The image is {opened.width}x{opened.height}; "
                                         f"at least {min_side} pixels a side are needed.")
    return opened


@contextmanager
def _decoding(opened: Image.Image, *, keep_side: int | None = None,
              fit_pixels: int = WORKING_PIXELS) -> Iterator[Image.Image]:
    """The first frame of an `_open`ed file as upright RGB, paid for from DECODE_BUDGET while the block runs.

    Reduced as far as both sides stay at least `keep_side` pixels (at most 8x, like a JPEG decoded at
    reduced scale), or else to at most about `fit_pixels`. JPEGs are decoded reduced; other formats
    are reduced right after decoding, before any conversion copies them.
    """
    def factor(size: tuple[int, int]) -> int:
        return _keeping(size, keep_side) if keep_side else _reduction(size, fit_pixels)

    if opened.format in ("JPEG", "MPO") and factor(opened.size) > 1:
        opened.draft("RGB", (opened.width // factor(opened.size), opened.height // factor(opened.size)))
    with DECODE_BUDGET.hold(opened.width * opened.height):
        try:
            opened.seek(0)  # first frame of an animation
            opened.load()
            # Only now: reading a PNG's EXIF decodes the whole image first (its eXIf chunk may follow the pixels).
            rgb = _upright(to_rgb(_reduced(opened, factor(opened.size))), _orientation(opened))
        except Exception as exc:  # any decoder failure costs this photo only, never the caller
            raise ImageRejected("truncated", f"The image file is truncated or corrupt ({exc}).") from exc
        yield rgb


def _keeping(size: tuple[int, int], keep_side: int) -> int:
    """The largest reduction (1, 2, 4 or 8) that keeps both sides at least `keep_side`: JPEG's draft rule."""
    most = min(size) // max(keep_side, 1)
    return next(s for s in (8, 4, 2, 1) if most >= s or s == 1)


def _reduction(size: tuple[int, int], fit_pixels: int) -> int:
    """Smallest power-of-two factor per side that brings the picture within `fit_pixels`."""
    factor = 1
    while size[0] * size[1] / factor ** 2 > fit_pixels:
        factor *= 2
    return factor


def _reduced(img: Image.Image, factor: int) -> Image.Image:
    """`img` shrunk by `factor` per side with a box filter."""
    if factor == 1:
        return img
    if img.mode not in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
        img = to_rgb(img)
    return img.reduce(factor)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not cost the photo
        return 1


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _upright(img: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation, as ImageOps.exif_transpose does, to pixels that no longer carry it."""
    method = _TRANSPOSE.get(orientation)
    return img.transpose(method) if method is not None else img


def decode_image(data: bytes, *, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Fully decode and normalize `data`; raise ImageRejected with a reason when it can't be used."""
    opened = _open(data, max_pixels=max_pixels, min_side=min_side)
    fmt = opened.format or "unknown"
    keep_original = opened.mode == "RGB" and fmt in ("JPEG", "PNG")
    size = opened.size
    with _decoding(opened) as rgb:
        phash = perceptual_hash(rgb)
        if keep_original and _orientation(opened) == 1:  # read after decoding: see _decoding
            stored, ext = data, ".jpg" if fmt == "JPEG" else ".png"
        else:  # reduced photos are stored reduced
            stored, ext, size = _jpeg(rgb), ".jpg", rgb.size
    return DecodedImage(rgb, sha256_hex(data), phash, fmt, stored, ext, size)


def _jpeg(rgb: Image.Image) -> bytes:
    """Re-encoded, so every stored file decodes the same in Pillow and in TensorFlow (no EXIF rotation, no
    CMYK, no WebP/GIF quirks); originals that are already plain upright RGB JPEG/PNG are kept (no generation loss)."""
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def to_rgb(img: Image.Image) -> Image.Image:
    """Plain 8-bit RGB from any mode: palette, alpha (over white), CMYK, 16-bit, grayscale."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        scale = 257.0 if np.asarray(img).max() > 255 else 1.0  # 16-bit data vs. 8-bit data in an int mode
        gray = (np.asarray(img, dtype=np.float64) / scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if img.mode == "F":
        return Image.fromarray(np.asarray(img).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def perceptual_hash(img: Image.Image) -> int:
    """64-bit difference hash: survives resizing and recompression, changes with content."""
    small = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def phash_distance(a: int, b: int) -> int:
    """Hamming distance between two perceptual hashes (0 = same picture)."""
    return (a ^ b).bit_count()


def square_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred square of a (width, height) picture: all a model sees of
    a photo (ImageNet models learnt from such crops)."""
    w, h = size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def unseen_share(size: tuple[int, int]) -> float:
    """The share of a (width, height) picture that falls outside its centre square, so no model sees it."""
    w, h = size
    return 1 - min(w, h) / max(w, h)


def dim_outside_square(pixels: np.ndarray, keep: float = 0.45) -> np.ndarray:
    """An (H, W, 3) uint8 picture with everything outside its centre square darkened to `keep` of its brightness."""
    left, top, right, bottom = square_box((pixels.shape[1], pixels.shape[0]))
    shown = (pixels * keep).astype(np.uint8)
    shown[top:bottom, left:right] = pixels[top:bottom, left:right]
    return shown


def _square(img: Image.Image, size: int) -> Image.Image:
    """The centre square resized to size x size, in one pass: no full-size crop is copied."""
    return img.resize((size, size), Image.Resampling.BILINEAR, box=square_box(img.size))


def load_rgb(source: Path | bytes | Image.Image, size: int, *, flip: bool = False) -> np.ndarray:
    """A photo as the (size, size, 3) uint8 array models see, in training and prediction alike:
    upright, RGB, centre square, resized; optionally mirrored (training augmentation).
    Files go through the same gate as imports (formats, size limits, shared decode budget)."""
    pixels = load_rgb_sizes(source, (size,))[0]
    return np.ascontiguousarray(pixels[:, ::-1]) if flip else pixels


def load_rgb_sizes(source: Path | bytes | Image.Image, sizes: Sequence[int]) -> list[np.ndarray]:
    """The photo as `load_rgb` gives it at each of `sizes`, decoded once (reduced no further than the largest
    size needs): what the members of a joined backbone see."""
    if isinstance(source, Image.Image):
        return _squares(to_rgb(source), sizes)
    with _decoding(_open(source), keep_side=max(sizes)) as decoded:
        return _squares(decoded, sizes)


def _squares(rgb: Image.Image, sizes: Sequence[int]) -> list[np.ndarray]:
    """The centre square at each of `sizes`, each size resized once (the same array where a size repeats)."""
    made = {size: np.asarray(_square(rgb, size), dtype=np.uint8) for size in dict.fromkeys(sizes)}
    return [made[size] for size in sizes]


def decode_at(source: Path | bytes, side: int) -> Image.Image:
    """A photo through the same gate as imports, as upright RGB no larger than `side` a side (aspect kept), decoded
    at reduced scale where the format allows: a forged 60 MP photo costs little more than its screen size."""
    with _decoding(_open(source), keep_side=side) as img:
        img = img.copy() if img.size[0] <= side and img.size[1] <= side else img
        img.thumbnail((side, side), Image.Resampling.BILINEAR)
    return img


def thumbnail_bytes(path: Path, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small JPEG of the photo, aspect kept, for grids."""
    with _decoding(_open(path), keep_side=side) as img:
        img.thumbnail((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
