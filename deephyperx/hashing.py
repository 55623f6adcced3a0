"""Checksums that identify inputs: SHA-256 of a file's bytes, and of arrays' values.

An experiment's identity (its folder name) includes the checksums of inputs that a name alone does
not pin down: a ``--synthetic`` file, a catalogue file, a custom scene's cube and labels, the label
rasters of ``--train_set/--test_set``. Downloads are verified with :func:`file_sha256` too.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Union

import numpy as np

PathLike = Union[str, Path]

#: Bytes read (or hashed) at a time, so that a big file or memory-mapped cube is never loaded whole.
CHUNK_BYTES = 1 << 20


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def update_with_array(digest: Any, array: np.ndarray, chunk_bytes: int = 64 * CHUNK_BYTES) -> None:
    """Feed ``digest`` an array's dtype, shape and values (C order), a band of rows at a time: the
    same values give the same bytes whatever the file format or memory layout they came from."""
    digest.update(f"{array.dtype.str}{tuple(array.shape)}".encode())
    if array.ndim == 0 or array.size == 0:
        digest.update(np.ascontiguousarray(array).tobytes())
        return
    row_bytes = max(1, array[0].size * array.dtype.itemsize)
    step = max(1, chunk_bytes // row_bytes)
    for start in range(0, array.shape[0], step):
        digest.update(np.ascontiguousarray(array[start:start + step]).tobytes())


def content_sha256(parts: Iterable[Union[np.ndarray, str]]) -> str:
    """Hex SHA-256 of a sequence of arrays and strings (each tagged, so that parts never run into
    each other)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            digest.update(b"s" + str(len(part)).encode() + b":" + part.encode())
        else:
            digest.update(b"a")
            update_with_array(digest, part)
    return digest.hexdigest()
