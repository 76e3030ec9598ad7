"""The project: an SQLite database beside an ImageFolder tree (`images/<class>/<file>`).

Folders hold the photos so a user can take the dataset anywhere; the database holds what
folders cannot: where each photo came from, its hashes, kept/rejected status, its split,
and the training runs. Every write is a transaction; files are written under a temporary
name and renamed, so a crash never leaves a half-written photo or a row without its file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from core import config
from core.files import TEMP_PREFIX, atomic_write
from core.images import ImageRejected, decode_image, thumbnail_bytes

DB_NAME = "project.sqlite"
MAX_NAME_LENGTH = 64
DEFAULT_VAL_SHARE = 0.2
LEFTOVER_AGE = 3600  # seconds: no photo write takes this long, so an older temp file is a crash's leftover
NEAR_DUPLICATE_DISTANCE = 6  # of 64 hash bits: resized or recompressed copies fall well inside
_FORBIDDEN = re.compile(r'[\\/<>:"|?*\x00-\x1f\x7f]')
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    class_id INTEGER NOT NULL REFERENCES classes(id),
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    phash TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL,
    source TEXT NOT NULL, source_url TEXT, query TEXT, original_name TEXT,
    status TEXT NOT NULL DEFAULT 'kept' CHECK (status IN ('kept', 'rejected')),
    reject_reason TEXT,
    split_key REAL NOT NULL,
    added REAL NOT NULL);
CREATE INDEX IF NOT EXISTS images_class ON images(class_id, status);
CREATE TABLE IF NOT EXISTS rejected_inputs (
    id INTEGER PRIMARY KEY, class_name TEXT, original_name TEXT, source TEXT, source_url TEXT,
    reason TEXT NOT NULL, detail TEXT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, created REAL NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL, summary TEXT, progress TEXT, error TEXT,
    pid INTEGER, stop_requested INTEGER NOT NULL DEFAULT 0, finished REAL);
CREATE TABLE IF NOT EXISTS run_epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id), stage TEXT NOT NULL, epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL, PRIMARY KEY (run_id, stage, epoch));
"""

IMAGE_ROWS = "SELECT i.*, c.name AS class_name FROM images i JOIN classes c ON c.id=i.class_id"  # every photo query: the row plus its class name

Status = Literal["kept", "rejected"]
RunStatus = Literal["queued", "running", "completed", "stopped", "failed"]


class StoreError(ValueError):
    """A request the project cannot carry out; the message is meant for the user."""


@dataclass(frozen=True)
class ClassInfo:
    name: str
    kept: int
    rejected: int
    train: int
    val: int


@dataclass(frozen=True)
class ImageRecord:
    id: int
    class_name: str
    path: Path
    sha256: str
    phash: int
    width: int
    height: int
    size_bytes: int
    source: str
    source_url: str | None
    query: str | None
    original_name: str | None
    status: Status
    reject_reason: str | None
    split: Literal["train", "val"]
    added: float


@dataclass(frozen=True)
class AddResult:
    status: Literal["added", "duplicate", "near_duplicate", "rejected"]
    image_id: int | None = None
    reason: str | None = None
    path: Path | None = None
    detail: str | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    created: float
    status: RunStatus
    config: dict
    summary: dict
    progress: dict
    error: str | None
    pid: int | None
    stop_requested: bool
    finished: float | None
    dir: Path


def validate_name(name: str, what: str = "class name") -> str:
    """A name that is safe as a folder on every OS, or StoreError saying what is wrong."""
    cleaned = " ".join(str(name).split())
    if not cleaned:
        raise StoreError(f"The {what} is empty.")
    if cleaned in (".", "..") or cleaned.startswith("."):
        raise StoreError(f"The {what} '{cleaned}' cannot start with a dot.")
    if _FORBIDDEN.search(cleaned):
        raise StoreError(f"The {what} '{cleaned}' contains a character that can't be in a folder name (/ \\ < > : \" | ? *).")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise StoreError(f"The {what} is {len(cleaned)} characters long; at most {MAX_NAME_LENGTH} are allowed.")
    if cleaned.split(".")[0].lower() in _RESERVED:
        raise StoreError(f"'{cleaned}' is a reserved file name on Windows; choose another {what}.")
    return cleaned


def split_for(split_key: float, val_share: float) -> Literal["train", "val"]:
    return "val" if split_key < val_share else "train"


def split_key(sha256: str) -> float:
    """A number in [0, 1) fixed by the photo's content: the split never changes as photos are added."""
    return int(sha256[:12], 16) / float(16**12)


