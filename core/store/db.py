"""The project's SQLite file: connections, transactions, schema and its upgrades, health and backup.

Many writers share one file (page reruns, the background search, the training worker, other
processes), so every write is a `BEGIN IMMEDIATE` transaction: it takes the write lock before it
reads what it checks, and a second writer waits (busy timeout) instead of failing. WAL lets
readers go on meanwhile. Each call opens its own short-lived connection, so threads never share one.

The file itself is read directly (its header, for damage) only while this process has no connection open to it:
closing any descriptor of a database file drops every POSIX lock the process holds on it, and another process
would then take itself for the file's last user and delete the write-ahead log under our open connections
(https://sqlite.org/howtocorrupt.html, 2.2.1).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.store.errors import ProjectDamaged, StoreError
from core.store.names import name_key

DB_NAME = "project.sqlite"
BACKUP_DIR = "backup"  # inside the project folder: backup/project.sqlite, backup/damaged-<time>/
BACKUP_INTERVAL = 600  # seconds: a changed database is copied at most this often, on open
BUSY_TIMEOUT = 120  # seconds a writer waits for another's transaction; ours last milliseconds
SCHEMA_VERSION = 2  # PRAGMA user_version; 0 is the first released layout, upgraded on open
_HEADER = b"SQLite format 3\x00"
SHORT_FILE_LOOKS = 5  # a checkpoint in flight lasts milliseconds; a truncated file stays short

# Version 0, exactly as the first release wrote it: new projects start here and are upgraded like old ones.
TABLES = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS classes (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE, created REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS images (
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
        added REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS images_class ON images(class_id, status)",
    """CREATE TABLE IF NOT EXISTS rejected_inputs (
        id INTEGER PRIMARY KEY, class_name TEXT, original_name TEXT, source TEXT, source_url TEXT,
        reason TEXT NOT NULL, detail TEXT, at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY, created REAL NOT NULL,
        status TEXT NOT NULL,
        config TEXT NOT NULL, summary TEXT, progress TEXT, error TEXT,
        pid INTEGER, stop_requested INTEGER NOT NULL DEFAULT 0, finished REAL)""",
    """CREATE TABLE IF NOT EXISTS run_epochs (
        run_id INTEGER NOT NULL REFERENCES runs(id), stage TEXT NOT NULL, epoch INTEGER NOT NULL,
        metrics TEXT NOT NULL, PRIMARY KEY (run_id, stage, epoch))""",
]


def _upgrade_to_1(con: sqlite3.Connection) -> None:
    """Unicode-wide unique class names (name_key), worker identity that survives pid reuse, one active run."""
    if "name_key" not in _columns(con, "classes"):
        con.execute("ALTER TABLE classes ADD COLUMN name_key TEXT")
    _rekey(con)
    con.execute("CREATE UNIQUE INDEX IF NOT EXISTS classes_key ON classes(name_key)")
    if "worker_started" not in _columns(con, "runs"):
        con.execute("ALTER TABLE runs ADD COLUMN worker_started REAL")
    con.execute(
        """UPDATE runs SET status='failed', finished=?, error='Interrupted: another run was started after it.'
           WHERE status IN ('queued', 'running')
             AND id <> (SELECT MAX(id) FROM runs WHERE status IN ('queued', 'running'))""", (time.time(),))
    con.execute("CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active ON runs((0)) WHERE status IN ('queued', 'running')")


def _upgrade_to_2(con: sqlite3.Connection) -> None:
    """Names compared without the characters that show nothing (zero-width spaces, direction marks)."""
    _rekey(con)


def _rekey(con: sqlite3.Connection) -> None:
    """Every class's name_key from the current rules. Two classes an older version let in that are now one name
    ('Élan' and 'élan', 'ab' and 'a<zero-width space>b') stay two, as the user left them: the later one's key
    is made unique, and `Project.name_clashes` tells the user."""
    con.execute("UPDATE classes SET name_key=? || id", ("\x00",))  # out of the unique index's way while keys change
    taken: set[str] = set()
    for row in con.execute("SELECT id, name FROM classes ORDER BY id").fetchall():
        key = name_key(row["name"])
        if key in taken:
            key = f"{key}\x00{row['id']}"
        taken.add(key)
        con.execute("UPDATE classes SET name_key=? WHERE id=?", (key, row["id"]))


UPGRADES = {1: _upgrade_to_1, 2: _upgrade_to_2}


_OPEN_LOCK = threading.Lock()
_open_connections: Counter[str] = Counter()  # this process's open connections, per database file


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {row["name"] for row in con.execute(f"PRAGMA table_info({table})")}


class Database:
    """One project.sqlite: short transactions, upgrades, and a backup kept beside it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._key = os.path.realpath(self.path)
        self.backup_path = self.path.parent / BACKUP_DIR / DB_NAME

    # ---- transactions -----------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own, counted while open (see the module's note on reading the file directly)."""
        with _OPEN_LOCK:
            _open_connections[self._key] += 1
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                con.row_factory = sqlite3.Row
                con.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a full fsync per photo made imports crawl
                con.execute("PRAGMA foreign_keys=ON")
                yield con
            finally:
                con.close()
        finally:
            with _OPEN_LOCK:
                _open_connections[self._key] -= 1
                if not _open_connections[self._key]:
                    del _open_connections[self._key]

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        try:
            with self._connection() as con:
                con.execute(begin)
                try:
                    yield con
                except BaseException:
                    if con.in_transaction:  # SQLite may have rolled back already (a full disk, an I/O error)
                        con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:  # "malformed", "not a database": the file itself is damaged
                raise self.damaged(str(exc)) from exc
            raise

    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot to read from."""
        return self._transaction("BEGIN")

    def write(self) -> Iterator[sqlite3.Connection]:
        """A transaction holding the write lock from its first statement: what it reads stays true until it commits."""
        return self._transaction("BEGIN IMMEDIATE")

    # ---- schema -------------------------------------------------------------------------------

    def create(self, defaults: dict[str, str]) -> None:
        """Make the tables (when missing) and the settings' first values; a damaged file is left as it is."""
        if self.path.exists() and (problem := self.problem()):
            raise self.damaged(problem)
        with self.write() as con:
            for statement in TABLES:
                con.execute(statement)
            con.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", defaults.items())
        self.open()

    def open(self) -> None:
        """Check the file can be read, and bring an older project's tables up to date."""
        problem = self.problem()
        if problem:
            raise self.damaged(problem)
        with self.read() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if not con.execute("SELECT 1 FROM sqlite_master WHERE name='images'").fetchone():
                raise self.damaged("it has no photo table")
        if version < SCHEMA_VERSION:
            self._upgrade()

    def _upgrade(self) -> None:
        with self._connection() as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent; needs no transaction around it
        with self.write() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]  # another process may have upgraded it
            for target in range(version + 1, SCHEMA_VERSION + 1):
                UPGRADES[target](con)
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # ---- health and backup --------------------------------------------------------------------

    def problem(self) -> str | None:
        """What is visibly wrong with the file, read from its header without opening it (so nothing is written).

        A checkpoint in another connection writes the header before the pages it adds, so a file that
        looks cut short is looked at again: only a shortfall that lasts is damage. While this process has a
        connection open, the file is not read directly (see the module's note) and SQLite says what it cannot read."""
        for attempt in range(SHORT_FILE_LOOKS):
            problem = self._header_problem()
            if problem is None or not problem.startswith("the database file is cut short"):
                return problem
            time.sleep(0.02 * (attempt + 1))
        return problem

    def _header(self) -> tuple[bytes | None, int]:
        """The file's first 100 bytes (None while this process has a connection open to it) and its size."""
        with _OPEN_LOCK:  # no connection of this process opens until the file is closed again
            if _open_connections[self._key]:
                return None, self.path.stat().st_size
            with open(self.path, "rb") as f:
                return f.read(100), os.fstat(f.fileno()).st_size

    def _header_problem(self) -> str | None:
        try:
            head, size = self._header()
        except FileNotFoundError:
            return "the database file is missing"
        if size == 0:
            return "the database file is empty (0 bytes)"
        if head is None:
            return None
        if len(head) < 100 or not head.startswith(_HEADER):
            return "the database file is not an SQLite database any more"
        page_size = int.from_bytes(head[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(head[28:32], "big")
        header_size_valid = head[24:28] == head[92:96]  # SQLite's rule for trusting the stored page count
        if header_size_valid and size < pages * page_size:
            return f"the database file is cut short ({size:,} of {pages * page_size:,} bytes)"
        return None

    def damaged(self, detail: str) -> ProjectDamaged:
        backup = self.backup_time()
        zip_offer = "download the photos as a zip and import it into a new project"
        if backup:
            options = ("You can restore the automatic backup of "
                       + time.strftime("%Y-%m-%d %H:%M", time.localtime(backup))
                       + " (changes made since then are lost; photos added, moved or renamed since are taken back "
                         f"as the folders hold them), or {zip_offer}.")
        else:
            options = f"No automatic backup exists yet; you can {zip_offer}."
        return ProjectDamaged(
            f"This project's database cannot be read: {detail}. Your photos are untouched in "
            f"{self.path.parent / 'images'}. {options}", backup)

    def backup_time(self) -> float | None:
        try:
            return self.backup_path.stat().st_mtime
        except FileNotFoundError:
            return None

    def backup_if_due(self) -> bool:
        """Copy a healthy, changed database to backup/ when the last copy is older than BACKUP_INTERVAL."""
        last = self.backup_time()
        wal = self.path.with_name(self.path.name + "-wal")
        changed = max(p.stat().st_mtime for p in (self.path, wal) if p.exists())
        if last is not None and (changed <= last or time.time() - last < BACKUP_INTERVAL):
            return False
        self.backup_path.parent.mkdir(exist_ok=True)
        tmp = self.backup_path.with_name(f".tmp-{uuid.uuid4().hex}.sqlite")
        try:
            with self._connection() as source:
                if source.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    return False  # never let a damaged database replace a good backup
                target = sqlite3.connect(tmp)
                try:
                    source.backup(target)
                finally:
                    target.close()
            os.replace(tmp, self.backup_path)
            return True
        except sqlite3.DatabaseError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def restore_backup(self) -> Path:
        """Put the backup in place of the database; the damaged files are kept in backup/damaged-<time>/."""
        if self.backup_time() is None:
            raise StoreError("This project has no automatic backup to restore.")
        aside = self.backup_path.parent / time.strftime("damaged-%Y%m%d-%H%M%S")
        aside.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                os.replace(part, aside / part.name)
        tmp = self.path.with_name(f".tmp-{uuid.uuid4().hex}.sqlite")
        shutil.copyfile(self.backup_path, tmp)
        os.replace(tmp, self.path)
        return aside
