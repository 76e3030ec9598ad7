"""Taking files found in the class folders back into the project, where what the folders say wins.

Files without a row turn up after a user moves photos or renames a class folder by hand, after a
backup is restored, or after the database lost its last changes. Such a file is often a photo the
project already knows, under a row whose file is gone: it is re-linked where it now lies, taking
that folder's class. A folder that is no class holding the photos of a class whose own folder is
gone is that class renamed by hand. A file is removed only when another file with the very same
bytes is verified kept; a copy that differs is set aside in `recovered/`, never deleted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from core.images import ImageRejected, decode_image, sha256_hex
from core.store.duplicates import NEAR_DUPLICATE_DISTANCE
from core.store.errors import StoreError
from core.store.names import name_key, validate_name

RECOVERED_DIR = "recovered"  # in the project folder: files that could not go back in, kept for the user


@dataclass(frozen=True)
class KnownPhoto:
    """The row a stray file belongs to, and where that row expects its file."""

    id: int
    expected: Path


def known_photo(con: sqlite3.Connection, images_dir: Path, path: Path, data: bytes) -> KnownPhoto | None:
    """The photo a file is, by content (its bytes are the photo's) or by the store's own file name (which carries
    the content hash) for a photo stored re-encoded; None for a photo the project does not know."""
    row = con.execute("SELECT i.id, i.file, c.name FROM images i JOIN classes c ON c.id=i.class_id WHERE sha256=?",
                      (sha256_hex(data),)).fetchone()
    if row is None:
        row = _same_name_and_picture(con, images_dir, path, data)
    return KnownPhoto(row["id"], images_dir / row["name"] / row["file"]) if row else None


def _same_name_and_picture(con: sqlite3.Connection, images_dir: Path, path: Path, data: bytes) -> sqlite3.Row | None:
    rows = [r for r in con.execute("SELECT i.id, i.file, i.phash, c.name FROM images i JOIN classes c "
                                   "ON c.id=i.class_id WHERE i.file=?", (path.name,))
            if not (images_dir / r["name"] / r["file"]).exists()]
    if not rows:
        return None
    try:
        phash = decode_image(data).phash
    except ImageRejected:
        return None
    return next((r for r in rows if (int(r["phash"], 16) ^ phash).bit_count() <= NEAR_DUPLICATE_DISTANCE), None)


@dataclass(frozen=True)
class FolderPlan:
    """What a folder holding unknown files is: an existing class, a class renamed by hand, or a new class."""

    class_id: int | None  # the class it is (None: a new class to create)
    name: str  # the class's name once taken in (the folder is renamed to it when `rename_folder`)
    rename_class: bool = False  # the class `class_id` was renamed by hand to the folder's name
    rename_folder: bool = False  # the folder's name is taken by another class: the folder moves to `name`


def plan_folder(con: sqlite3.Connection, images_dir: Path, folder: Path) -> FolderPlan:
    """How to take in a folder of files without rows; StoreError when its name can never be a class."""
    row = con.execute("SELECT id FROM classes WHERE name=? COLLATE BINARY", (folder.name,)).fetchone()
    if row:
        return FolderPlan(row["id"], folder.name)
    name = validate_name(folder.name)
    if name != folder.name:
        raise StoreError(f"The folder '{folder.name}' is not spelled as a class name is; rename it by hand.")
    owner = _renamed_class(con, images_dir, folder)
    taken = con.execute("SELECT id FROM classes WHERE name_key=?", (name_key(name),)).fetchone()
    if taken is None or (owner is not None and taken["id"] == owner):
        return FolderPlan(owner, name, rename_class=owner is not None)
    return FolderPlan(owner, free_name(con, images_dir, name), rename_class=owner is not None, rename_folder=True)


def _renamed_class(con: sqlite3.Connection, images_dir: Path, folder: Path) -> int | None:
    """The class whose folder this one is after a rename by hand: all the known photos in it are of that one
    class, whose own folder is gone."""
    owners = set()
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            found = known_photo(con, images_dir, path, path.read_bytes())
        except OSError:
            continue
        if found is not None:
            owners.add(con.execute("SELECT class_id FROM images WHERE id=?", (found.id,)).fetchone()["class_id"])
    if len(owners) != 1:
        return None
    (owner,) = owners
    name = con.execute("SELECT name FROM classes WHERE id=?", (owner,)).fetchone()["name"]
    return None if (images_dir / name).exists() else owner


def free_name(con: sqlite3.Connection, images_dir: Path, name: str) -> str:
    """`name (2)`, `name (3)`…: the first that is neither a class nor a folder."""
    for n in range(2, 1000):
        candidate = validate_name(f"{name[:56]} ({n})")
        if (con.execute("SELECT 1 FROM classes WHERE name_key=?", (name_key(candidate),)).fetchone() is None
                and not (images_dir / candidate).exists()):
            return candidate
    raise StoreError(f"Could not find a free class name for the folder '{name}'.")


def set_aside(meta_dir: Path, path: Path) -> Path:
    """Move a file out of the class folders into `recovered/<folder>/`, under a name not taken there."""
    folder = meta_dir / RECOVERED_DIR / path.parent.name
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / path.name, 1
    while target.exists():
        n += 1
        target = folder / f"{path.stem}-{n}{path.suffix}"
    path.replace(target)
    return target
