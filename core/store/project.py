"""The project: an SQLite database beside an ImageFolder tree (`images/<class>/<file>`).

Folders hold the photos so a user can take the dataset anywhere; the database holds what
folders cannot: where each photo came from, its hashes, kept/rejected status, its split,
and the training runs. This module is the `Project` a caller sees; the pieces live in
`core/store/`: `db` (transactions, schema, backup), `names` (names that are safe folders),
`journal` (file steps that are undone or redone so files and rows never part), `records`
(what the store hands out), `duplicates`, `runs` (one active run, worker liveness) and
`consistency` (rows against files).

Any number of `Project` objects, in any threads and processes, may share one project: every
change is one `BEGIN IMMEDIATE` transaction with its file steps journalled inside it.
"""

from __future__ import annotations

import filecmp
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Literal

from core import config
from core.files import TEMP_PREFIX, atomic_write
from core.images import ImageRejected, decode_image, thumbnail_bytes
from core.store import journal as file_journal
from core.store.consistency import Consistency, check
from core.store.db import DB_NAME, Database
from core.store.duplicates import NEAR_DUPLICATE_DISTANCE, groups, nearest
from core.store.errors import ClassGone, ProjectDamaged, RunBusy, StoreError
from core.store.journal import JOURNAL_DIR, Journal
from core.store.names import (MAX_NAME_BYTES, MAX_NAME_LENGTH, file_stem, name_key, normalize, validate_name,
                                 visible)
from core.store.recovery import known_photo, plan_folder, set_aside
from core.store.records import (IMAGE_ROWS, AddResult, ClassInfo, ImageRecord, RejectedInput, Status, image_record,
                                  split_for, split_key)
from core.store.runs import RunRecord, RunStatus, apply_updates, insert_run, run_record, run_updates

__all__ = [
    "DB_NAME", "DEFAULT_VAL_SHARE", "MAX_NAME_BYTES", "MAX_NAME_LENGTH", "NEAR_DUPLICATE_DISTANCE",
    "AddResult", "ClassGone", "ClassInfo", "Consistency", "ImageRecord", "Project", "ProjectDamaged", "RejectedInput", "RunBusy",
    "RunRecord", "RunStatus", "Status", "StoreError", "create_project", "list_projects", "name_key", "normalize",
    "open_project", "restore_backup", "split_for", "split_key", "validate_name", "visible",
]

DEFAULT_VAL_SHARE = 0.2
# The class a name means: its exact stored spelling first, so two classes an older version let in that now share a
# name ('ab' and 'a<zero-width space>b') both stay reachable; else the class with its key. Parameters: name, key.
CLASS_BY_NAME = ("COALESCE((SELECT id FROM classes WHERE name=? COLLATE BINARY), "
                 "(SELECT id FROM classes WHERE name_key=?))")
LEFTOVER_AGE = 3600  # seconds: no photo write takes this long, so an older temp file is a crash's leftover
# Project folder -> when this process last looked for a crash's leftover temp files in it (time.monotonic()).
# Every page rerun opens the project; the look lists every class folder (85 ms at 50,000 photos), and a leftover is
# hidden (a dot-file no check or listing counts) and only removable once LEFTOVER_AGE old, so a process looks once
# when it first opens a project and again only after LEFTOVER_AGE. Unfinished changes are not put off this way: each
# open still puts right what a dead process's journal left (one listing of .journal/), and so does every writer.
_LOOKED_FOR_LEFTOVERS: dict[Path, float] = {}
_LOOKED_LOCK = threading.Lock()


