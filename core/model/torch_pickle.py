"""Read legacy-format (pre-1.6, non-zip) PyTorch checkpoints into numpy arrays, without torch.

A `.pth` file is a pickle, and unpickling can run arbitrary code, so the unpickler here resolves
only the few globals a plain state dict needs and refuses everything else.

Legacy layout, all in one stream:
    pickle(magic number), pickle(protocol version), pickle(sys info),
    pickle(the object; tensors point at storages through persistent ids),
    pickle(list of storage keys), then per key: int64 element count + raw little-endian data.
"""

from __future__ import annotations

import collections
import os
import pickle
from dataclasses import dataclass
from os import PathLike
from typing import BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list: refuse rather than import it."""


@dataclass(frozen=True)
class StorageType:
    dtype: np.dtype


@dataclass(frozen=True)
class StorageRef:
    """A tensor's storage, known by key until the raw data after the main pickle is read."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class TensorRef:
    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stand-in for torch._utils._rebuild_tensor_v2: remember where the tensor's data lives."""
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError("tensor without a storage in checkpoint")
    return TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only OrderedDict, _rebuild_tensor_v2 and the storage types."""

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(STORAGE_DTYPES[name])
        raise ForbiddenGlobal(f"forbidden global in checkpoint: {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id in checkpoint: {pid!r}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, StorageType) or view is not None:
            raise pickle.UnpicklingError("unsupported storage in checkpoint")
        ref = StorageRef(str(key), storage_type.dtype, int(numel))
        self.storages[ref.key] = ref
        return ref


def load_legacy_checkpoint(path: str | PathLike) -> dict[str, np.ndarray]:
    """Tensors of a legacy PyTorch state-dict file, by name; ValueError if it is not one."""
    with open(path, "rb") as f:
        magic, protocol, sys_info = (unpickle(RestrictedUnpickler(f), path) for _ in range(3))
        if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL or not isinstance(sys_info, dict):
            raise ValueError(f"{path} is not a legacy PyTorch checkpoint")
        if not sys_info.get("little_endian", False):
            raise ValueError(f"{path} was saved on a big-endian machine; not supported")
        unpickler = RestrictedUnpickler(f)
        state = unpickle(unpickler, path)
        keys = unpickle(RestrictedUnpickler(f), path)
        if not isinstance(keys, list) or set(map(str, keys)) != set(unpickler.storages):
            raise ValueError(f"{path}: storage list does not match the tensors")
        data = {str(key): read_storage(f, unpickler.storages[str(key)], path) for key in keys}
    if not isinstance(state, dict) or not all(isinstance(v, TensorRef) for v in state.values()):
        raise ValueError(f"{path} holds no plain state dict of tensors")
    return {str(name): materialize(ref, data[ref.storage.key], path) for name, ref in state.items()}


def unpickle(unpickler: RestrictedUnpickler, path):
    """The next pickle in the stream; ValueError for anything unreadable, except a refused global."""
    try:
        return unpickler.load()
    except ForbiddenGlobal:
        raise
    except Exception as exc:  # any garbage: truncated stream, bad opcode, not a pickle at all
        raise ValueError(f"{path} is not a legacy PyTorch checkpoint ({exc})") from exc


def read_storage(f: BinaryIO, ref: StorageRef, path) -> np.ndarray:
    """One storage's elements: an int64 count, then the raw data."""
    count = int(np.frombuffer(read_exactly(f, 8, path), dtype="<i8")[0])
    if count != ref.numel:
        raise ValueError(f"{path}: storage {ref.key} has {count} elements, expected {ref.numel}")
    return np.frombuffer(read_exactly(f, count * ref.dtype.itemsize, path), dtype=ref.dtype)


def read_exactly(f: BinaryIO, n: int, path) -> bytes:
    # check the size first: a forged element count must not make us allocate gigabytes
    if n > os.fstat(f.fileno()).st_size - f.tell():
        raise ValueError(f"{path} is truncated")
    return f.read(n)


def materialize(ref: TensorRef, storage: np.ndarray, path) -> np.ndarray:
    """The tensor as a fresh contiguous array, honouring storage offset and strides."""
    if len(ref.shape) != len(ref.stride) or ref.offset < 0 or min(ref.shape + ref.stride, default=0) < 0:
        raise ValueError(f"{path}: malformed tensor layout")
    if 0 in ref.shape:
        return np.zeros(ref.shape, dtype=storage.dtype)
    # as_strided does no bounds checking: make sure the last element it touches is inside the storage
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if last >= storage.size:
        raise ValueError(f"{path}: tensor runs past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :],
        shape=ref.shape,
        strides=tuple(s * storage.itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, order="C")  # a writeable C-contiguous copy, whatever the layout on disk
