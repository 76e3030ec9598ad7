"""Synthetic photos for tests: varied enough that perceptual hashes tell them apart."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(seed: int, size: tuple[int, int] = (240, 180)) -> Image.Image:
    """A smooth random picture with a few shapes; different seeds give different pictures."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    pixels = np.asarray(img).astype(np.int16)
    for _ in range(4):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        pixels[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def photo_bytes(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (240, 180), **save_args) -> bytes:
    buffer = io.BytesIO()
    photo(seed, size).save(buffer, fmt, **save_args)
    return buffer.getvalue()
