"""Image decoding and validation: the one gate every photo passes on its way into a dataset.

Photos come from the web, phones and zip files in every shape: rotated by EXIF, palette or
CMYK or 16-bit, animated, truncated, or not images at all. `decode_image` turns any of them
into a plain RGB picture or rejects it with a reason a person can read.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 32
MAX_PIXELS = 60_000_000  # ~ a 60 MP photo; larger is treated as a decompression bomb
THUMBNAIL_SIDE = 256
JPEG_QUALITY = 95

# Pillow's own bomb check only warns below 2x its limit; ours is explicit and applied before decoding.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

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
    """A validated photo: RGB pixels plus what the store records about it."""

    image: Image.Image
    sha256: str
    phash: int
    original_format: str
    stored_bytes: bytes
    extension: str

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, *, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Fully decode and normalize `data`; raise ImageRejected with a reason when it can't be used."""
    if not data:
        raise ImageRejected("empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            if opened.width * opened.height > max_pixels:
                raise ImageRejected("too_large")
            opened.seek(0)  # first frame of an animation
            opened.load()
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = "not_image" if isinstance(exc, UnidentifiedImageError) else "too_large"
        raise ImageRejected(reason) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected("truncated", f"The image file is truncated or corrupt ({exc}).") from exc

    fmt = opened.format or "unknown"
    rgb = to_rgb(ImageOps.exif_transpose(opened))
    if min(rgb.size) < min_side:
        raise ImageRejected("too_small", f"The image is {rgb.width}x{rgb.height}; at least {min_side} pixels a side are needed.")
    stored, ext = _bytes_to_store(data, opened, rgb, fmt)
    return DecodedImage(rgb, sha256_hex(data), perceptual_hash(rgb), fmt, stored, ext)


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


def _bytes_to_store(data: bytes, opened: Image.Image, rgb: Image.Image, fmt: str) -> tuple[bytes, str]:
    """Keep the original file when it is already a plain upright RGB JPEG/PNG; otherwise re-encode.

    Keeping originals avoids generation loss; re-encoding means every stored file decodes the
    same in Pillow and in TensorFlow (no EXIF rotation, no CMYK, no WebP/GIF quirks).
    """
    upright = opened.getexif().get(0x0112, 1) == 1
    if upright and opened.mode == "RGB" and fmt in ("JPEG", "PNG"):
        return data, ".jpg" if fmt == "JPEG" else ".png"
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), ".jpg"


def perceptual_hash(img: Image.Image) -> int:
    """64-bit difference hash: survives resizing and recompression, changes with content."""
    small = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def phash_distance(a: int, b: int) -> int:
    """Hamming distance between two perceptual hashes (0 = same picture)."""
    return (a ^ b).bit_count()


def center_square(img: Image.Image) -> Image.Image:
    """The largest centred square: what the model sees of a photo (ImageNet models learnt from such crops)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def load_rgb(source: Path | bytes | Image.Image, size: int, *, flip: bool = False) -> np.ndarray:
    """A photo as the (size, size, 3) uint8 array models see, in training and prediction alike:
    upright, RGB, centre square, resized; optionally mirrored (training augmentation)."""
    if isinstance(source, Image.Image):
        img = source
    else:
        img = Image.open(source if isinstance(source, Path) else io.BytesIO(source))
        img.draft("RGB", (size, size))  # JPEG decodes at reduced scale: much faster for big photos
        img = ImageOps.exif_transpose(img)
    img = center_square(to_rgb(img)).resize((size, size), Image.Resampling.BILINEAR)
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(img, dtype=np.uint8)


def thumbnail_bytes(path: Path, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small JPEG of the photo, aspect kept, for grids."""
    img = Image.open(path)
    img.draft("RGB", (side, side))
    img = to_rgb(ImageOps.exif_transpose(img))
    img.thumbnail((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
