"""Writers killed at random moments, then every row audited against every file, and again after each recovery tool.

    python -m bench.crash_consistency [--kills 40] [--seconds 600]

Each round starts two writer processes on one project, each with its own long-lived `Project` (as a page and
a web search have): imports, moves, deletes, rejects, and class renames (new names, case changes, decomposed
accents). Both are SIGKILLed at independent random moments. Then, with nothing running:

1. the next open (which finishes or undoes what the kills cut short) and `Project.check()`;
2. "Add the unknown files" (`take_in_stray_files`) and "Forget the photos whose file is gone";
3. every few rounds, the database is damaged and the automatic backup restored (rows older than the folders).

After each step every photo is accounted for: a photo that existed before the kill (a row, or a file outside
the store's trash) is still a file afterwards unless a writer had said it was deleting it; no content is in
two files; and after the tools, no row lacks its file and no file its row. Exits non-zero on any problem.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path

from bench.common import table
from core.store.project import Project, StoreError, create_project, restore_backup
from core.store import db as storage_db
from core.store.recovery import RECOVERED_DIR
from tests.photos import photo_bytes

CLASSES = ("stripes", "blobs", "café")
RENAMES = {"stripes": "Stripes", "Stripes": "stripes", "blobs": "blobs two", "blobs two": "blobs",
           "café": unicodedata.normalize("NFD", "café")}  # the last one is the same name: nothing may move
SEED_PHOTOS = 8  # per class


def writer(meta_dir: str, seed: int, intents: str) -> None:
    """Random changes until killed; a delete is announced in `intents` before it is made."""
    project, rng, n = Project(Path(meta_dir)), random.Random(seed), 0
    with open(intents, "a") as log:
        while True:
            n += 1
            try:
                photos = project.images()
                names = project.class_names()
                op = rng.choice(["import", "import", "move", "rename", "reject", "delete"])
                if op == "import":
                    project.add_image(rng.choice(names), photo_bytes(seed * 100_000 + n), source="upload",
                                      original_name=f"w{seed}-{n}.jpg")
                elif op == "move" and photos:
                    project.move([p.id for p in rng.sample(photos, min(3, len(photos)))], rng.choice(names))
                elif op == "rename":
                    old = rng.choice([name for name in names if name in RENAMES] or names)
                    project.rename_class(old, RENAMES.get(old, f"{old} again"))
                elif op == "reject" and photos:
                    photo = rng.choice(photos)
                    (project.restore if photo.status == "rejected" else project.reject)([photo.id])
                elif op == "delete" and photos:
                    photo = rng.choice(photos)
                    log.write(photo.sha256 + "\n")
                    log.flush()
                    os.fsync(log.fileno())
                    project.delete_images([photo.id])
            except StoreError:
                continue  # a class renamed or a photo moved by the other writer meanwhile: what users see too


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(meta_dir: Path, *, trash: bool = False) -> list[Path]:
    """Every photo file under images/ (temporary rename folders included, the trash only when asked) and in
    recovered/."""
    found = [p for p in (meta_dir / "images").rglob("*") if p.is_file()
             and not p.name.startswith(".tmp-") and (trash or ".tmp-trash-" not in str(p))]
    return found + [p for p in (meta_dir / RECOVERED_DIR).rglob("*") if p.is_file()]


def committed(meta_dir: Path) -> set[str]:
    """The content digests of the photos in the database, read without the store (as it is on disk)."""
    con = sqlite3.connect(f"file:{meta_dir / 'project.sqlite'}?mode=ro", uri=True)
    try:
        return {row[0] for row in con.execute("SELECT sha256 FROM images")}
    finally:
        con.close()


def unfinished_adds(meta_dir: Path) -> set[str]:
    """Contents of photos whose import a kill cut short before its commit: the open undoes them, as designed (the
    import did not happen; its source still has the photo)."""
    found = set()
    for journal in (meta_dir / ".journal").glob("*.json"):
        try:
            steps = json.loads(journal.read_text())
        except (OSError, ValueError):
            continue
        for chain, discard in steps:
            path = meta_dir / "images" / chain[0]
            if discard and len(chain) == 1 and path.is_file():
                found.add(digest(path))
    return found - committed(meta_dir)


def audit(project: Project, before: set[str], deleted: set[str], *, final: bool) -> list[str]:
    """What is wrong now: photos lost, contents in two files, and (after the tools) rows and files out of step."""
    problems = []
    present = Counter(digest(p) for p in files(project.meta_dir))
    lost = before - set(present) - deleted
    problems += [f"lost {sha[:12]}" for sha in sorted(lost)]
    problems += [f"{n} files hold {sha[:12]}" for sha, n in present.items() if n > 1]
    report = project.check()
    if final:
        problems += [f"row {image_id} has no file {path.name}" for image_id, path in report.missing_files]
        problems += [f"file without a row {path}" for path in report.files_without_rows]
    problems += [f"unfinished change {p.name}" for p in project.journal_dir.glob("*.json")]
    return problems


def kill_round(meta_dir: Path, rng: random.Random, seeds: tuple[int, int], intents: Path) -> int:
    """Two writers, each killed at its own random moment; returns how many were killed while running."""
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=writer, args=(str(meta_dir), seed, str(intents)), daemon=True)
                for seed in seeds]
    for child in children:
        child.start()
    kills = 0
    for moment, child in sorted((rng.uniform(0.2, 1.5), child) for child in children):
        time.sleep(max(0.0, moment - 0.2))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.join(timeout=30)
    return kills


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40, help="writer processes to kill (two a round)")
    parser.add_argument("--seconds", type=float, default=600, help="stop after this long, kills done or not")
    parser.add_argument("--restore-every", type=int, default=4, help="restore the backup every N rounds")
    args = parser.parse_args(argv)
    interval, storage_db.BACKUP_INTERVAL = storage_db.BACKUP_INTERVAL, 0  # a backup each round: restores roll back one
    try:
        return rounds_of_kills(args)
    finally:
        storage_db.BACKUP_INTERVAL = interval


def rounds_of_kills(args: argparse.Namespace) -> int:
    rng, started = random.Random(19), time.time()
    rows, problems, kills, rounds = [], [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        project = create_project("crashes", Path(tmp))
        for c, name in enumerate(CLASSES):
            for i in range(SEED_PHOTOS):
                project.add_image(name, photo_bytes(1000 * c + i), source="upload", original_name=f"seed{i}.jpg")
        meta, intents = project.meta_dir, Path(tmp) / "deleting.txt"
        intents.touch()
        while kills < args.kills and time.time() - started < args.seconds:
            rounds += 1
            project.db.backup_if_due()
            kills += kill_round(meta, rng, (2 * rounds, 2 * rounds + 1), intents)
            adding = unfinished_adds(meta)
            before = committed(meta) | ({digest(p) for p in files(meta)} - adding)
            deleted = set(intents.read_text().split())
            steps = [("open", lambda: Project(meta))]
            steps.append(("tools", lambda: tools(Project(meta))))
            if rounds % args.restore_every == 0:
                steps.append(("restore", lambda: restored(meta)))
            for step, act in steps:
                opened = act()
                found = audit(opened, before, deleted, final=step != "open")
                problems += [f"round {rounds} after {step}: {p}" for p in found]
                rows.append([rounds, step, kills, len(opened.images()), ", ".join(opened.class_names()),
                             opened.repaired if step == "open" else "", len(found)])
        print(table(["round", "after", "kills so far", "photos", "classes", "repaired on open", "problems"],
                    rows[-12:]))
        repaired = sum(r[5] for r in rows if r[1] == "open")
    print(f"\n{kills} writers killed in {rounds} rounds (two writers a round), {time.time() - started:.0f} s; "
          f"{repaired} interrupted changes put right on open; {len(problems)} problems")
    for problem in problems[:40]:
        print("  " + problem)
    return 1 if problems or kills < args.kills else 0


def tools(project: Project) -> Project:
    """The Start page's two buttons, in the order a user meets them."""
    project.take_in_stray_files()
    project.forget_missing_files()
    return project


def restored(meta_dir: Path) -> Project:
    """A damaged database replaced by its backup (older rows than the folders), then the tools."""
    (meta_dir / "project.sqlite").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (meta_dir / f"project.sqlite{suffix}").unlink(missing_ok=True)
    return tools(restore_backup(meta_dir.name, meta_dir.parent))


if __name__ == "__main__":
    sys.exit(main())
