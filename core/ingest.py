"""Bringing photos the user already has into a project: single files, an ImageFolder tree, a zip.

Every file goes through `Project.add_image`, so uploads get exactly the validation and
duplicate checks that web downloads get. Nothing is skipped without being counted.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable

from core.store import AddResult, Project, StoreError, validate_name

MAX_ZIP_TOTAL_BYTES = 4 * 1024**3  # uncompressed
MAX_ZIP_MEMBER_BYTES = 100 * 1024**2
MAX_ZIP_RATIO = 200  # uncompressed / compressed, per member: beyond this it is a zip bomb, not photos
SYSTEM_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class ImportRefused(StoreError):
    """An archive or folder that cannot be imported as a whole (zip-slip path, zip bomb, no photos)."""


@dataclass
class ImportReport:
    """What happened to each file of an import."""

    added: int = 0
    duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, sentence)
    skipped_system_files: int = 0
    per_class: Counter = field(default_factory=Counter)

    def record(self, name: str, class_name: str, result: AddResult) -> None:
        if result.status == "added":
            self.added += 1
            self.per_class[class_name] += 1
        elif result.status in ("duplicate", "near_duplicate"):
            self.duplicates += 1
        else:
            self.rejected.append((name, result.detail or result.reason or "rejected"))

    def summary(self) -> str:
        """One sentence for the UI and the CLI."""
        parts = [f"{self.added} photo{'s' if self.added != 1 else ''} added"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already in the project")
        if self.rejected:
            parts.append(f"{len(self.rejected)} rejected")
        if self.skipped_system_files:
            parts.append(f"{self.skipped_system_files} system files skipped")
        return ", ".join(parts) + "."


Progress = Callable[[int, int], None]


def import_files(project: Project, class_name: str, files: Iterable[tuple[str, bytes]], *,
                 source: str = "upload", on_progress: Progress | None = None) -> ImportReport:
    """Add (file name, bytes) pairs to one class."""
    files = list(files)
    report = ImportReport()
    for done, (name, data) in enumerate(files, 1):
        report.record(name, class_name, project.add_image(class_name, data, source=source, original_name=name))
        if on_progress:
            on_progress(done, len(files))
    return report


def import_folder(project: Project, folder: Path, *, on_progress: Progress | None = None) -> ImportReport:
    """Import an ImageFolder tree: each sub-folder is a class, named after the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImportRefused(f"{folder} is not a folder.")
    items = [(f.relative_to(folder).as_posix(), f) for f in sorted(folder.glob("*/*")) if f.is_file()]
    if not items:
        raise ImportRefused(f"{folder} has no sub-folders with files; expected one folder per class.")
    report = ImportReport()
    for done, (rel, path) in enumerate(items, 1):
        class_name, name = rel.split("/", 1)
        if name in SYSTEM_FILES or name.startswith("."):
            report.skipped_system_files += 1
        else:
            report.record(rel, class_name,
                          project.add_image(class_name, path.read_bytes(), source="folder", original_name=name))
        if on_progress:
            on_progress(done, len(items))
    return report


def import_zip(project: Project, archive: Path | IO[bytes], class_name: str | None = None, *,
               on_progress: Progress | None = None) -> ImportReport:
    """Import a zip: folders inside become classes; files at the top go into `class_name`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _safe_members(zf)
            plan = [(m, *_class_and_name(m.filename, class_name)) for m in members]
            _check_classes(plan)
            report = ImportReport()
            for done, (member, target, name) in enumerate(plan, 1):
                if name in SYSTEM_FILES or name.startswith(".") or "__MACOSX" in member.filename:
                    report.skipped_system_files += 1
                else:
                    result = project.add_image(target, zf.read(member), source="zip", original_name=name)
                    report.record(member.filename, target, result)
                if on_progress:
                    on_progress(done, len(plan))
    except zipfile.BadZipFile as exc:
        raise ImportRefused(f"This is not a readable zip file ({exc}).") from exc
    return report


def _safe_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's files, after refusing zip-slip paths and zip bombs for the whole archive."""
    members = [m for m in zf.infolist() if not m.is_dir()]
    total = 0
    for m in members:
        path = PurePosixPath(m.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise ImportRefused(f"The zip contains an unsafe path '{m.filename}'; nothing was imported.")
        if m.file_size > MAX_ZIP_MEMBER_BYTES or m.file_size > MAX_ZIP_RATIO * max(m.compress_size, 1):
            raise ImportRefused(f"'{m.filename}' in the zip expands to {m.file_size:,} bytes, "
                               "too large for a photo; nothing was imported.")
        total += m.file_size
    if total > MAX_ZIP_TOTAL_BYTES:
        raise ImportRefused(f"The zip expands to {total / 1024**3:.1f} GB, over the "
                           f"{MAX_ZIP_TOTAL_BYTES / 1024**3:.0f} GB limit; nothing was imported.")
    if not members:
        raise ImportRefused("The zip is empty.")
    return members


def _class_and_name(filename: str, default_class: str | None) -> tuple[str | None, str]:
    """Class from the innermost folder (so `dataset/cats/x.jpg` lands in 'cats'), else the default."""
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    return (parts[-2] if len(parts) >= 2 else default_class), parts[-1]


def _check_classes(plan: list[tuple[zipfile.ZipInfo, str | None, str]]) -> None:
    """Fail before importing anything when a file has no class or a folder name is not a valid class."""
    for member, target, name in plan:
        if target is None and not (name in SYSTEM_FILES or name.startswith(".")):
            raise ImportRefused("The zip has photos at its top level: choose a class for them, "
                               "or put them in one folder per class.")
        if target is not None and "__MACOSX" not in member.filename:
            validate_name(target)
