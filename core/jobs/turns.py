"""Memory-heavy work in turns across the app's processes, so a big project stays within a laptop's memory.

The worker's jobs (training, the TFLite conversions of heat maps and downloads) and the server's suspects check each
hold their photos' vectors or a converter's graphs: at 50,000 photos a training run took the worker to 1.6 GB and a
check took the server from 0.3 to 0.75 GB, and a check run during a conversion passed 2 GB together (issue 23,
docs/scale.md). So on a big project the check waits for the worker's jobs and they wait for it. The worker's own
jobs share their turn (a head-only run may train beside the last run's downloads, as before). The turn is a lock on
a file in the cache that both processes share (`flock`): the system releases it if its holder dies.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from core import config

try:
    import fcntl
except ImportError:  # Windows: no flock, so no turns (the work just runs, as before them)
    fcntl = None

LOCK_FILE = "heavy-work.lock"
BIG_PROJECT = 20_000  # kept photos from which the suspects check takes turns with the worker
POLL = 0.5            # seconds between tries while waiting


@contextlib.contextmanager
def turn(*, alone: bool, should_stop: Callable[[], bool] | None = None,
         on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold a turn at memory-heavy work: `alone` (the server's check) or shared with the worker's other jobs. Waits
    for it, calling `on_wait()` once if it has to; InterruptedError if `should_stop()` says so meanwhile."""
    if fcntl is None:
        yield
        return
    path = config.cache_dir() / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        mode = fcntl.LOCK_EX if alone else fcntl.LOCK_SH
        waited = False
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if on_wait is not None and not waited:
                    on_wait()
                waited = True
                if should_stop is not None and should_stop():
                    raise InterruptedError("stopped while waiting for a turn") from None
                time.sleep(POLL)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
