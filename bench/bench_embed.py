"""Embedding throughput: LiteRT (XNNPACK) against `model.predict` on the same backbone and photos.

    python -m bench.bench_embed [N_PHOTOS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.common import dataset, table  # noqa: E402
from core.model.backbones import DEFAULT_BACKBONE, get_backbone  # noqa: E402
from core.model.embed import EmbeddingCache, embed_files  # noqa: E402


def main(n: int = 200) -> None:
    photos = sorted((dataset("flowers5") / "train").glob("*/*.jpg"))[:n]
    spec = get_backbone(DEFAULT_BACKBONE)
    shas = [p.name for p in photos]
    rows, vectors = [], {}
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"TRANSFERLAB_CACHE": tmp}):
        embed_files(photos[:16], shas[:16], spec, cache=EmbeddingCache(Path(tmp) / "warm.sqlite"))  # convert once
        for engine in ("litert", "keras"):
            cache = EmbeddingCache(Path(tmp) / f"{engine}.sqlite")
            start = time.perf_counter()
            result = embed_files(photos, shas, spec, cache=cache, engine=engine)
            seconds = time.perf_counter() - start
            vectors[engine] = result.vectors
            rows.append([engine, len(photos), seconds, len(photos) / seconds])
    ratio = rows[1][2] / rows[0][2]
    gap = float(np.abs(vectors["litert"] - vectors["keras"]).max())
    print(f"Embedding {len(photos)} flowers5 photos with {spec.label} ({spec.input_size}px), decode included, "
          f"{os.cpu_count()} CPU cores")
    print(table(["engine", "photos", "seconds", "photos/s"], rows))
    print(f"LiteRT speed-up over model.predict: {ratio:.2f}x (max abs difference of embeddings {gap:.4f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
