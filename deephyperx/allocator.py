"""The C library's memory allocator, asked to give freed memory back to the system (glibc only).

A training loop frees and allocates the same few large tensors every step; glibc keeps the freed
space of its heap for the next step, which is fast but leaves the process holding its largest
step's working set. Before mapping a scene (tile-sized arrays, allocated once per tile), the run
hands that space back (:func:`trim_heap`) and has large blocks memory-mapped so that they return to
the system when freed (:func:`return_freed_memory`). Both are no-ops where the C library is not glibc.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from functools import lru_cache
from typing import Any, Optional

#: glibc's mallopt parameter of the size above which blocks are memory-mapped.
M_MMAP_THRESHOLD = -3


@lru_cache(maxsize=1)
def _libc() -> Optional[Any]:
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None


def return_freed_memory() -> None:
    """Have glibc's malloc give blocks of 1 MiB and more straight back to the system when freed.

    By default glibc raises that threshold to the largest block freed so far (up to 32 MiB): after
    the first tile, tile-sized arrays come from the heap, whose freed space it keeps and fragments,
    and a process mapping tile after tile holds about one more tile than it uses."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def trim_heap() -> None:
    """Give the free space of the heap back to the system (``malloc_trim(0)``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
