"""How long the head takes on many photos of many classes, and whether a change to it changes the answers there.

    TRANSFERLAB_CACHE=/work/cache python bench/bench_head_scale.py [--photos 10000 50000] [--threads 1 2]
                                                                   [--code DIR] [--save FILE] [--against FILE]

No shared set has more than a few thousand photos, so this makes a stand-in: PHOTOS photos of 100 classes from
groceries25's real cached Lite0 embeddings (plain and mirrored). Class k is groceries25's class k mod 25 moved by
its own random offset (0.12 of each dimension's spread); each photo is a real photo of that class plus the offset
plus noise (0.5 of the spread), shared by its mirror image, so photo and mirror stay a pair. 3,000 more photos
made the same way are the test set (mirror-averaged, as the app answers). --code, --save and --against work as in
bench_head_speed (same-class share and loss ratio against the saved run). Seconds are CPU seconds of this process
and wall seconds; the head runs on one BLAS thread as in the app, or on each of --threads in turn (every count
after the first also compared with the first: the same class for each test photo, loss ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = 100
TEST_PHOTOS = 3000
OFFSET, NOISE = 0.12, 0.5


def stand_in(photos: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plain, mirrored, labels) of `photos` made-up photos from groceries25's real embeddings."""
    from bench.bench_head import embedded
    from bench.common import dataset

    plain, mirrored, base = embedded(dataset("groceries25") / "train")[:3]
    rng = np.random.default_rng(seed)
    spread = plain.std(axis=0)
    kinds = int(base.max()) + 1
    offsets = (rng.normal(size=(CLASSES, plain.shape[1])) * spread * OFFSET).astype(np.float32)
    labels = rng.integers(0, CLASSES, photos)
    source = np.empty(photos, dtype=int)
    for k in range(CLASSES):
        rows = np.flatnonzero(labels == k)
        source[rows] = rng.choice(np.flatnonzero(base == k % kinds), len(rows))
    noise = (rng.normal(size=(photos, plain.shape[1])) * spread * NOISE).astype(np.float32) + offsets[labels]
    return plain[source] + noise, mirrored[source] + noise, labels


def measure(head, photos: int, threads: int = 1) -> dict:
    plain, mirrored, labels = stand_in(photos + TEST_PHOTOS)
    x = np.concatenate([plain[:photos], mirrored[:photos]])
    y, groups = np.tile(labels[:photos], 2), np.tile(np.arange(photos), 2)
    test = plain[photos:], mirrored[photos:], labels[photos:]
    wall, cpu = time.perf_counter(), time.process_time()
    search = head.search_head(x, y, CLASSES, groups, **({"threads": threads} if threads != 1 else {}))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    p = (search.head.probabilities(test[0]) + search.head.probabilities(test[1])) / 2
    return {"cpu": cpu, "wall": wall, "C": search.strength, "tried": len(search.tried),
            "test": head.scores(p, test[2]), "probabilities": p.tolist()}


def main(argv: list[str] | None = None) -> None:
    from bench.bench_head_speed import head_module
    from bench.common import table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, nargs="*", default=[10_000, 50_000])
    parser.add_argument("--threads", type=int, nargs="*", default=[1])
    parser.add_argument("--code")
    parser.add_argument("--save")
    parser.add_argument("--against")
    args = parser.parse_args(argv)
    head = head_module(args.code)
    against = json.loads(Path(args.against).read_text()) if args.against else {}
    results, rows = {}, []
    for photos in args.photos:
        first = None
        for threads in args.threads:
            r = measure(head, photos, threads)
            key = str(photos) if threads == 1 else f"{photos}x{threads}"
            results[key] = r
            row = [f"{photos:,}", threads, f"{r['cpu']:.1f}", f"{r['wall']:.1f}", f"{r['C']:.3g}", r["tried"],
                   f"{r['test'][1]:.4f}", f"{r['test'][0]:.4f}"]
            reference = against.get(key) or first
            if reference:
                row += [*_compared(r, reference), "saved" if key in against else f"{args.threads[0]} threads"]
            elif against or len(args.threads) > 1:
                row += ["-"] * 6
            rows.append(row)
            first = first or r
            print(f"{photos} photos, {threads} threads: {r['cpu']:.1f} s CPU, {r['wall']:.1f} s wall "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    if args.save:
        Path(args.save).write_text(json.dumps(results))
    headers = ["photos", "threads", "CPU s", "wall s", "C", "tried", "test acc", "test loss"]
    if against or len(args.threads) > 1:
        headers += ["before CPU s", "before wall s", "before C", "same", "loss ratio", "before"]
    print(table(headers, rows))
    print(f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}; {os.cpu_count()} CPU cores")


def _compared(r: dict, b: dict) -> list[str]:
    """The reference's CPU and wall seconds and C, the share of test photos given the same class, the loss ratio."""
    same = np.mean(np.argmax(b["probabilities"], axis=1) == np.argmax(r["probabilities"], axis=1))
    return [f"{b['cpu']:.1f}", f"{b['wall']:.1f}", f"{b['C']:.3g}", f"{same:.4f}", f"{r['test'][0] / b['test'][0]:.4f}"]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
