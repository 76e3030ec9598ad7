"""Synthetic photos for tests: varied enough that perceptual hashes tell them apart."""

from __future__ import annotations

import io
import zipfile

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


def class_photo(label: int, seed: int, size: tuple[int, int] = (200, 160)) -> Image.Image:
    """Photos of visually distinct 'classes' (warm stripes vs. cool blobs) that a frozen backbone separates easily."""
    rng = np.random.default_rng(1000 * label + seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    if label % 2 == 0:
        pattern = np.sin(yy / (4 + rng.random() * 4) + rng.random() * 6)[..., None]
        tint = np.array([220, 120 + rng.integers(0, 60), 40])
    else:
        cx, cy = rng.integers(0, w), rng.integers(0, h)
        pattern = np.cos(np.hypot(xx - cx, yy - cy) / (6 + rng.random() * 6))[..., None]
        tint = np.array([40, 90 + rng.integers(0, 60), 220])
    pixels = 128 + pattern * 0.45 * tint + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def class_photo_bytes(label: int, seed: int) -> bytes:
    """A class_photo as JPEG bytes, the way an upload arrives."""
    buffer = io.BytesIO()
    class_photo(label, seed).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def add_class_photos(project, counts: dict[str, int]) -> None:
    """Upload class_photo pictures into a project: {class name: number of photos}, the first class drawn as label 0."""
    for label, (name, n) in enumerate(counts.items()):
        for i in range(n):
            project.add_image(name, class_photo_bytes(label, i), source="upload", original_name=f"{name}_{i}.jpg")


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive of {name inside the archive: bytes}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def write_image_folder(root, counts: dict[str, int], offset: int = 0) -> None:
    """An ImageFolder tree of class_photo pictures: {class name: number of photos}."""
    from pathlib import Path

    for label, (name, n) in enumerate(counts.items()):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            class_photo(label, offset + i).save(folder / f"{name}_{offset + i}.jpg", quality=90)
