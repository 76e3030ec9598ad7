"""Waiting in tests on the code's own signals, with limits generous enough for a loaded machine."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, seconds: float = 60, step: float = 0.05) -> T:
    """Poll until `condition()` is true and return it; fail saying `what` was not seen within `seconds`."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {seconds:g} s"
        time.sleep(step)
    return value


def settled(count: Callable[[], int], what: str, quiet: float = 1.0, seconds: float = 60) -> int:
    """`count()` once it has stopped changing for `quiet` seconds (fail if it never does within `seconds`)."""
    deadline = time.monotonic() + seconds
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"{what} never settled within {seconds:g} s"
        time.sleep(0.05)
        if (now := count()) != last:
            last, since = now, time.monotonic()
    return last
