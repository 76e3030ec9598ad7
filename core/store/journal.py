"""File steps that cannot leave files and rows apart.

A change that touches files (rename a class, move, delete or add photos) runs inside one
`BEGIN IMMEDIATE` transaction. Before each file step, the step is written to a journal file
(`.journal/<id>.json` in the project folder): the places the file or folder will pass through.
If a step fails, the transaction is rolled back and the journal puts the files back where the
unchanged rows say they are. If the process dies half-way, the next open does the same against
whatever the database committed: redo when the rows changed, undo when they did not. Deleted
files go to a trash folder first and are removed only after the commit.

A journal is named after the process that writes it (pid and start time), so a writer that finds
one knows whether its change is still running elsewhere or was cut short by a crash; and putting
files right never deletes a folder that still holds photos: what another writer put in its place
meanwhile is merged with it.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import psutil

from core.files import TEMP_PREFIX, atomic_write

JOURNAL_DIR = ".journal"

Wanted = Callable[[str], bool]  # does the database expect this path (relative to images/) to exist?


@dataclass
class Step:
    chain: list[str]  # the places, relative to images/, one file or folder passes through, first to last
    discard: bool = False  # if no place in the chain is wanted, the object goes (a delete, an add rolled back)


class Journal:
    """The file steps of one change, recorded before they are taken."""

    def __init__(self, images_dir: Path, journal_dir: Path):
        self.images_dir = images_dir
        self.id = f"{_owner()}-{uuid.uuid4().hex}"
        self.path = journal_dir / f"{self.id}.json"
        self.steps: list[Step] = []

    def _record(self, steps: Iterable[Step]) -> None:
        self.steps.extend(steps)
        # The temporary name carries the owner too, so a record a kill cut short is known at once as a dead one's
        atomic_write(self.path, json.dumps([[s.chain, s.discard] for s in self.steps]).encode(),
                     temp_name=f"{TEMP_PREFIX}{self.path.name}")

    def _rel(self, path: Path) -> str:
        return Path(path).relative_to(self.images_dir).as_posix()

    def move_files(self, moves: list[tuple[Path, Path]]) -> None:
        """Move files (to other class folders); all recorded before the first one moves."""
        self._record(Step([self._rel(src), self._rel(dst)]) for src, dst in moves)
        for src, dst in moves:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)

    def rename_folder(self, src: Path, dst: Path) -> None:
        """Rename a folder through a temporary name, so a change of case works on case-insensitive file systems."""
        tmp = self.images_dir / f"{TEMP_PREFIX}rename-{self.id}"
        self._record([Step([self._rel(src), self._rel(tmp), self._rel(dst)])])
        os.replace(src, tmp)
        os.replace(tmp, dst)

    def trash(self, paths: list[Path]) -> None:
        """Take files or folders out of the tree; they are removed for good once the change commits."""
        trash = self.images_dir / f"{TEMP_PREFIX}trash-{self.id}"
        targets = [trash / f"{n}-{p.name}" for n, p in enumerate(paths)]
        self._record(Step([self._rel(p), self._rel(t)], discard=True) for p, t in zip(paths, targets))
        trash.mkdir(exist_ok=True)
        for path, target in zip(paths, targets):
            if path.exists():
                os.replace(path, target)

    def write(self, path: Path, data: bytes) -> None:
        """A new file, which goes again if its change does not commit."""
        self._record([Step([self._rel(path)], discard=True)])
        atomic_write(path, data)

    def finish(self) -> None:
        """After the commit: empty the trash and drop the journal."""
        finish(self.images_dir, self.path)

    def put_right(self, wanted: Wanted) -> None:
        """Make the files match the rows (after a rollback, or at the next open), then drop the journal."""
        put_right(self.images_dir, self.steps, wanted)
        self.finish()


def put_right(images_dir: Path, steps: list[Step], wanted: Wanted) -> None:
    """Move each journalled object to the place the database expects, or remove it when none is expected."""
    for step in reversed(steps):  # undo in the reverse order of doing
        places = [images_dir / p for p in step.chain]
        present = [p for p in places if os.path.lexists(p)]
        target = next((p for p, rel in zip(places, step.chain) if wanted(rel)), None)
        if target is None and not step.discard:
            target = places[0]  # rows gone some other way: keep the photo where it started, for the check to report
        if target is not None:
            if not os.path.lexists(target) and present:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(present[-1], target)
            present = [p for p in present if p != target and _is_temporary(images_dir, p)]
            for leftover in [p for p in present if p.is_dir() and target.is_dir()]:
                merge(leftover, target)  # another writer remade the folder meanwhile: keep both sides' photos
                present.remove(leftover)
        for leftover in present:
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)


def merge(source: Path, target: Path) -> None:
    """Move everything in folder `source` into folder `target`, then remove `source`. A name taken in `target`
    by a file with the same bytes drops the copy; by another file, the newcomer takes a free name. Nothing held
    only in `source` is ever deleted."""
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir():
            destination.mkdir(exist_ok=True)
            merge(entry, destination)
            continue
        if os.path.lexists(destination):
            if destination.is_file() and filecmp.cmp(entry, destination, shallow=False):
                entry.unlink()
                continue
            destination = _free_name(destination)
        os.replace(entry, destination)
    source.rmdir()


def _free_name(path: Path) -> Path:
    n = 2
    while os.path.lexists(candidate := path.with_name(f"{path.stem}-{n}{path.suffix}")):
        n += 1
    return candidate


def finish(images_dir: Path, journal_path: Path) -> None:
    """Remove a change's trash folder, then its journal: the change is over."""
    shutil.rmtree(images_dir / f"{TEMP_PREFIX}trash-{journal_path.stem}", ignore_errors=True)
    journal_path.unlink(missing_ok=True)


