"""How long opening a project takes: the first open in a process and every later one (what each page rerun pays).

    python -m bench.bench_open PROJECT_FOLDER [--rounds N] [--look-every-open]

PROJECT_FOLDER is a project's folder (the one holding project.sqlite), e.g. one `bench.bench_scale` built
(`.../n50000/workspace/scale`); copy it first (`cp -al` for the photos, a real copy of project.sqlite*) because
opening may write the automatic backup. --look-every-open makes every open list every class folder for a crash's
leftover temp files, as each open did before a process remembered that it had looked (the "before" figure).
Prints the first open, the median and the slowest of the later opens, and what each part of an open costs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from core.store import project as store


def _ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--look-every-open", action="store_true")
    args = parser.parse_args(argv)

    def open_once() -> None:
        if args.look_every_open:
            store._LOOKED_FOR_LEFTOVERS.clear()
        store.Project(args.folder)

    first = _ms(open_once)
    later = [_ms(open_once) for _ in range(args.rounds)]
    photos = sum(1 for _ in args.folder.glob("images/*/*"))
    mode = "looking for leftovers on every open (before)" if args.look_every_open else "as the app opens (after)"
    print(f"{photos:,} photos, {mode}: first open {first:.1f} ms; later opens median {statistics.median(later):.1f} ms, "
          f"slowest {max(later):.1f} ms ({args.rounds} rounds)")
    project = store.Project(args.folder)
    parts = {"header + schema (db.open)": project.db.open,
             "unfinished changes (journal listing)": project._finish_interrupted_changes,
             "leftover temp files (every class folder)": project._remove_leftover_temp_files,
             "backup due? (stat)": project.db.backup_if_due}
    print("; ".join(f"{name} {_ms(fn):.2f} ms" for name, fn in parts.items()))


if __name__ == "__main__":
    main()
