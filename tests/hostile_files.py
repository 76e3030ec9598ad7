"""Files made to hurt an image pipeline: PostScript posing as JPEG, headers that lie about size, broken zips."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from functools import lru_cache

from tests.photos import photo_bytes

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n%%EndComments\n"
       b"newpath 0 0 moveto 100 100 lineto stroke showpage\n%%EOF\n")
HTML = b"<!doctype html><html><head><title>Image</title></head><body><img src=x.jpg></body></html>"


@lru_cache(maxsize=4)
def forged_jpeg(width: int = 7000, height: int = 8000) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(photo_bytes(5, "JPEG", (320, 240), quality=75))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@lru_cache(maxsize=4)
def forged_png(width: int = 7000, height: int = 8400) -> bytes:
    """A valid, all-black RGB PNG of width x height (~59 MP): about 180 KB on disk, 176 MB decoded."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def zip_with(members: dict[str, bytes], *, corrupt: set[str] = frozenset(), encrypted: set[str] = frozenset(),
             deflate64: set[str] = frozenset()) -> bytes:
    """A deflated zip of {name: bytes}; chosen members get corrupt data, the encrypted flag or the deflate64 method."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        infos = {info.filename: info for info in zf.infolist()}
    for name, info in infos.items():
        local = info.header_offset
        data_start = local + 30 + len(info.filename.encode()) + len(info.extra)
        entry = _central_entry(raw, name)
        if name in corrupt:
            for i in range(data_start + 2, data_start + info.compress_size - 2):
                raw[i] ^= 0x5A
        if name in encrypted:
            for offset in (local + 6, entry + 8):
                raw[offset] |= 0x01
        if name in deflate64:
            for offset in (local + 8, entry + 10):
                raw[offset:offset + 2] = struct.pack("<H", 9)
    return bytes(raw)


def _central_entry(raw: bytearray, name: str) -> int:
    """Offset of `name`'s central-directory record."""
    start = raw.index(b"PK\x01\x02")
    while True:
        name_length = struct.unpack("<H", raw[start + 28:start + 30])[0]
        if raw[start + 46:start + 46 + name_length].decode() == name:
            return start
        start = raw.index(b"PK\x01\x02", start + 46)


def bomb_zip_lying(members: int = 4, size: int = 60 * 1024 ** 2, extra: dict[str, bytes] | None = None) -> bytes:
    """Members that really expand to `size` zero bytes while the directory claims 4 KB each, beside `extra` files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            zf.writestr(f"cls/bomb{i}.jpg", bytes(size))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    for i in range(members):
        entry = _central_entry(raw, f"cls/bomb{i}.jpg")
        raw[entry + 24:entry + 28] = struct.pack("<I", 4096)  # the directory lies: 4 KB
    return bytes(raw)
