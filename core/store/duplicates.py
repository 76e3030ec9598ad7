"""Same picture, different file: perceptual-hash distances between photos, near ones found through a band index."""

from __future__ import annotations

import sqlite3
from typing import Sequence, TypeVar

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

NEAR_DUPLICATE_DISTANCE = 6  # of 64 hash bits: resized or recompressed copies fall well inside

BLOCK = 1024  # rows of hash distances worked out at once within one bucket

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
    unique, which = np.unique(np.array(phashes, dtype=np.uint64), return_inverse=True)
    rows, columns = close_pairs(unique, max_distance)
    close = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(len(unique), len(unique)))
    _, labels = connected_components(close, directed=False)
    found: dict[int, list[T]] = {}
    for item, label in zip(items, labels[which.ravel()]):  # the same hash twice: the same component
        found.setdefault(int(label), []).append(item)
    return [g for g in found.values() if len(g) > 1]


def close_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of distinct 64-bit hashes within max_distance bits, found without comparing all pairs.

    Multi-index hashing: cut the 64 bits into max_distance + 1 bands; two hashes that differ in at most
    max_distance bits agree exactly on at least one band (pigeonhole), so only hashes sharing a band's value are
    compared. For photo hashes (about balanced bits) that is ~n²·(d+1)/2^(64/(d+1)) comparisons instead of n²: at
    50,000 photos and d = 6 a few million, not 2.5 billion. A band with no bits puts every hash in one bucket, so
    any max_distance is answered exactly."""
    rows, columns = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for band in np.array_split(np.arange(64, dtype=np.uint64), max_distance + 1):
        keys = (hashes >> band[0]) & np.uint64((1 << len(band)) - 1) if len(band) else np.zeros_like(hashes)
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1], True])
        for start, end in zip(starts[:-1], starts[1:]):
            if end - start > 1:
                r, c = _within(hashes, order[start:end], max_distance)
                rows.append(r)
                columns.append(c)
    return np.concatenate(rows), np.concatenate(columns)


def _within(hashes: np.ndarray, bucket: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Close pairs among the hashes of one bucket, a block of rows at a time: memory stays BLOCK x bucket bytes."""
    rows, columns = [], []
    members = hashes[bucket]
    for start in range(0, len(bucket), BLOCK):
        r, c = np.nonzero(np.bitwise_count(members[start:start + BLOCK, None] ^ members[None, :]) <= max_distance)
        keep = r + start < c  # each pair once, never an item with itself
        rows.append(bucket[r[keep] + start])
        columns.append(bucket[c[keep]])
    return np.concatenate(rows), np.concatenate(columns)
