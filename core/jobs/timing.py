"""Server side of timing the networks: a background task (`core.jobs.background`) that hands them to the warm
worker one at a time and waits for each answer, so the server never builds a network (once Keras is imported
there, every page run pays for it). One timing at a time per machine: timings side by side would slow each other.
"""

from __future__ import annotations

from core.jobs.background import Busy, Registry, Task
from core.jobs.server import WORKER
from core.model.backbones import BackboneSpec
from core.model.speed import speed_file

_measuring: Registry[Task] = Registry(lambda: Busy("The networks are being timed already; the figures appear "
                                                   "when that is done."))


def start_measuring(specs: list[BackboneSpec]) -> Task:
    """Time the backbones one after the other in the worker; the task's result: {label: why} of those that could
    not be timed. Busy if a timing is already running."""
    return _measuring.start(str(speed_file()), lambda: Task("speed", lambda task: _measure_all(specs, task),
                                                            what="Timing", text="Getting ready to time the networks…"))


def measuring() -> Task | None:
    """The running timing, or the last finished one until `forget_measuring`."""
    return _measuring.current(str(speed_file()))


def forget_measuring() -> None:
    _measuring.forget(str(speed_file()))


def _measure_all(specs: list[BackboneSpec], task: Task) -> dict[str, str]:
    failures = {}
    for i, spec in enumerate(specs):
        task.check()  # between networks: one being timed cannot be interrupted
        task.report(i, len(specs), f"Timing {spec.label} ({i + 1} of {len(specs)})…")
        if error := _time_in_worker(spec):
            failures[spec.label] = error
    task.report(len(specs), len(specs), "Done.")
    return failures


def _time_in_worker(spec: BackboneSpec) -> str | None:
    """Have the worker time one backbone (its figure lands in the speed file); why it could not, or None."""
    try:
        return WORKER.ask("speed", backbone=spec.name).get("error")
    except RuntimeError as exc:
        return str(exc)
