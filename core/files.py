"""Writing files so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(path: Path, temp_name: str | None = None) -> Iterator[Path]:
    """A temporary name beside `path` (same suffix, which Keras and zipfile care about; `temp_name` when given)
    that replaces `path` when the block succeeds and disappears when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name or f"{TEMP_PREFIX}{uuid.uuid4().hex}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes, temp_name: str | None = None) -> None:
    """Write bytes so readers see the old file or the new one, never a partial one."""
    with atomic_path(path, temp_name) as tmp:
        tmp.write_bytes(data)
