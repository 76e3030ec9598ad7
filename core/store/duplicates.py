"""Same picture, different file: perceptual-hash distances between photos."""

from __future__ import annotations

import sqlite3
from typing import Sequence, TypeVar

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

NEAR_DUPLICATE_DISTANCE = 6  # of 64 hash bits: resized or recompressed copies fall well inside

BLOCK = 1024  # rows of hash distances worked out at once

T = TypeVar("T")


def nearest(con: sqlite3.Connection, phash: int) -> tuple[int, int] | None:
    """(image id, distance) of the most similar stored photo by perceptual hash."""
    rows = con.execute("SELECT id, phash FROM images").fetchall()
    if not rows:
        return None
    hashes = np.array([int(r["phash"], 16) for r in rows], dtype=np.uint64)
    distances = np.bitwise_count(hashes ^ np.uint64(phash))
    best = int(np.argmin(distances))
    return rows[best]["id"], int(distances[best])


def groups(items: Sequence[T], phashes: Sequence[int], max_distance: int) -> list[list[T]]:
    """Items whose hashes lie within max_distance of each other, chained (connected components); groups of two or
    more, in the order of their first item, each in the items' order."""
    if len(items) < 2:
        return []
    hashes = np.array(phashes, dtype=np.uint64)
    rows, columns = [], []
    for start in range(0, len(hashes), BLOCK):  # a block of rows against all: memory stays BLOCK x n bytes
        block = hashes[start:start + BLOCK]
        r, c = np.nonzero(np.bitwise_count(block[:, None] ^ hashes[None, :]) <= max_distance)
        rows.append(r + start)
        columns.append(c)
    rows, columns = np.concatenate(rows), np.concatenate(columns)
    close = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(len(hashes), len(hashes)))
    _, labels = connected_components(close, directed=False)
    found: dict[int, list[T]] = {}
    for item, label in zip(items, labels):
        found.setdefault(int(label), []).append(item)
    return [g for g in found.values() if len(g) > 1]
