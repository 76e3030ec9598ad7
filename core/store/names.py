"""Names that become folders: one spelling per name on every file system, one key per name in the database.

A class or project name is a folder name, so it must mean the same folder on Linux, macOS (which
decomposes accents) and Windows (which ignores case and reserves some names). Names are stored
NFC-normalised and compared through `name_key` (full Unicode case folding), and capped in UTF-8
bytes, which is what file systems count. Characters that show nothing (zero-width spaces, direction
marks) are dropped, so two names that look the same are the same name; a direction override, which
makes a name read backwards, is refused. Joiners stay where they join something (emoji, Indic and
Persian letters).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from core.store.errors import StoreError

MAX_NAME_LENGTH = 64  # characters: what fits in a label, a table cell and a labels.txt line
MAX_NAME_BYTES = 128  # UTF-8 bytes: far under every file system's 255, room for encrypted home folders
_FORBIDDEN = re.compile(r'[\\/<>:"|?*\x00-\x1f\x7f]')
_RESERVED = {"con", "prn", "aux", "nul", "conin$", "conout$",
             *(f"{dev}{n}" for dev in ("com", "lpt") for n in (*"0123456789", "¹", "²", "³"))}


# Shown as nothing, so they only make a name that looks like another: zero-width space, word joiner, byte-order mark,
# soft hyphen, direction marks, embeddings and isolates. Overrides (U+202D, U+202E) are refused instead.
_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad\u200e\u200f\u061c\u202a-\u202c\u2066-\u2069]")
_OVERRIDES = re.compile("[\u202d\u202e]")
_LOOSE_JOINERS = re.compile("(?:^|(?<=\\s))[\u200c\u200d]+|[\u200c\u200d]+(?=\\s|$)")  # joining nothing


def normalize(text: str) -> str:
    """NFC with runs of whitespace made one space and invisible characters dropped: composed and decomposed
    'café' are one name, and so are 'ab' and 'a<zero-width space>b'."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFC", str(text)))
    return _LOOSE_JOINERS.sub("", " ".join(text.split()))


def visible(name: str) -> str:
    """A name with every character that shows nothing written as its code (`a<U+200B>b`), to tell two apart."""
    return "".join(f"<U+{ord(c):04X}>" if unicodedata.category(c) in ("Cf", "Cc") else c for c in name)


def name_key(name: str) -> str:
    """What two names must share to be the same name: case-folded for all of Unicode ('Élan' = 'élan')."""
    return unicodedata.normalize("NFC", normalize(name).casefold())


def validate_name(name: str, what: str = "class name") -> str:
    """A name that is safe as a folder on every OS, or StoreError saying what is wrong."""
    if _OVERRIDES.search(str(name)):
        raise StoreError(f"The {what} '{visible(str(name))}' contains a direction override, which makes text read "
                         "in another order than it is stored; type the name without it.")
    cleaned = normalize(name)
    if not cleaned:
        raise StoreError(f"The {what} is empty.")
    if cleaned in (".", "..") or cleaned.startswith("."):
        raise StoreError(f"The {what} '{cleaned}' cannot start with a dot.")
    if _FORBIDDEN.search(cleaned):
        raise StoreError(f"The {what} '{visible(cleaned)}' contains a character that can't be in a folder name "
                         "(/ \\ < > : \" | ? *).")
    if cleaned.endswith("."):
        raise StoreError(f"The {what} '{cleaned}' cannot end with a dot (Windows drops it).")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise StoreError(f"The {what} is {len(cleaned)} characters long; at most {MAX_NAME_LENGTH} are allowed.")
    size = len(cleaned.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise StoreError(f"The {what} is too long for a folder name: it takes {size} bytes on disk and at most "
                         f"{MAX_NAME_BYTES} fit (emoji and letters outside A–Z take 2 to 4 bytes each).")
    if cleaned.split(".")[0].rstrip().lower() in _RESERVED:
        raise StoreError(f"'{cleaned}' is a reserved file name on Windows; choose another {what}.")
    return cleaned


def file_stem(original_name: str | None) -> str:
    """A short ASCII stem for a stored photo's file name, from the name it came with."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(original_name or "").stem).strip("-")[:40]
    return stem or "image"