class Project:
    """One dataset and its runs. Safe to share between threads and processes."""

    def __init__(self, meta_dir: Path, images_dir: Path | None = None, *, create: bool = False, name: str | None = None):
        self.meta_dir = Path(meta_dir)
        self.images_dir = Path(images_dir) if images_dir else self.meta_dir / "images"
        self.db_path = self.meta_dir / DB_NAME
        self.journal_dir = self.meta_dir / JOURNAL_DIR
        self.db = Database(self.db_path)
        if not create and not self.db_path.exists():
            raise StoreError(f"There is no project at {self.meta_dir}.")
        if create:
            self.meta_dir.mkdir(parents=True, exist_ok=True)
            self.images_dir.mkdir(parents=True, exist_ok=True)
            self.db.create({"name": name or self.meta_dir.name, "val_share": str(DEFAULT_VAL_SHARE)})
        else:
            self.db.open()  # reads the header and one row: every page rerun opens the project
        self.repaired = self._finish_interrupted_changes()
        if self._leftovers_due():
            self._remove_leftover_temp_files()
        try:
            self.db.backup_if_due()
        except OSError:
            pass  # a full disk must not stop the project from opening; the next open tries again

    # ---- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _change(self, what: str) -> Iterator[tuple[sqlite3.Connection, Journal]]:
        """One write transaction with journalled file steps; on any failure rows and files both go back."""
        journal = Journal(self.images_dir, self.journal_dir)
        with self.db.write() as con:
            self._put_right_interrupted(con)  # a long-lived Project must not write over a crash's half-done change
            con.execute("SAVEPOINT change")
            try:
                yield con, journal
            except BaseException as exc:
                if con.in_transaction:  # else SQLite has already rolled it all back
                    con.execute("ROLLBACK TO change")
                if journal.steps:
                    journal.put_right(self._wanted(con))
                if isinstance(exc, OSError):
                    raise StoreError(f"Could not {what}: {exc.strerror or exc}. Nothing was changed.") from exc
                raise
        if journal.steps:
            journal.finish()

    def _wanted(self, con: sqlite3.Connection) -> Callable[[str], bool]:
        """Whether the rows expect a path under images/ (a class folder or a photo file) to exist."""
        def wanted(rel: str) -> bool:
            parts = rel.split("/")
            if any(part.startswith(TEMP_PREFIX) for part in parts):
                return False
            if len(parts) == 1:
                query, params = "SELECT 1 FROM classes WHERE name=? COLLATE BINARY", parts
            elif len(parts) == 2:
                query, params = ("SELECT 1 FROM images i JOIN classes c ON c.id=i.class_id "
                                 "WHERE c.name=? COLLATE BINARY AND i.file=?", parts)
            else:
                return False
            return con.execute(query, params).fetchone() is not None
        return wanted

    def _finish_interrupted_changes(self) -> int:
        """Redo or undo the file steps of changes a crash cut short; returns how many there were."""
        if not file_journal.pending(self.journal_dir):
            return 0  # one directory listing: opening a project stays cheap
        with self.db.write() as con:  # the lock: a change still running elsewhere finishes first
            return self._put_right_interrupted(con)

    def _put_right_interrupted(self, con: sqlite3.Connection) -> int:
        """With the write lock held: make files match the committed rows for every change whose process died."""
        found = file_journal.pending(self.journal_dir)
        for path, steps in found:
            file_journal.put_right(self.images_dir, steps, self._wanted(con))
            file_journal.finish(self.images_dir, path)
        return len(found)

    def _leftovers_due(self) -> bool:
        """Whether this process should look for leftover temp files now (see _LOOKED_FOR_LEFTOVERS)."""
        key, now = self.meta_dir.absolute(), time.monotonic()
        with _LOOKED_LOCK:
            last = _LOOKED_FOR_LEFTOVERS.get(key)
            if last is not None and now - last < LEFTOVER_AGE:
                return False
            _LOOKED_FOR_LEFTOVERS[key] = now
            return True

    def _remove_leftover_temp_files(self) -> None:
        """Delete temp files a crash left behind (half-written photos and journals); young ones may be a write in
        progress in another thread."""
        cutoff = time.time() - LEFTOVER_AGE
        for tmp in [*self.images_dir.glob(f"*/{TEMP_PREFIX}*"), *self.journal_dir.glob(f"{TEMP_PREFIX}*")]:
            try:
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink(missing_ok=True)
            except FileNotFoundError:  # its writer finished meanwhile
                pass

    def __repr__(self) -> str:
        return f"Project({self.name!r}, {self.meta_dir})"

    # ---- health ---------------------------------------------------------------------------

    def check(self) -> Consistency:
        """Rows against files, after putting right what a crash left unfinished."""
        repaired = self._finish_interrupted_changes()
        with self.db.read() as con:
            report = check(con, self.images_dir)
        if report.problems:  # a photo being added has its file before its row: look again with writers held off
            with self.db.write() as con:
                report = check(con, self.images_dir)
        report.repaired = self.repaired + repaired
        return report

    def take_in_stray_files(self) -> int:
        """Take files found in the class folders without a row into the project; returns how many became photos.

        What the folders say wins, as for a user who moved files by hand: a known photo found in another
        class's folder is re-linked there and takes that class; a folder holding the photos of a class whose
        folder is gone is that class renamed (to a free name when the folder's is taken); other files are new
        photos. A file is removed only when a file with the same bytes is verified kept; one that cannot go in
        (not a picture, a differing copy of a known photo) is set aside in `recovered/`, never deleted."""
        taken = 0
        for folder in sorted({path.parent for path in self.check().files_without_rows}):
            try:
                class_id, folder, renamed = self._take_in_folder(folder)
            except (StoreError, OSError):
                continue  # a folder whose name can never be a class: left for the check to report
            taken += renamed
            for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()):
                try:
                    taken += self._take_in_file(path, class_id)
                except (StoreError, OSError):
                    continue  # gone meanwhile, or its class renamed or deleted: the next check says what is left
        return taken

    def _take_in_folder(self, folder: Path) -> tuple[int, Path, int]:
        """The class a folder of unknown files is (created or renamed as `plan_folder` says), its folder now, and
        how many of its files became photos again by the class's rename."""
        with self._change(f"take in the folder '{folder.name}'") as (con, journal):
            plan = plan_folder(con, self.images_dir, folder)
            class_id = plan.class_id
            if plan.rename_class:
                con.execute("UPDATE classes SET name=?, name_key=? WHERE id=?", (plan.name, name_key(plan.name), class_id))
            elif class_id is None:
                class_id = con.execute("INSERT INTO classes (name, name_key, created) VALUES (?, ?, ?)",
                                       (plan.name, name_key(plan.name), time.time())).lastrowid
            files = {p.name for p in folder.iterdir()}
            renamed = sum(r["file"] in files for r in con.execute("SELECT file FROM images WHERE class_id=?",
                                                                   (class_id,))) if plan.rename_class else 0
            if plan.rename_folder:
                journal.rename_folder(folder, self.images_dir / plan.name)
        return class_id, self.images_dir / plan.name, renamed

    def _take_in_file(self, path: Path, class_id: int) -> int:
        """Take one file into its folder's class: 1 when it became (or was re-linked as) a photo, else 0."""
        with self._change("take in a file") as (con, journal):
            outcome = self._take_in(con, journal, path, class_id)
        if outcome in ("set aside", "added, original set aside"):
            set_aside(self.meta_dir, path)  # after the commit: a crash before it leaves a copy, never a loss
        return int(outcome.startswith(("added", "re-linked")))

    def _take_in(self, con: sqlite3.Connection, journal: Journal, path: Path, class_id: int) -> str:
        row = con.execute("SELECT name FROM classes WHERE id=?", (class_id,)).fetchone()
        if (row is None or row["name"] != path.parent.name or not path.is_file()
                or con.execute("SELECT 1 FROM images WHERE class_id=? AND file=?", (class_id, path.name)).fetchone()):
            return "left"  # renamed, deleted or gone meanwhile, or already a photo (an add that was in progress)
        data = path.read_bytes()
        known = known_photo(con, self.images_dir, path, data)
        if known is not None and not known.expected.exists():
            con.execute("UPDATE images SET class_id=?, file=? WHERE id=?", (class_id, path.name, known.id))
            return "re-linked"
        if known is not None:
            if not filecmp.cmp(known.expected, path, shallow=False):
                return "set aside"
            path.unlink()  # a copy: the same bytes are kept where the photo's row says
            return "removed copy"
        try:
            decoded = decode_image(data)
        except ImageRejected:
            return "set aside"
        target = self._free_path(row["name"], file_stem(path.name), decoded.sha256, decoded.extension)
        con.execute(
            """INSERT INTO images (class_id, file, sha256, phash, width, height, bytes, source, source_url,
                                   query, original_name, split_key, added)
               VALUES (?, ?, ?, ?, ?, ?, ?, 'recovered', NULL, NULL, ?, ?, ?)""",
            (class_id, target.name, decoded.sha256, f"{decoded.phash:016x}", decoded.width, decoded.height,
             len(decoded.stored_bytes), path.name, split_key(decoded.sha256), time.time()))
        if decoded.stored_bytes is data:
            journal.move_files([(path, target)])
            return "added"
        journal.write(target, decoded.stored_bytes)  # stored re-encoded, like every photo of its kind
        return "added, original set aside"

    def forget_missing_files(self) -> int:
        """Drop the rows of photos whose file is gone (removed by hand); returns how many."""
        with self._change("forget the missing photos") as (con, _):
            gone = [image_id for image_id, path in check(con, self.images_dir).missing_files]
            con.executemany("DELETE FROM images WHERE id=?", [(i,) for i in gone])
        return len(gone)

    # ---- settings -------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        with self.db.read() as con:
            row = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    @property
    def name(self) -> str:
        return self._meta("name") or self.meta_dir.name

    @property
    def val_share(self) -> float:
        return float(self._meta("val_share") or DEFAULT_VAL_SHARE)

    @property
    def backbone(self) -> str | None:
        """The backbone last chosen for this project (None: never chosen); photos are embedded ahead with it."""
        return self._meta("backbone")

    def set_backbone(self, name: str) -> None:
        self._put_meta("backbone", name)

    def note(self, key: str) -> str | None:
        """A remembered result (say, the suspect ranking) that survives a refresh; None when there is none."""
        return self._meta(f"note:{key}")

    def put_note(self, key: str, value: str) -> None:
        """Remember a result for every tab and process; the last writer wins, a reader never sees half of one."""
        self._put_meta(f"note:{key}", value)

    def _put_meta(self, key: str, value: str) -> None:
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def set_val_share(self, share: float) -> None:
        """Share of each class held out for validation; photos keep their place as the set grows."""
        if not 0.05 <= share <= 0.5:
            raise StoreError("The validation share must be between 5% and 50%.")
        self._put_meta("val_share", str(share))

    # ---- classes --------------------------------------------------------------------------

    def class_names(self) -> list[str]:
        with self.db.read() as con:
            return [r["name"] for r in con.execute("SELECT name FROM classes ORDER BY name_key")]

    def classes(self) -> list[ClassInfo]:
        """Every class with its kept/rejected counts and kept photos per split."""
        share = self.val_share
        with self.db.read() as con:
            rows = con.execute(
                """SELECT c.name,
                          SUM(i.status='kept') AS kept, SUM(i.status='rejected') AS rejected,
                          SUM(i.status='kept' AND i.split_key < ?) AS val
                   FROM classes c LEFT JOIN images i ON i.class_id = c.id
                   GROUP BY c.id ORDER BY c.name_key""",
                (share,),
            ).fetchall()
        return [
            ClassInfo(r["name"], r["kept"] or 0, r["rejected"] or 0, (r["kept"] or 0) - (r["val"] or 0), r["val"] or 0)
            for r in rows
        ]

    def name_clashes(self) -> list[list[str]]:
        """Groups of classes whose names are one name under today's rules (made by an older version): kept apart,
        and the pages say so, so the user can rename one."""
        groups: dict[str, list[str]] = {}
        for name in self.class_names():
            groups.setdefault(name_key(name), []).append(name)
        return [names for names in groups.values() if len(names) > 1]

    def class_id(self, name: str) -> int | None:
        """The id of an existing class (names compare as the store does), None when there is none."""
        with self.db.read() as con:
            row = _class_row(con, name)
        return row["id"] if row else None

    def _class(self, con: sqlite3.Connection, name: str) -> tuple[int, str]:
        """An existing class's id and stored spelling (lookups ignore case and Unicode form)."""
        row = _class_row(con, name)
        if row is None:
            raise StoreError(f"There is no class named '{normalize(name)}'.")
        return row["id"], row["name"]

    def add_class(self, name: str) -> str:
        """Create a class (and its folder); returns the cleaned name. Adding an existing one is an error."""
        name = validate_name(name)
        with self._change(f"create the class '{name}'") as (con, _):
            existing = con.execute("SELECT name FROM classes WHERE name_key=?", (name_key(name),)).fetchone()
            if existing:
                raise StoreError(f"A class named '{existing['name']}' already exists.")
            return self._ensure_class(con, name)[1]

    def _ensure_class(self, con: sqlite3.Connection, name: str) -> tuple[int, str]:
        """The class's id and stored spelling, creating it (and its folder) when missing."""
        name = validate_name(name)
        row = _class_row(con, name)
        if row:
            return row["id"], row["name"]
        cur = con.execute("INSERT INTO classes (name, name_key, created) VALUES (?, ?, ?)",
                          (name, name_key(name), time.time()))
        (self.images_dir / name).mkdir(parents=True, exist_ok=True)  # an empty folder is harmless if this rolls back
        return cur.lastrowid, name

    def rename_class(self, old: str, new: str) -> str:
        new = validate_name(new)
        with self._change(f"rename the class to '{new}'") as (con, journal):
            class_id, stored_old = self._class(con, old)
            clash = con.execute("SELECT name FROM classes WHERE name_key=? AND id<>?",
                                (name_key(new), class_id)).fetchone()
            if clash:
                raise StoreError(f"A class named '{clash['name']}' already exists.")
            con.execute("UPDATE classes SET name=?, name_key=? WHERE id=?", (new, name_key(new), class_id))
            src, dst = self.images_dir / stored_old, self.images_dir / new
            if src.exists() and stored_old != new:
                self._clear_way(src, dst)
                journal.rename_folder(src, dst)
        return new

    def _clear_way(self, src: Path, dst: Path) -> None:
        """Refuse to rename onto a folder that is not the project's (an empty one is simply removed)."""
        if not dst.exists() or dst.samefile(src):  # the same folder: a change of case on a case-insensitive disk
            return
        if dst.is_dir() and not any(dst.iterdir()):
            dst.rmdir()
            return
        raise StoreError(f"There is already a folder named '{dst.name}' in {self.images_dir} that is not one of "
                         "this project's classes. Move it away or choose another name.")

    def delete_class(self, name: str) -> int:
        """Delete a class with all its photos, for good; returns how many photos went."""
        with self._change(f"delete the class '{name}'") as (con, journal):
            class_id, stored = self._class(con, name)
            count = con.execute("DELETE FROM images WHERE class_id=?", (class_id,)).rowcount
            con.execute("DELETE FROM classes WHERE id=?", (class_id,))
            if (self.images_dir / stored).exists():
                journal.trash([self.images_dir / stored])  # removed for good only once the rows are gone
        return count

    # ---- adding photos --------------------------------------------------------------------

    def add_image(
        self,
        class_name: str,
        data: bytes,
        *,
        source: str,
        source_url: str | None = None,
        query: str | None = None,
        original_name: str | None = None,
        reject_near_duplicates: bool = False,
        class_id: int | None = None,
        record_rejection: bool = True,
    ) -> AddResult:
        """Validate and store one photo in a class (created if missing). Never overwrites anything.

        With `class_id`, the photo goes to that class whatever it is called now (a collection
        renamed half-way keeps filling the renamed class); StoreError if it was deleted.
        A rejected file is recorded in `rejected_inputs`, unless the caller records it itself
        (record_rejection=False), as imports do in batches through `record_rejected_inputs`."""
        class_name = validate_name(class_name)
        try:
            decoded = decode_image(data)
        except ImageRejected as exc:
            if record_rejection:
                self.record_rejected_inputs([RejectedInput(class_name, original_name, source, source_url,
                                                           exc.reason, str(exc))])
            return AddResult("rejected", reason=exc.reason, detail=str(exc))

        with self._change("store the photo") as (con, journal):
            # The write lock is held from here: a photo checked absent stays absent until it is inserted.
            same = con.execute("SELECT id FROM images WHERE sha256=?", (decoded.sha256,)).fetchone()
            if same:
                return AddResult("duplicate", image_id=same["id"], reason="duplicate")
            if reject_near_duplicates:
                near = nearest(con, decoded.phash)
                if near is not None and near[1] <= NEAR_DUPLICATE_DISTANCE:
                    return AddResult("near_duplicate", image_id=near[0], reason="near_duplicate")
            class_id, class_name = self._target_class(con, class_name, class_id)
            path = self._free_path(class_name, file_stem(original_name), decoded.sha256, decoded.extension)
            cur = con.execute(
                """INSERT INTO images (class_id, file, sha256, phash, width, height, bytes, source, source_url,
                                       query, original_name, split_key, added)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (class_id, path.name, decoded.sha256, f"{decoded.phash:016x}", decoded.width, decoded.height,
                 len(decoded.stored_bytes), source, source_url, query, original_name,
                 split_key(decoded.sha256), time.time()),
            )
            journal.write(path, decoded.stored_bytes)
        return AddResult("added", image_id=cur.lastrowid, path=path, class_id=class_id)

    def _target_class(self, con: sqlite3.Connection, name: str, class_id: int | None) -> tuple[int, str]:
        """Where photos go: the class with that id whatever its name now, else the named one (created if missing)."""
        if class_id is None:
            return self._ensure_class(con, name)
        row = con.execute("SELECT id, name FROM classes WHERE id=?", (class_id,)).fetchone()
        if row is None:
            raise ClassGone(f"The class '{name}' was deleted while photos were being added to it.")
        return row["id"], row["name"]

    def _free_path(self, class_name: str, stem: str, sha256: str, ext: str, taken: set[Path] = frozenset()) -> Path:
        folder = self.images_dir / class_name
        for n in (8, 16, 64):
            candidate = folder / f"{stem}_{sha256[:n]}{ext}"
            if not candidate.exists() and candidate not in taken:
                return candidate
        raise StoreError(f"Could not find a free file name for {stem} in {folder}.")

    def record_rejected_inputs(self, rows: list[RejectedInput]) -> None:
        """Record files that never became photos, all in one transaction."""
        now = time.time()
        with self.db.write() as con:
            con.executemany(
                "INSERT INTO rejected_inputs (class_name, original_name, source, source_url, reason, detail, at) VALUES (?,?,?,?,?,?,?)",
                [(*row, now) for row in rows],
            )

    def rejected_inputs(self, limit: int = 200) -> list[dict]:
        """Files that never became photos (not an image, truncated...), newest first, with the reason."""
        with self.db.read() as con:
            rows = con.execute("SELECT * FROM rejected_inputs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def known_urls(self, class_name: str) -> set[str]:
        """Source URLs already stored in a class: a second web search skips them without downloading."""
        with self.db.read() as con:
            rows = con.execute(
                "SELECT source_url FROM images i JOIN classes c ON c.id=i.class_id "
                f"WHERE c.id={CLASS_BY_NAME} AND source_url IS NOT NULL",
                (class_name, name_key(class_name)),
            ).fetchall()
        return {r["source_url"] for r in rows}

    # ---- reading photos -------------------------------------------------------------------

    def images(self, class_name: str | None = None, status: Status | None = None,
               split: Literal["train", "val"] | None = None, *, offset: int = 0,
               limit: int | None = None) -> list[ImageRecord]:
        """Photos, filtered; ordered by class then time added; `limit` of them from `offset` (a page of a grid)."""
        share = self.val_share
        clauses, params = [], []
        if class_name is not None:
            clauses.append(f"c.id={CLASS_BY_NAME}")
            params += [class_name, name_key(class_name)]
        if status is not None:
            clauses.append("i.status=?")
            params.append(status)
        if split is not None:
            clauses.append("i.split_key < ?" if split == "val" else "i.split_key >= ?")
            params.append(share)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self.db.read() as con:
            rows = con.execute(f"{IMAGE_ROWS} {where} ORDER BY c.name_key, i.id LIMIT ? OFFSET ?",
                               [*params, -1 if limit is None else limit, offset]).fetchall()
        folders = {name: self.images_dir / name for name in {r["class_name"] for r in rows}}  # a join per class
        return [image_record(r, folders[r["class_name"]], share) for r in rows]

    def kept_hashes(self) -> list[str]:
        """The content hashes of every kept photo: what a count over 50,000 photos needs, without their records."""
        with self.db.read() as con:
            return [sha for (sha,) in con.execute("SELECT sha256 FROM images WHERE status='kept'")]

    def image(self, image_id: int) -> ImageRecord:
        record = self._one_image("i.id=?", (image_id,))
        if record is None:
            raise StoreError(f"There is no photo with id {image_id}.")
        return record

    def image_at(self, path: Path) -> ImageRecord | None:
        """The photo stored at a path (as written in a run's evaluation), if it is still there."""
        path = Path(path)
        return self._one_image("c.name=? COLLATE BINARY AND i.file=?", (path.parent.name, path.name))

    def _one_image(self, condition: str, params: tuple) -> ImageRecord | None:
        with self.db.read() as con:
            row = con.execute(f"{IMAGE_ROWS} WHERE {condition}", params).fetchone()
        return image_record(row, self.images_dir / row["class_name"], self.val_share) if row else None

    def thumbnail(self, image: ImageRecord) -> bytes | None:
        """A cached small JPEG of a photo for grids; None when its file is gone or unreadable
        (deleted from another tab a moment ago, removed by hand: the consistency check says which)."""
        path = self.meta_dir / "thumbs" / f"{image.sha256[:32]}.jpg"
        try:
            if not path.exists():
                atomic_write(path, thumbnail_bytes(image.path))
            return path.read_bytes()
        except (OSError, ImageRejected):
            return None

    def duplicate_groups(self, max_distance: int = NEAR_DUPLICATE_DISTANCE) -> list[list[ImageRecord]]:
        """Groups of kept photos that show the same picture (perceptual hashes within max_distance)."""
        kept = self.images(status="kept")
        return groups(kept, [r.phash for r in kept], max_distance)

    # ---- changing photos ------------------------------------------------------------------

    def reject(self, image_ids: list[int], reason: str = "rejected by you") -> None:
        """Mark photos as rejected: kept on disk and restorable, left out of training."""
        with self.db.write() as con:
            con.executemany("UPDATE images SET status='rejected', reject_reason=? WHERE id=?",
                            [(reason, i) for i in image_ids])

    def restore(self, image_ids: list[int]) -> None:
        with self.db.write() as con:
            con.executemany("UPDATE images SET status='kept', reject_reason=NULL WHERE id=?", [(i,) for i in image_ids])

    def move(self, image_ids: list[int], class_name: str, *, class_id: int | None = None) -> None:
        """Move photos to another class (created if missing); files move folders too.

        With `class_id`, to that class whatever it is called now (ClassGone if it was deleted):
        a class renamed in another tab is not brought back under its old name."""
        with self._change(f"move the photos to '{normalize(class_name)}'") as (con, journal):
            class_id, class_name = self._target_class(con, class_name, class_id)
            moves: list[tuple[Path, Path]] = []
            for image_id in image_ids:
                row = con.execute(
                    "SELECT i.class_id, i.file, i.sha256, c.name FROM images i JOIN classes c ON c.id=i.class_id "
                    "WHERE i.id=?", (image_id,),
                ).fetchone()
                if row is None or row["class_id"] == class_id:
                    continue
                src = self.images_dir / row["name"] / row["file"]
                dst = self._free_path(class_name, src.stem.rsplit("_", 1)[0], row["sha256"], src.suffix,
                                      {d for _, d in moves})
                con.execute("UPDATE images SET class_id=?, file=? WHERE id=?", (class_id, dst.name, image_id))
                moves.append((src, dst))
            journal.move_files(moves)

    def delete_images(self, image_ids: list[int]) -> None:
        """Delete photos for good: rows and files."""
        with self._change("delete the photos") as (con, journal):
            files = []
            for image_id in image_ids:
                row = con.execute(
                    "SELECT i.file, c.name FROM images i JOIN classes c ON c.id=i.class_id WHERE i.id=?", (image_id,)
                ).fetchone()
                if row is not None:
                    con.execute("DELETE FROM images WHERE id=?", (image_id,))
                    files.append(self.images_dir / row["name"] / row["file"])
            journal.trash(files)

    # ---- runs -----------------------------------------------------------------------------

    def run_dir(self, run_id: int) -> Path:
        return self.meta_dir / "runs" / f"run-{run_id:04d}"

    def create_run(self, run_config: dict) -> int:
        """A new queued run; RunBusy when one is already queued or training (one at a time, across processes)."""
        with self.db.write() as con:
            run_id = insert_run(con, run_config)
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def update_run(self, run_id: int, *, status: RunStatus | None = None, summary: dict | None = None,
                   progress: dict | None = None, error: str | None = None, pid: int | None = None) -> None:
        sets = run_updates(status, summary, progress, error, pid)
        with self.db.write() as con:
            apply_updates(con, run_id, sets)

    def add_epoch(self, run_id: int, stage: str, epoch: int, metrics: dict) -> None:
        with self.db.write() as con:
            con.execute("INSERT OR REPLACE INTO run_epochs VALUES (?, ?, ?, ?)",
                        (run_id, stage, epoch, json.dumps(metrics)))

    def epochs(self, run_id: int) -> list[dict]:
        """Per-epoch metrics of a run in order, each with its stage and epoch number."""
        with self.db.read() as con:
            rows = con.execute("SELECT * FROM run_epochs WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()
        return [{"stage": r["stage"], "epoch": r["epoch"], **json.loads(r["metrics"])} for r in rows]

    def request_stop(self, run_id: int) -> None:
        with self.db.write() as con:
            con.execute("UPDATE runs SET stop_requested=1 WHERE id=?", (run_id,))

    def run(self, run_id: int) -> RunRecord:
        with self.db.read() as con:
            row = con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"There is no run {run_id}.")
        return run_record(row, self.run_dir(row["id"]))

    def runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        with self.db.read() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
        return [run_record(r, self.run_dir(r["id"])) for r in rows]


def _class_row(con: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    """The id and stored spelling of the class a name means (see CLASS_BY_NAME)."""
    return con.execute(f"SELECT id, name FROM classes WHERE id={CLASS_BY_NAME}", (name, name_key(name))).fetchone()


# ---- the workspace: a folder of projects -----------------------------------------------------


def list_projects(root: Path | None = None) -> list[str]:
    root = root or config.workspace_root()
    if not root.exists():
        return []
    return sorted((p.name for p in root.iterdir() if (p / DB_NAME).exists()), key=name_key)


def create_project(name: str, root: Path | None = None) -> Project:
    name = validate_name(name, "project name")
    root = root or config.workspace_root()
    if any(name_key(existing) == name_key(name) for existing in list_projects(root)):
        raise StoreError(f"A project named '{name}' already exists.")
    return Project(root / name, create=True, name=name)


def open_project(name: str, root: Path | None = None) -> Project:
    """An existing project; ProjectDamaged (a StoreError saying what can be done) when its database is unreadable."""
    return Project((root or config.workspace_root()) / validate_name(name, "project name"))


def restore_backup(name: str, root: Path | None = None) -> Project:
    """Replace a damaged project's database by its automatic backup, and take back photos added since."""
    folder = (root or config.workspace_root()) / validate_name(name, "project name")
    Database(folder / DB_NAME).restore_backup()
    project = Project(folder)
    project.take_in_stray_files()
    return project
