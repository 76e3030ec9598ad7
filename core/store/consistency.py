"""Rows against files: every photo row has its file and every file in a class folder has its row."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Consistency:
    """What is out of step between the database and the images/ folder (all empty when all is well)."""

    missing_files: list[tuple[int, Path]] = field(default_factory=list)  # photo id, where its file should be
    files_without_rows: list[Path] = field(default_factory=list)  # photos on disk the project does not know
    repaired: int = 0  # unfinished changes put right on the way (a crash's journals)

    @property
    def problems(self) -> int:
        return len(self.missing_files) + len(self.files_without_rows)

    def describe(self) -> str:
        """One plain sentence for the page, or '' when all is well."""
        parts = []
        if n := len(self.missing_files):
            parts.append("1 photo is listed but its file is gone" if n == 1
                         else f"{n} photos are listed but their files are gone")
        if n := len(self.files_without_rows):
            parts.append("1 file in the class folders is not in the project" if n == 1
                         else f"{n} files in the class folders are not in the project")
        return "; ".join(parts)


def check(con: sqlite3.Connection, images_dir: Path) -> Consistency:
    """Compare the rows with the class folders (dot-named entries are the store's own temporary files).

    Names are compared as strings and only the differences become paths: the Start page checks every rerun, and
    at 50,000 photos two Path objects a photo cost seconds."""
    expected = {(row["name"], row["file"]): row["id"]
                for row in con.execute("SELECT i.id, i.file, c.name FROM images i JOIN classes c ON c.id=i.class_id")}
    on_disk = {(folder.name, entry.name) for folder in _entries(images_dir) if folder.is_dir()
               for entry in _entries(Path(folder.path))}
    return Consistency(
        missing_files=sorted((image_id, images_dir / name / file) for (name, file), image_id in expected.items()
                             if (name, file) not in on_disk),
        files_without_rows=sorted(images_dir / name / file for name, file in on_disk - expected.keys()),
    )


def _entries(folder: Path) -> list[os.DirEntry]:
    """A folder's entries but dot-named ones; none when it is not a folder (gone meanwhile)."""
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
