"""A training run's progress, as the worker writes it to the store and the server reads it back.

Both sides import this module; it imports neither.
"""

from __future__ import annotations

import time

from core.model.train import STAGE_EMBED

LOG_FILE = "log.txt"  # in the run folder: what went wrong, for the page
SNAPSHOT_DIR = "photos"  # in the run folder while it trains: the photos as they were when it started
# what a run says while it waits for its turn at memory-heavy work (core.jobs.turns)
WAITING = ("The check for suspect photos on Review is running: with this many photos the two at once could pass "
           "2 GB of memory, so training waits for it.")


class Pace:
    """Seconds left in a stage at the pace measured since its first progress past 0: work done at once before that
    (photos whose embeddings were already cached, a first epoch's set-up) says nothing about the pace of the rest."""

    def __init__(self):
        self.first: tuple[float, float] | None = None  # (time, fraction) of that first progress

    def left(self, now: float, fraction: float) -> float | None:
        if self.first is None:
            self.first = (now, fraction) if fraction > 0 else None
            return None
        since, start = self.first
        if fraction - start <= 0.02 or now <= since:
            return None
        return (now - since) / (fraction - start) * (1 - fraction)


def time_left(progress: dict, now: float | None = None) -> float | None:
    """Seconds the current stage should still take: its last estimate, counted down since it was written, never
    below 0 (0: the counted work is done, what follows it in the stage is not counted); None while unknown."""
    eta = progress.get("eta_seconds")
    if eta is None:
        return None
    if progress.get("fraction", 0.0) >= 1.0:
        return 0.0
    now = time.time() if now is None else now
    since = max(0.0, now - progress.get("written", now))  # progress written before this field existed: as fresh
    return max(0.0, eta - since)


def stage_fraction(stage: str, state: dict) -> float:
    """How far through the current stage the run is, 0..1."""
    if stage == STAGE_EMBED:
        return state["batch"] / state["batches"] if state.get("batches") else 0.0
    epochs = max(1, state.get("epochs") or 1)
    within = state["batch"] / state["batches"] if state.get("batches") else 0.0
    done = state.get("epoch", 0) - (1 if state.get("batches") and state.get("batch") else 0)
    return min(1.0, (max(done, 0) + within) / epochs)
