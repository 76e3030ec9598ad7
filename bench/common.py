"""Helpers shared by the benchmarks: photo sets, a plain table printer, and Try it's time per photo."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def dataset(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        raise SystemExit(f"{path} is missing: the benchmarks measure on the real photo sets in ../shared/datasets")
    return path


@contextmanager
def cache_folder(path: str | None = None) -> Iterator[Path]:
    """TRANSFERLAB_CACHE pointed at `path` (default: a fresh temporary folder) while the bench runs, then as before:
    runs that share it compute each photo's embeddings and activations once."""
    previous = os.environ.get("TRANSFERLAB_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(path or Path(tmp) / "cache")
        os.environ["TRANSFERLAB_CACHE"] = str(cache)
        try:
            yield cache
        finally:
            if previous is None:
                os.environ.pop("TRANSFERLAB_CACHE", None)
            else:
                os.environ["TRANSFERLAB_CACHE"] = previous


def table(headers: list[str], rows: list[list]) -> str:
    """A fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def try_it_ms(predictor, images: list) -> float:
    """Median milliseconds of one decoded photo through a run's predictor, as Try it asks it, after a first call
    that allocates."""
    predictor.predict_images(images[:1])
    times = []
    for image in images:
        start = time.perf_counter()
        predictor.predict_images([image])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
