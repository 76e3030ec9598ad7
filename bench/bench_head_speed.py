"""How long the head takes (CPU and wall seconds) on every shared set and three validation splits, and, side by side,
whether another version of the head gives the same answers.

    TRANSFERLAB_CACHE=/work/cache python bench/bench_head_speed.py [--code DIR] [--save FILE] [--against FILE] [SET ...]

--code DIR   import the head from another checkout (e.g. `git worktree add /tmp/before fddab01`): how "before" is
             measured; works with the layout before core/ was split into sub-packages (core/head.py) and after
             (core/model/head.py)
--save FILE  keep this run's seconds and validation probabilities
--against F  print F's seconds beside this run's, the share of validation photos both put in the same class
             ("same") and this run's validation log loss over F's ("loss ratio"): the issue's test of a faster head
             that changed nothing (>= 99 %, within 1 %)

Training vectors are the photos and their mirror images as `core.model.train` uses them (split as bench_head splits
them); the head runs as the app runs it, on one BLAS thread. CPU seconds are this process's; wall seconds depend on
the machine's load, printed at the end. Columns: C picked, strengths tried, validation accuracy and log loss, the
same mirror-averaged (as the app answers), held-out accuracy on the set's never-seen val/ folder (mirror-averaged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SETS = ("flowers5", "hymenoptera", "groceries25")
SPLITS = (0, 1, 2)


def head_module(code: str | None):
    if code:
        sys.path.insert(0, str(Path(code).resolve()))
    try:
        import core.model.head as head
    except ImportError:
        import core.head as head
    return head


def measure(head, names: list[str]) -> dict:
    from bench.bench_head import embedded, is_val
    from bench.common import dataset

    results = {}
    for name in names:
        root = dataset(name)
        plain, mirrored, labels, shas, class_names = embedded(root / "train")
        held = embedded(root / "val", class_names)[:3] if (root / "val").is_dir() else None
        for split in SPLITS:
            val = is_val(shas, split)
            x = np.concatenate([plain[~val], mirrored[~val]])
            y, groups = np.tile(labels[~val], 2), np.tile(np.arange((~val).sum()), 2)
            wall, cpu = time.perf_counter(), time.process_time()
            search = head.search_head(x, y, len(class_names), groups)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            p = search.head.probabilities(plain[val])
            mirror = (p + search.head.probabilities(mirrored[val])) / 2
            row = {"cpu": cpu, "wall": wall, "C": search.strength, "tried": len(search.tried),
                   "val": head.scores(p, labels[val]), "mirror": head.scores(mirror, labels[val]),
                   "probabilities": p.tolist(), "labels": labels[val].tolist()}
            if held is not None:
                h = (search.head.probabilities(held[0]) + search.head.probabilities(held[1])) / 2
                row["held_out"] = head.scores(h, held[2])[1]
            results[f"{name}/{split}"] = row
            print(f"{name} split {split}: {cpu:.2f} s CPU, {wall:.2f} s wall", flush=True)
    return results


def report(results: dict, against: dict | None) -> None:
    from bench.common import table

    headers = ["set/split", "CPU s", "wall s", "C", "tried", "val acc", "val loss", "mirror acc", "held-out"]
    if against:
        headers += ["before CPU s", "before wall s", "same", "loss ratio"]
    rows = []
    for key, r in results.items():
        row = [key, f"{r['cpu']:.2f}", f"{r['wall']:.2f}", f"{r['C']:.3g}", r["tried"], f"{r['val'][1]:.3f}",
               f"{r['val'][0]:.4f}", f"{r['mirror'][1]:.3f}", f"{r['held_out']:.3f}" if "held_out" in r else ""]
        if against and key in against:
            b = against[key]
            same = np.mean(np.argmax(b["probabilities"], axis=1) == np.argmax(r["probabilities"], axis=1))
            row += [f"{b['cpu']:.2f}", f"{b['wall']:.2f}", f"{same:.3f}", f"{r['val'][0] / b['val'][0]:.4f}"]
        rows.append(row)
    print(table(headers, rows))
    print(f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}; {os.cpu_count()} CPU cores")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="*", default=list(SETS))
    parser.add_argument("--code")
    parser.add_argument("--save")
    parser.add_argument("--against")
    args = parser.parse_args(argv)
    head = head_module(args.code)
    results = measure(head, args.sets)
    if args.save:
        Path(args.save).write_text(json.dumps(results))
    report(results, json.loads(Path(args.against).read_text()) if args.against else None)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
