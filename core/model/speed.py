"""How fast each backbone runs on this machine: milliseconds per photo, measured on demand and remembered.

Timing needs no pretrained weights, so every backbone is timed with random ones, offline too. LiteRT
is what embedding runs on, so that is what is timed when it is installed; Keras otherwise. Timing
several backbones takes minutes, so the app does it as a background task (`start_measuring`), one
at a time per machine: the figures are the machine's, kept in the shared cache for every project.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core import config
from core.jobs.background import Busy, Registry, Task
from core.model.backbones import BackboneSpec
from core.model.embed import LiteRTRunner, tflite_bytes
from core.files import atomic_write

SPEED_FILE = "backbone_speed.json"
BATCH = 8           # photos per timed call, as embedding batches them
ROUNDS = (3, 10)    # at least / at most this many timed calls; the fastest counts, since other work on
BUDGET_S = 2.0      # the machine only ever slows a call down; stop after the minimum once this time is spent

_file_lock = threading.Lock()


def speed_file() -> Path:
    return config.cache_dir() / SPEED_FILE


def cached_speeds() -> dict[str, dict]:
    """What has been measured so far: backbone name -> {ms_per_photo, engine, measured}."""
    try:
        return json.loads(speed_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def relative_speeds(speeds: dict[str, dict]) -> dict[str, float]:
    """Time per photo relative to the fastest measured backbone: 1.0 = fastest, 2.0 = twice as slow."""
    if not speeds:
        return {}
    fastest = min(s["ms_per_photo"] for s in speeds.values())
    return {name: s["ms_per_photo"] / fastest for name, s in speeds.items()}


def _runner(spec: BackboneSpec) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A batch -> features function for the backbone with random weights, and the engine it uses."""
    model = spec.build(weights=False)
    try:
        return LiteRTRunner(tflite_bytes(model, spec.input_size)), "LiteRT"
    except ImportError:
        return (lambda pixels: model.predict(pixels, verbose=0, batch_size=BATCH)), "Keras"


def time_backbone(spec: BackboneSpec) -> tuple[float, str]:
    """Milliseconds per photo of the backbone's forward pass on random pixels, and the engine timed."""
    run, engine = _runner(spec)
    pixels = np.random.default_rng(0).uniform(0, 255, (BATCH, spec.input_size, spec.input_size, 3))
    pixels = pixels.astype(np.float32)
    run(pixels)  # the first call allocates tensors and packs weights: not part of the steady speed
    began, calls = time.perf_counter(), []
    while len(calls) < ROUNDS[1] and (len(calls) < ROUNDS[0] or time.perf_counter() - began < BUDGET_S):
        start = time.perf_counter()
        run(pixels)
        calls.append(time.perf_counter() - start)
    return min(calls) * 1000 / BATCH, engine


def measure(spec: BackboneSpec) -> dict:
    """Time one backbone and remember the figure beside the others."""
    ms, engine = time_backbone(spec)
    entry = {"ms_per_photo": round(ms, 2), "engine": engine, "measured": time.time()}
    with _file_lock:
        speeds = cached_speeds()
        speeds[spec.name] = entry
        atomic_write(speed_file(), json.dumps(speeds, indent=2).encode())
    return entry


# ---- timing as a background task: one at a time on this machine (timings side by side would slow each other) ----

_measuring: Registry[Task] = Registry(lambda: Busy("The networks are being timed already; the figures appear "
                                                   "when that is done."))


def start_measuring(specs: list[BackboneSpec]) -> Task:
    """Time the backbones one after the other on a background thread; its result: {label: why} of those that
    could not be timed. Busy if a timing is already running."""
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
        try:
            measure(spec)
        except Exception as exc:  # one network that cannot be timed must not stop the others
            failures[spec.label] = f"{type(exc).__name__}: {exc}"
    task.report(len(specs), len(specs), "Done.")
    return failures
