"""Seconds from `python -m core train` to a saved model on flowers5, cold cache and warm cache.

    python -m bench.bench_train
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import dataset, table


def timed_train(data: Path, out: Path, cache: Path) -> tuple[float, dict]:
    """Run the CLI exactly as a user would; returns wall seconds and the metrics it wrote."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "train", str(data / "train"), "--val-dir", str(data / "val"),
                    "--out", str(out)], check=True, env={**os.environ, "TRANSFERLAB_CACHE": str(cache)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "metrics.json").read_text())


def main() -> None:
    data = dataset("flowers5")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for label in ("cold cache", "warm cache"):
            seconds, metrics = timed_train(data, Path(tmp) / label.replace(" ", "-"), cache)
            rows.append([label, seconds, metrics["train_seconds"], metrics["embed_seconds"], metrics["head_seconds"],
                         metrics["val_accuracy"]])
    print("flowers5 (400 train / 200 val photos), offline default backbone, default settings, "
          f"{os.cpu_count()} CPU cores; wall time includes Python and TensorFlow start-up")
    print(table(["run", "wall s", "train s", "embed s", "head s", "val accuracy"], rows))
    print("train s: from the first photo read to a usable model (train_seconds in metrics.json); wall s adds the "
          "process start and assembling the .keras and TFLite downloads")
    print(f"warm cache is {rows[0][1] / rows[1][1]:.1f}x faster than cold")


if __name__ == "__main__":
    main()
