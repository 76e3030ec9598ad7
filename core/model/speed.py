"""How fast each backbone runs on this machine: milliseconds per photo, measured on demand and remembered.

Timing needs no pretrained weights, so every backbone is timed with random ones, offline too. LiteRT
is what embedding runs on, so that is what is timed when it is installed; Keras otherwise. The timing
itself builds networks, so it runs in the worker process (`measure`, asked by `core.jobs.timing`); the
figures are the machine's, kept in the shared cache for every project, and read by the server here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core import config
from core.files import atomic_write
from core.model.backbones import BackboneSpec
from core.model.embed import LiteRTRunner, tflite_bytes

SPEED_FILE = "backbone_speed.json"
BATCH = 8           # photos per timed call, as embedding batches them
ROUNDS = (3, 10)    # at least / at most this many timed calls; the fastest counts, since other work on
BUDGET_S = 2.0      # the machine only ever slows a call down; stop after the minimum once this time is spent
# Tests set this to a folder: the worker then "times" a backbone as its parameters / 1e6 ms without building it,
# waits while <folder>/hold-<name> exists and fails with the text of <folder>/fail-<name> (the run of everything
# around the timing stays real: the worker, the answer files, the page).
STANDIN_ENV = "TRANSFERLAB_TIMING_STANDIN"
STANDIN_ENGINE = "stand-in"

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


def _stand_in(spec: BackboneSpec, folder: Path) -> tuple[float, str]:
    """The tests' timing (see STANDIN_ENV)."""
    while (folder / f"hold-{spec.name}").exists():
        time.sleep(0.05)
    if (failure := folder / f"fail-{spec.name}").exists():
        raise MemoryError(failure.read_text())
    return spec.params / 1e6, STANDIN_ENGINE


def measure(spec: BackboneSpec) -> dict:
    """Time one backbone and remember the figure beside the others."""
    standin = os.environ.get(STANDIN_ENV)
    ms, engine = _stand_in(spec, Path(standin)) if standin else time_backbone(spec)
    entry = {"ms_per_photo": round(ms, 2), "engine": engine, "measured": time.time()}
    with _file_lock:
        speeds = cached_speeds()
        speeds[spec.name] = entry
        atomic_write(speed_file(), json.dumps(speeds, indent=2).encode())
    return entry