def _is_temporary(images_dir: Path, path: Path) -> bool:
    return any(part.startswith(TEMP_PREFIX) for part in path.relative_to(images_dir).parts)


def pending(journal_dir: Path) -> list[tuple[Path, list[Step]]]:
    """Journals left by changes that did not finish (a crash, a killed process), oldest first; a journal whose
    process still runs is a change in progress (or just committed and clearing up), not one to put right."""
    found = []
    journals = [p for p in journal_dir.glob("*.json") if not _owner_alive(p.stem.removeprefix(TEMP_PREFIX))]
    for path in sorted(journals, key=_age_order):
        if path.name.startswith(TEMP_PREFIX):  # a record killed while written: its new steps were never taken,
            found.append((path, []))           # and those before it are in the journal itself
            continue
        try:
            steps = [Step(chain, discard) for chain, discard in json.loads(path.read_text())]
        except (OSError, ValueError):
            continue  # vanished meanwhile (its change finished), or half-written: no step was taken yet
        found.append((path, steps))
    return found


def _age_order(path: Path) -> float:
    """A journal's modification time; 0 for one that finished while the folder was being listed."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


_owners: dict[int, str] = {}


def _owner() -> str:
    """This process as a journal names it: pid and start time (hundredths of a second), so a reused pid is not it."""
    pid = os.getpid()  # per call: a forked child is another owner
    if pid not in _owners:
        _owners[pid] = f"{pid}.{round(psutil.Process(pid).create_time() * 100)}"
    return _owners[pid]


def _owner_alive(stem: str) -> bool:
    """Whether the process that wrote a journal still runs; a journal named the older way (no owner) is not."""
    owner = stem.split("-", 1)[0]
    try:
        pid, started = (int(part) for part in owner.split("."))
    except ValueError:
        return False
    if pid == os.getpid():
        return owner == _owner()  # this process: its changes in flight are handled where they run
    try:
        return abs(psutil.Process(pid).create_time() * 100 - started) <= 50 and \
            psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
