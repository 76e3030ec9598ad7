"""Building each offline backbone: its ImageNet weights read from the pip package into a Keras model.

    python -m bench.bench_backbones

The worker pays this once per backbone and process (before its first LiteRT conversion or fine-tuning run);
the target is under a minute each.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.common import table  # noqa: E402
from core.model.backbones import REGISTRY  # noqa: E402

TARGET_S = 60.0


def main() -> None:
    import keras  # noqa: F401  (imported first: its own start-up is not the build's)

    rows = []
    for spec in (s for s in REGISTRY.values() if s.offline):
        start = time.perf_counter()
        spec.build()
        seconds = time.perf_counter() - start
        rows.append([spec.label, seconds, "yes" if seconds < TARGET_S else "NO"])
    print(f"Building each offline backbone from its pip package, {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(table(["backbone", "seconds", f"under {TARGET_S:.0f} s"], rows))


if __name__ == "__main__":
    main()
