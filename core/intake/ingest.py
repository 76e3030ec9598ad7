"""Bringing photos the user already has into a project: single files, an ImageFolder tree, a zip.

Every file goes through `Project.add_image`, so uploads get exactly the validation and
duplicate checks that web downloads get. Nothing is skipped without being counted.

A zip is all-or-report: what its directory shows to be unsafe (zip-slip paths, a declared bomb,
files without a class) refuses the whole archive before anything is written; a member that
turns out unreadable while it is read (corrupt, password-protected, an unsupported compression
method, larger than a photo can be whatever the directory claims) is rejected with its reason
and the others go in. Rejections are recorded in batches, not one transaction per file.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable

from core.store.project import AddResult, Project, RejectedInput, StoreError, validate_name

MAX_FILES_PER_IMPORT = 50_000
MAX_ZIP_TOTAL_BYTES = 4 * 1024**3  # uncompressed, as declared and as really read
MAX_ZIP_MEMBER_BYTES = 100 * 1024**2
MAX_ZIP_RATIO = 200  # uncompressed / compressed, per member: beyond this it is a zip bomb, not photos
READABLE_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
SYSTEM_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}
REJECTION_BATCH = 500  # rejected files recorded per transaction


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


class _Batch:
    """An import's progress: adds photos, keeps the report, and records rejected files in batches."""

    def __init__(self, project: Project, source: str, total: int, on_progress: Progress | None):
        if total > MAX_FILES_PER_IMPORT:
            raise ImportRefused(f"That is {total:,} files; one import takes at most {MAX_FILES_PER_IMPORT:,}. "
                                "Nothing was imported: split them into smaller batches.")
        self.project = project
        self.source = source
        self.total = total
        self.done = 0
        self.report = ImportReport()
        self._on_progress = on_progress
        self._rejections: list[RejectedInput] = []

    def add(self, shown_name: str, class_name: str, name: str, data: bytes) -> None:
        result = self.project.add_image(class_name, data, source=self.source, original_name=name, record_rejection=False)
        self.report.record(shown_name, class_name, result)
        if result.status == "rejected":
            self._remember(RejectedInput(class_name, name, self.source, None, result.reason or "rejected",
                                         result.detail or ""))
        self.step()

    def reject(self, shown_name: str, class_name: str | None, name: str, reason: str, sentence: str) -> None:
        """A file that could not even be read out of its container."""
        self.report.rejected.append((shown_name, sentence))
        self._remember(RejectedInput(class_name, name, self.source, None, reason, sentence))
        self.step()

    def skip_system_file(self) -> None:
        self.report.skipped_system_files += 1
        self.step()

    def step(self) -> None:
        self.done += 1
        if self._on_progress:
            self._on_progress(self.done, self.total)

    def _remember(self, row: RejectedInput) -> None:
        self._rejections.append(row)
        if len(self._rejections) >= REJECTION_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._rejections:
            self.project.record_rejected_inputs(self._rejections)
            self._rejections = []

    def __enter__(self) -> "_Batch":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()  # even when the import stops half-way: what was rejected stays on record


def import_files(project: Project, class_name: str, files: Iterable[tuple[str, bytes]], *,
                 source: str = "upload", on_progress: Progress | None = None) -> ImportReport:
    """Add (file name, bytes) pairs to one class."""
    files = list(files)
    with _Batch(project, source, len(files), on_progress) as batch:
        for name, data in files:
            batch.add(name, class_name, name, data)
    return batch.report


def import_folder(project: Project, folder: Path, *, on_progress: Progress | None = None) -> ImportReport:
    """Import an ImageFolder tree: each sub-folder is a class, named after the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImportRefused(f"{folder} is not a folder.")
    items = [(f.relative_to(folder).as_posix(), f) for f in sorted(folder.glob("*/*")) if f.is_file()]
    if not items:
        raise ImportRefused(f"{folder} has no sub-folders with files; expected one folder per class.")
    with _Batch(project, "folder", len(items), on_progress) as batch:
        for rel, path in items:
            class_name, name = rel.split("/", 1)
            if name in SYSTEM_FILES or name.startswith("."):
                batch.skip_system_file()
            else:
                batch.add(rel, class_name, name, path.read_bytes())
    return batch.report


def import_zip(project: Project, archive: Path | IO[bytes], class_name: str | None = None, *,
               on_progress: Progress | None = None) -> ImportReport:
    """Import a zip: folders inside become classes; files at the top go into `class_name`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _safe_members(zf)
            plan = [(m, *_class_and_name(m.filename, class_name)) for m in members]
            _check_classes(plan)
            with _Batch(project, "zip", len(plan), on_progress) as batch:
                budget = [MAX_ZIP_TOTAL_BYTES]  # bytes really read, whatever the directory says
                for member, target, name in plan:
                    if name in SYSTEM_FILES or name.startswith(".") or "__MACOSX" in member.filename:
                        batch.skip_system_file()
                        continue
                    try:
                        data = _read_member(zf, member, budget)
                    except _Unreadable as exc:
                        batch.reject(member.filename, target, name, exc.reason, str(exc))
                    else:
                        batch.add(member.filename, target, name, data)
    except zipfile.BadZipFile as exc:
        raise ImportRefused(f"This is not a readable zip file ({exc}).") from exc
    return batch.report


class _Unreadable(Exception):
    """A zip member that cannot be read; `reason` is a short code, str() a sentence."""

    def __init__(self, reason: str, sentence: str):
        super().__init__(sentence)
        self.reason = reason


def _read_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, budget: list[int]) -> bytes:
    """A member's bytes, read with a cap that does not trust the directory; `budget` is what the
    whole archive may still expand to."""
    if member.flag_bits & 0x1:
        raise _Unreadable("encrypted", "It is password-protected; zip it again without a password.")
    if member.compress_type not in READABLE_METHODS:
        raise _Unreadable("unsupported", f"It is compressed with a method this app cannot read "
                                         f"(zip method {member.compress_type}); zip it again with standard compression.")
    cap = min(MAX_ZIP_MEMBER_BYTES, budget[0])
    try:
        with zf.open(member) as f:
            data = f.read(cap + 1)
            if len(data) > cap:
                raise _Unreadable("too_large", f"It expands to more than {cap / 1024**2:.0f} MB, too large for a photo"
                                  + ("." if cap == MAX_ZIP_MEMBER_BYTES else
                                     f" (the zip as a whole may expand to {MAX_ZIP_TOTAL_BYTES / 1024**3:.0f} GB)."))
            f.read(1)  # at the end: the CRC check runs
    except _Unreadable:
        raise
    except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, lzma errors...: this member only
        raise _Unreadable("corrupt", f"It is corrupt inside the zip ({exc}).") from exc
    budget[0] -= len(data)
    return data


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
