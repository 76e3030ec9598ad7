"""Near-duplicate groups from perceptual hashes (np.bitwise_count distances, scipy connected components)."""

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
