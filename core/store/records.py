"""What the store hands out: classes with their counts, photos, the outcome of adding one, and splits."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

IMAGE_ROWS = "SELECT i.*, c.name AS class_name FROM images i JOIN classes c ON c.id=i.class_id"  # every photo query: the row plus its class name

Status = Literal["kept", "rejected"]


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
    class_id: int | None = None  # the class it went to: later photos of a collection follow it through a rename


class RejectedInput(NamedTuple):
    """A file that never became a photo, as `rejected_inputs` records it."""

    class_name: str | None
    original_name: str | None
    source: str
    source_url: str | None
    reason: str  # short code such as "not_image" or "corrupt"
    detail: str  # the sentence shown to the user


def split_for(split_key: float, val_share: float) -> Literal["train", "val"]:
    return "val" if split_key < val_share else "train"


def split_key(sha256: str) -> float:
    """A number in [0, 1) fixed by the photo's content: the split never changes as photos are added."""
    return int(sha256[:12], 16) / float(16**12)


def image_record(r: sqlite3.Row, folder: Path, share: float) -> ImageRecord:
    """A photo row (from IMAGE_ROWS) as a record, its split worked out for the project's validation share;
    `folder` is its class's folder."""
    return ImageRecord(
        id=r["id"], class_name=r["class_name"], path=folder / r["file"],
        sha256=r["sha256"], phash=int(r["phash"], 16), width=r["width"], height=r["height"],
        size_bytes=r["bytes"], source=r["source"], source_url=r["source_url"], query=r["query"],
        original_name=r["original_name"], status=r["status"], reject_reason=r["reject_reason"],
        split=split_for(r["split_key"], share), added=r["added"],
    )