def _file_stem(original_name: str | None) -> str:
    stem = Path(original_name or "").stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-")[:40]
    return stem or "image"


class Project:
    """One dataset and its runs. Safe to share between threads and processes."""

    def __init__(self, meta_dir: Path, images_dir: Path | None = None, *, create: bool = False, name: str | None = None):
        self.meta_dir = Path(meta_dir)
        self.images_dir = Path(images_dir) if images_dir else self.meta_dir / "images"
        self.db_path = self.meta_dir / DB_NAME
        if not create and not self.db_path.exists():
            raise StoreError(f"There is no project at {self.meta_dir}.")
        self._lock = threading.RLock()
        if create:  # opening (every page rerun does) must stay read-only and cheap
            self.meta_dir.mkdir(parents=True, exist_ok=True)
            self.images_dir.mkdir(parents=True, exist_ok=True)
            with self._tx() as con:
                con.executescript(SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('name', ?)", (name or self.meta_dir.name,))
                con.execute("INSERT OR IGNORE INTO meta VALUES ('val_share', ?)", (str(DEFAULT_VAL_SHARE),))
        self._remove_leftover_temp_files()

    # ---- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection in one transaction: committed on success, rolled back on error."""
        con = sqlite3.connect(self.db_path, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a full fsync per photo made imports crawl
            con.execute("PRAGMA foreign_keys=ON")
            with con:
                yield con
        finally:
            con.close()

    def _remove_leftover_temp_files(self) -> None:
        """Delete temp files a crash left behind; young ones may be a write in progress in another thread."""
        cutoff = time.time() - LEFTOVER_AGE
        for tmp in self.images_dir.glob(f"*/{TEMP_PREFIX}*"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink(missing_ok=True)
            except FileNotFoundError:  # its writer finished meanwhile
                pass

    def __repr__(self) -> str:
        return f"Project({self.name!r}, {self.meta_dir})"

    # ---- settings -------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        with self._tx() as con:
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
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('backbone', ?)", (name,))

    def set_val_share(self, share: float) -> None:
        """Share of each class held out for validation; photos keep their place as the set grows."""
        if not 0.05 <= share <= 0.5:
            raise StoreError("The validation share must be between 5% and 50%.")
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('val_share', ?)", (str(share),))

    # ---- classes --------------------------------------------------------------------------

    def class_names(self) -> list[str]:
        with self._tx() as con:
            return [r["name"] for r in con.execute("SELECT name FROM classes ORDER BY name COLLATE NOCASE")]

    def classes(self) -> list[ClassInfo]:
        """Every class with its kept/rejected counts and kept photos per split."""
        share = self.val_share
        with self._tx() as con:
            rows = con.execute(
                """SELECT c.name,
                          SUM(i.status='kept') AS kept, SUM(i.status='rejected') AS rejected,
                          SUM(i.status='kept' AND i.split_key < ?) AS val
                   FROM classes c LEFT JOIN images i ON i.class_id = c.id
                   GROUP BY c.id ORDER BY c.name COLLATE NOCASE""",
                (share,),
            ).fetchall()
        return [
            ClassInfo(r["name"], r["kept"] or 0, r["rejected"] or 0, (r["kept"] or 0) - (r["val"] or 0), r["val"] or 0)
            for r in rows
        ]

    def _class(self, con: sqlite3.Connection, name: str) -> tuple[int, str]:
        """An existing class's id and stored spelling (lookups ignore case)."""
        row = con.execute("SELECT id, name FROM classes WHERE name=?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"There is no class named '{name}'.")
        return row["id"], row["name"]

    def add_class(self, name: str) -> str:
        """Create a class (and its folder); returns the cleaned name. Adding an existing one is an error."""
        name = validate_name(name)
        with self._lock, self._tx() as con:
            existing = con.execute("SELECT name FROM classes WHERE name=?", (name,)).fetchone()
            if existing:
                raise StoreError(f"A class named '{existing['name']}' already exists.")
            return self._ensure_class(con, name)[1]

    def _ensure_class(self, con: sqlite3.Connection, name: str) -> tuple[int, str]:
        """The class's id and stored spelling, creating it when missing."""
        name = validate_name(name)
        row = con.execute("SELECT id, name FROM classes WHERE name=?", (name,)).fetchone()
        if row:
            return row["id"], row["name"]
        cur = con.execute("INSERT INTO classes (name, created) VALUES (?, ?)", (name, time.time()))
        (self.images_dir / name).mkdir(parents=True, exist_ok=True)
        return cur.lastrowid, name

    def rename_class(self, old: str, new: str) -> str:
        new = validate_name(new)
        with self._lock, self._tx() as con:
            class_id, stored_old = self._class(con, old)
            clash = con.execute("SELECT name FROM classes WHERE name=? AND id<>?", (new, class_id)).fetchone()
            if clash:
                raise StoreError(f"A class named '{clash['name']}' already exists.")
            con.execute("UPDATE classes SET name=? WHERE id=?", (new, class_id))
            src, dst = self.images_dir / stored_old, self.images_dir / new
            if src.exists() and src != dst:
                # Two-step rename so a case-only change works on case-insensitive file systems too.
                tmp = self.images_dir / f"{TEMP_PREFIX}rename-{uuid.uuid4().hex}"
                os.replace(src, tmp)
                os.replace(tmp, dst)
        return new

    def delete_class(self, name: str) -> int:
        """Delete a class with all its photos, for good; returns how many photos went."""
        with self._lock, self._tx() as con:
            class_id, stored = self._class(con, name)
            count = con.execute("DELETE FROM images WHERE class_id=?", (class_id,)).rowcount
            con.execute("DELETE FROM classes WHERE id=?", (class_id,))
            shutil.rmtree(self.images_dir / stored, ignore_errors=True)
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
    ) -> AddResult:
        """Validate and store one photo in a class (created if missing). Never overwrites anything."""
        class_name = validate_name(class_name)
        try:
            decoded = decode_image(data)
        except ImageRejected as exc:
            self._record_rejected_input(class_name, original_name, source, source_url, exc.reason, str(exc))
            return AddResult("rejected", reason=exc.reason, detail=str(exc))

        with self._lock, self._tx() as con:
            same = con.execute("SELECT id FROM images WHERE sha256=?", (decoded.sha256,)).fetchone()
            if same:
                return AddResult("duplicate", image_id=same["id"], reason="duplicate")
            if reject_near_duplicates:
                near = self._nearest(con, decoded.phash)
                if near is not None and near[1] <= NEAR_DUPLICATE_DISTANCE:
                    return AddResult("near_duplicate", image_id=near[0], reason="near_duplicate")
            class_id, class_name = self._ensure_class(con, class_name)
            path = self._free_path(class_name, _file_stem(original_name), decoded.sha256, decoded.extension)
            cur = con.execute(
                """INSERT INTO images (class_id, file, sha256, phash, width, height, bytes, source, source_url,
                                       query, original_name, split_key, added)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (class_id, path.name, decoded.sha256, f"{decoded.phash:016x}", decoded.width, decoded.height,
                 len(decoded.stored_bytes), source, source_url, query, original_name,
                 split_key(decoded.sha256), time.time()),
            )
            atomic_write(path, decoded.stored_bytes)  # inside the transaction: a failed write rolls the row back
        return AddResult("added", image_id=cur.lastrowid, path=path)

    def _free_path(self, class_name: str, stem: str, sha256: str, ext: str) -> Path:
        folder = self.images_dir / class_name
        for n in (8, 16, 64):
            candidate = folder / f"{stem}_{sha256[:n]}{ext}"
            if not candidate.exists():
                return candidate
        raise StoreError(f"Could not find a free file name for {stem} in {folder}.")

    def _nearest(self, con: sqlite3.Connection, phash: int) -> tuple[int, int] | None:
        """(image id, distance) of the most similar stored photo by perceptual hash."""
        rows = con.execute("SELECT id, phash FROM images").fetchall()
        if not rows:
            return None
        hashes = np.array([int(r["phash"], 16) for r in rows], dtype=np.uint64)
        distances = _popcount64(hashes ^ np.uint64(phash))
        best = int(np.argmin(distances))
        return rows[best]["id"], int(distances[best])

    def _record_rejected_input(self, class_name, original_name, source, source_url, reason, detail) -> None:
        with self._tx() as con:
            con.execute(
                "INSERT INTO rejected_inputs (class_name, original_name, source, source_url, reason, detail, at) VALUES (?,?,?,?,?,?,?)",
                (class_name, original_name, source, source_url, reason, detail, time.time()),
            )

    def rejected_inputs(self, limit: int = 200) -> list[dict]:
        """Files that never became photos (not an image, truncated...), newest first, with the reason."""
        with self._tx() as con:
            rows = con.execute("SELECT * FROM rejected_inputs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def known_urls(self, class_name: str) -> set[str]:
        """Source URLs already stored in a class: a second web search skips them without downloading."""
        with self._tx() as con:
            rows = con.execute(
                "SELECT source_url FROM images i JOIN classes c ON c.id=i.class_id WHERE c.name=? AND source_url IS NOT NULL",
                (class_name,),
            ).fetchall()
        return {r["source_url"] for r in rows}

    # ---- reading photos -------------------------------------------------------------------

    def images(self, class_name: str | None = None, status: Status | None = None,
               split: Literal["train", "val"] | None = None) -> list[ImageRecord]:
        """Photos, filtered; ordered by class then time added."""
        share = self.val_share
        clauses, params = [], []
        if class_name is not None:
            clauses.append("c.name=?")
            params.append(class_name)
        if status is not None:
            clauses.append("i.status=?")
            params.append(status)
        if split is not None:
            clauses.append("i.split_key < ?" if split == "val" else "i.split_key >= ?")
            params.append(share)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._tx() as con:
            rows = con.execute(
                f"{IMAGE_ROWS} {where} "
                "ORDER BY c.name COLLATE NOCASE, i.id",
                params,
            ).fetchall()
        return [self._record(r, share) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        record = self._one_image("i.id=?", (image_id,))
        if record is None:
            raise StoreError(f"There is no photo with id {image_id}.")
        return record

    def image_at(self, path: Path) -> ImageRecord | None:
        """The photo stored at a path (as written in a run's evaluation), if it is still there."""
        path = Path(path)
        return self._one_image("c.name=? AND i.file=?", (path.parent.name, path.name))

    def _one_image(self, condition: str, params: tuple) -> ImageRecord | None:
        with self._tx() as con:
            row = con.execute(f"{IMAGE_ROWS} WHERE {condition}", params).fetchone()
        return self._record(row, self.val_share) if row else None

    def _record(self, r: sqlite3.Row, share: float) -> ImageRecord:
        return ImageRecord(
            id=r["id"], class_name=r["class_name"], path=self.images_dir / r["class_name"] / r["file"],
            sha256=r["sha256"], phash=int(r["phash"], 16), width=r["width"], height=r["height"],
            size_bytes=r["bytes"], source=r["source"], source_url=r["source_url"], query=r["query"],
            original_name=r["original_name"], status=r["status"], reject_reason=r["reject_reason"],
            split=split_for(r["split_key"], share), added=r["added"],
        )

    def thumbnail(self, image: ImageRecord) -> bytes:
        """A cached small JPEG of a photo for grids."""
        path = self.meta_dir / "thumbs" / f"{image.sha256[:32]}.jpg"
        if not path.exists():
            atomic_write(path, thumbnail_bytes(image.path))
        return path.read_bytes()

    def duplicate_groups(self, max_distance: int = NEAR_DUPLICATE_DISTANCE) -> list[list[ImageRecord]]:
        """Groups of kept photos that show the same picture (perceptual hashes within max_distance)."""
        kept = self.images(status="kept")
        if len(kept) < 2:
            return []
        hashes = np.array([r.phash for r in kept], dtype=np.uint64)
        parent = list(range(len(kept)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i in range(len(kept) - 1):
            close = np.nonzero(_popcount64(hashes[i + 1:] ^ hashes[i]) <= max_distance)[0] + i + 1
            for j in close:
                parent[find(int(j))] = find(i)
        groups: dict[int, list[ImageRecord]] = {}
        for i, record in enumerate(kept):
            groups.setdefault(find(i), []).append(record)
        return [g for g in groups.values() if len(g) > 1]

    # ---- changing photos ------------------------------------------------------------------

    def reject(self, image_ids: list[int], reason: str = "rejected by you") -> None:
        """Mark photos as rejected: kept on disk and restorable, left out of training."""
        with self._lock, self._tx() as con:
            con.executemany("UPDATE images SET status='rejected', reject_reason=? WHERE id=?",
                            [(reason, i) for i in image_ids])

    def restore(self, image_ids: list[int]) -> None:
        with self._lock, self._tx() as con:
            con.executemany("UPDATE images SET status='kept', reject_reason=NULL WHERE id=?", [(i,) for i in image_ids])

    def move(self, image_ids: list[int], class_name: str) -> None:
        """Move photos to another class (created if missing); files move folders too."""
        with self._lock, self._tx() as con:
            class_id, class_name = self._ensure_class(con, class_name)
            for image_id in image_ids:
                row = con.execute(
                    "SELECT i.file, i.sha256, c.name FROM images i JOIN classes c ON c.id=i.class_id WHERE i.id=?",
                    (image_id,),
                ).fetchone()
                if row is None or row["name"] == class_name:
                    continue
                src = self.images_dir / row["name"] / row["file"]
                stem = src.stem.rsplit("_", 1)[0]
                dst = self._free_path(class_name, stem, row["sha256"], src.suffix)
                con.execute("UPDATE images SET class_id=?, file=? WHERE id=?", (class_id, dst.name, image_id))
                os.replace(src, dst)

    def delete_images(self, image_ids: list[int]) -> None:
        """Delete photos for good: rows and files."""
        with self._lock, self._tx() as con:
            for image_id in image_ids:
                row = con.execute(
                    "SELECT i.file, c.name FROM images i JOIN classes c ON c.id=i.class_id WHERE i.id=?", (image_id,)
                ).fetchone()
                if row is None:
                    continue
                con.execute("DELETE FROM images WHERE id=?", (image_id,))
                (self.images_dir / row["name"] / row["file"]).unlink(missing_ok=True)

    # ---- runs -----------------------------------------------------------------------------

    def run_dir(self, run_id: int) -> Path:
        return self.meta_dir / "runs" / f"run-{run_id:04d}"

    def create_run(self, run_config: dict) -> int:
        with self._tx() as con:
            cur = con.execute("INSERT INTO runs (created, status, config) VALUES (?, 'queued', ?)",
                              (time.time(), json.dumps(run_config)))
        self.run_dir(cur.lastrowid).mkdir(parents=True, exist_ok=True)
        return cur.lastrowid

    def update_run(self, run_id: int, *, status: RunStatus | None = None, summary: dict | None = None,
                   progress: dict | None = None, error: str | None = None, pid: int | None = None) -> None:
        fields = {"status": status, "summary": summary, "progress": progress, "error": error, "pid": pid}
        sets = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in fields.items() if v is not None}
        if status in ("completed", "stopped", "failed"):
            sets["finished"] = time.time()
        if not sets:
            return
        with self._tx() as con:
            con.execute(f"UPDATE runs SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?", (*sets.values(), run_id))

    def add_epoch(self, run_id: int, stage: str, epoch: int, metrics: dict) -> None:
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO run_epochs VALUES (?, ?, ?, ?)",
                        (run_id, stage, epoch, json.dumps(metrics)))

    def epochs(self, run_id: int) -> list[dict]:
        """Per-epoch metrics of a run in order, each with its stage and epoch number."""
        with self._tx() as con:
            rows = con.execute("SELECT * FROM run_epochs WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()
        return [{"stage": r["stage"], "epoch": r["epoch"], **json.loads(r["metrics"])} for r in rows]

    def request_stop(self, run_id: int) -> None:
        with self._tx() as con:
            con.execute("UPDATE runs SET stop_requested=1 WHERE id=?", (run_id,))

    def run(self, run_id: int) -> RunRecord:
        with self._tx() as con:
            row = con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"There is no run {run_id}.")
        return self._run_record(row)

    def runs(self) -> list[RunRecord]:
        """All runs, newest first."""
        with self._tx() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
        return [self._run_record(r) for r in rows]

    def _run_record(self, r: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=r["id"], created=r["created"], status=r["status"], config=json.loads(r["config"]),
            summary=json.loads(r["summary"] or "{}"), progress=json.loads(r["progress"] or "{}"),
            error=r["error"], pid=r["pid"], stop_requested=bool(r["stop_requested"]), finished=r["finished"],
            dir=self.run_dir(r["id"]),
        )


def _popcount64(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64, vectorized."""
    as_bytes = values.astype(np.uint64).view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)


# ---- the workspace: a folder of projects -----------------------------------------------------


def list_projects(root: Path | None = None) -> list[str]:
    root = root or config.workspace_root()
    if not root.exists():
        return []
    return sorted((p.name for p in root.iterdir() if (p / DB_NAME).exists()), key=str.lower)


def create_project(name: str, root: Path | None = None) -> Project:
    name = validate_name(name, "project name")
    root = root or config.workspace_root()
    if any(existing.lower() == name.lower() for existing in list_projects(root)):
        raise StoreError(f"A project named '{name}' already exists.")
    return Project(root / name, create=True, name=name)


def open_project(name: str, root: Path | None = None) -> Project:
    return Project((root or config.workspace_root()) / validate_name(name, "project name"))
