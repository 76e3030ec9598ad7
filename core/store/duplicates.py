"""Same picture, different file: perceptual-hash distances between photos."""

from __future__ import annotations

import sqlite3
from typing import Sequence, TypeVar

import numpy as np

NEAR_DUPLICATE_DISTANCE = 6  # of 64 hash bits: resized or recompressed copies fall well inside

T = TypeVar("T")


def popcount64(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64, vectorized."""
    as_bytes = values.astype(np.uint64).view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)


def nearest(con: sqlite3.Connection, phash: int) -> tuple[int, int] | None:
    """(image id, distance) of the most similar stored photo by perceptual hash."""
    rows = con.execute("SELECT id, phash FROM images").fetchall()
    if not rows:
        return None
    hashes = np.array([int(r["phash"], 16) for r in rows], dtype=np.uint64)
    distances = popcount64(hashes ^ np.uint64(phash))
    best = int(np.argmin(distances))
    return rows[best]["id"], int(distances[best])


def groups(items: Sequence[T], phashes: Sequence[int], max_distance: int) -> list[list[T]]:
    """Items whose hashes lie within max_distance of each other, chained (union-find); groups of two or more."""
    if len(items) < 2:
        return []
    hashes = np.array(phashes, dtype=np.uint64)
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(items) - 1):
        close = np.nonzero(popcount64(hashes[i + 1:] ^ hashes[i]) <= max_distance)[0] + i + 1
        for j in close:
            parent[find(int(j))] = find(i)
    found: dict[int, list[T]] = {}
    for i, item in enumerate(items):
        found.setdefault(find(i), []).append(item)
    return [g for g in found.values() if len(g) > 1]
