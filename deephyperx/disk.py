"""The output folder's disk: can it be written, and is there room.

Before any work, :func:`check_writable_folder` refuses an output folder that names a file, lies
under a file, or sits on a read-only or unwritable file system, without creating anything. During
a run, a write that finds the disk full raises :class:`DiskFullError`: one line naming the folder,
the space the write needed and the space free. The atomic writers (:mod:`deephyperx.atomic`)
leave no partial file behind, and a run's last checkpoint stays in place, so the same command
resumes once space is freed.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Optional, Union

from deephyperx.errors import UserError
from deephyperx.sizes import format_size

PathLike = Union[str, Path]

#: errno values that mean "no room left" (a full disk, a quota, a file-size limit).
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: Free space under which a write failure that hides its errno is taken for a full disk.
LOW_SPACE = 1 << 20


class DiskFullError(UserError):
    """A write found no room: the message names the folder, the space needed and the space free."""

    def __init__(self, folder: PathLike, needed: Optional[int] = None):
        self.folder, self.needed = Path(folder), needed
        free = free_bytes(folder)
        need = f"writing there needs {format_size(needed)} more, " if needed else ""
        have = f"{format_size(free)} is free" if free is not None else "the disk is full"
        super().__init__(f"no space left in {self.folder}: {need}{have}; free some space (or give another --out) "
                         "and run the same command again to resume")


def existing_ancestor(path: PathLike) -> Path:
    """``path`` itself if it exists, else its nearest existing parent folder."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def free_bytes(path: PathLike) -> Optional[int]:
    """Bytes free to this user on the file system holding ``path`` (None if it cannot be told)."""
    try:
        return shutil.disk_usage(existing_ancestor(path)).free
    except OSError:
        return None


def check_writable_folder(path: PathLike, flag: str = "--out") -> Path:
    """Refuse, without creating anything, an output folder that cannot be written: one naming a
    file, lying under a file, or on a read-only or unwritable file system."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; give a folder (it is created if missing)")
    base = existing_ancestor(path)
    if not base.is_dir():
        raise UserError(f"{flag} {path} cannot be created: {base} is a file; give a folder path")
    read_only = False
    try:
        read_only = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
    except OSError:
        pass
    if read_only or not os.access(base, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if read_only else "is not writable by you"
        raise UserError(f"{flag} {path} cannot be written: {base} {why}; give a folder you can write to")
    return path


def raise_if_disk_full(error: BaseException, folder: PathLike, needed: Optional[int] = None) -> None:
    """Turn an ``OSError`` that means "no room" into :class:`DiskFullError`; anything else returns."""
    if isinstance(error, OSError) and error.errno in NO_SPACE:
        raise DiskFullError(folder, needed) from None
    if isinstance(error, RuntimeError) and "write failed" in str(error):  # torch's zip writer hides the errno
        free = free_bytes(folder)
        if free is not None and free < LOW_SPACE:
            raise DiskFullError(folder, needed) from None
