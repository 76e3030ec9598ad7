"""What is wrong with a project's class sizes, as facts the pages put into words: too few classes, a class with
no kept photos (after cleaning, or never), a thin class, and the biggest class far larger than the smallest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from core.store.records import ClassInfo

MAX_IMBALANCE = 3  # biggest kept class over smallest one, past which the classes count as unbalanced


@dataclass(frozen=True)
class BalanceProblem:
    """One problem: `kind` is "too_few_classes", "empty" (no kept photos; `rejected` says whether cleaning emptied
    it), "thin" (fewer than the minimum) or "unbalanced" (`name`/`count` the biggest class, `other`/`other_count`
    the smallest)."""

    kind: str
    name: str = ""
    count: int = 0
    rejected: bool = False
    other: str = ""
    other_count: int = 0


def balance_problems(classes: Sequence[ClassInfo], min_photos: int,
                     max_imbalance: int = MAX_IMBALANCE) -> list[BalanceProblem]:
    """The problems with these class sizes, most serious first: too few classes, then each empty or thin class in
    the order given, then the imbalance."""
    problems = []
    if len(classes) < 2:
        problems.append(BalanceProblem("too_few_classes", count=len(classes)))
    for c in classes:
        if c.kept == 0:
            problems.append(BalanceProblem("empty", c.name, 0, rejected=bool(c.rejected)))
        elif c.kept < min_photos:
            problems.append(BalanceProblem("thin", c.name, c.kept))
    filled = [c for c in classes if c.kept]
    if len(filled) >= 2:
        big = max(filled, key=lambda c: c.kept)
        small = min(filled, key=lambda c: c.kept)
        if big.kept > max_imbalance * small.kept:
            problems.append(BalanceProblem("unbalanced", big.name, big.kept, other=small.name,
                                           other_count=small.kept))
    return problems
