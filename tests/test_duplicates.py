"""Near-duplicate groups from perceptual hashes (np.bitwise_count distances, scipy connected components)."""

import numpy as np
import pytest

from core.store import duplicates

A, B, C = 0, 0b111, 0b111111111           # A-B 3 bits, B-C 6, A-C 9: one group only by chaining through B
D = 0xFFFF_FFFF_FFFF_FFFF                 # the top bit set: popcount of full 64-bit values
E = D ^ 1
F = 0x0F0F_0F0F_0F0F_0F0F                 # 32 bits from every other hash: alone
HASHES = {"a": A, "d": D, "b": B, "f": F, "e": E, "c": C}


@pytest.mark.parametrize("block", [1024, 2])  # 2: distances worked out a few rows at a time give the same groups
def test_groups_chain_close_hashes_in_the_items_order(monkeypatch, block):
    monkeypatch.setattr(duplicates, "BLOCK", block)
    items = list(HASHES)
    assert duplicates.groups(items, list(HASHES.values()), 6) == [["a", "b", "c"], ["d", "e"]]
    assert duplicates.groups(items, list(HASHES.values()), 5) == [["a", "b"], ["d", "e"]]
    assert duplicates.groups(items, list(HASHES.values()), 0) == []


def test_fewer_than_two_items_make_no_group():
    assert duplicates.groups([], [], 6) == [] and duplicates.groups(["a"], [A], 64) == []


def _brute_force_groups(items, hashes, max_distance):
    """Reference: union of every pair within max_distance, by hand."""
    parent = list(range(len(items)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if (hashes[i] ^ hashes[j]).bit_count() <= max_distance:
                parent[root(j)] = root(i)
    found = {}
    for i, item in enumerate(items):
        found.setdefault(root(i), []).append(item)
    return [g for g in found.values() if len(g) > 1]


@pytest.mark.parametrize("max_distance", [0, 1, 3, 6, 10, 63, 64])
def test_the_band_index_finds_exactly_the_groups_all_pairs_find(max_distance):
    rng = np.random.default_rng(max_distance)
    hashes = [int(h) for h in rng.integers(0, 2**64 - 1, 300, dtype=np.uint64, endpoint=True)]
    for i in range(0, 300, 3):  # near copies at every distance up to 12 bits, some chained, some the same hash
        flips = rng.choice(64, int(rng.integers(0, 13)), replace=False)
        hashes[i + 1] = hashes[i] ^ int(sum(1 << int(b) for b in flips))
    items = [f"p{i}" for i in range(len(hashes))]
    assert duplicates.groups(items, hashes, max_distance) == _brute_force_groups(items, hashes, max_distance)


def test_near_duplicates_are_found_without_comparing_all_pairs(monkeypatch):
    compared = []
    within = duplicates._within
    monkeypatch.setattr(duplicates, "_within", lambda h, bucket, d: compared.append(len(bucket) ** 2) or within(h, bucket, d))
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64, endpoint=True)
    hashes[1::2] = hashes[::2] ^ np.uint64(0b101)  # every other photo has a near copy (2 bits apart)
    rows, columns = duplicates.close_pairs(np.unique(hashes), 6)
    assert len({(min(r, c), max(r, c)) for r, c in zip(rows.tolist(), columns.tolist())}) == 10_000
    assert sum(compared) < len(hashes) ** 2 / 50  # all pairs would be 4e8
