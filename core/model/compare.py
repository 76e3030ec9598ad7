"""Comparing training runs: the stages in which two runs came out the same."""

from __future__ import annotations

import math


def same_stages(a: list[dict], b: list[dict]) -> list[str]:
    """Stages (in `a`'s order) in which both runs recorded the same rows, strengths or epochs with equal metrics:
    a head solved twice on the same photos with the same settings, say. Their curves coincide on a chart."""
    def of(rows: list[dict], stage: str) -> list[dict]:
        return [r for r in rows if r["stage"] == stage]

    return [stage for stage in dict.fromkeys(row["stage"] for row in a) if alike(of(a, stage), of(b, stage))]


def alike(rows_a: list[dict], rows_b: list[dict]) -> bool:
    return len(rows_a) == len(rows_b) and all(
        x.keys() == y.keys() and all(same(x[k], y[k]) for k in x) for x, y in zip(rows_a, rows_b))


def same(x: object, y: object) -> bool:
    """Equal, floats to within rounding (a metric read back from JSON)."""
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return x == y
