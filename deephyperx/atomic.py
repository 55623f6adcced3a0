"""Writing files so that nothing half-written is ever left behind: write a temporary
file in the same folder, then rename it over the target (an atomic step on POSIX)."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

from deephyperx.disk import DiskFullError, free_bytes, raise_if_disk_full

PathLike = Union[str, Path]

#: Room kept free beyond a file's own size when checking before a write (file-system blocks, metadata).
ROOM_MARGIN = 64 * 1024


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it, which is not thread-safe).
_UMASK = _read_umask()


def _publish(tmp: str | Path, path: Path, private: bool = False) -> None:
    """Give the temporary file the permissions a normal ``open`` would (mkstemp makes it 0600),
    unless ``private``, then rename it over ``path``."""
    if not private:
        os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def ensure_room(folder: Path, expected_bytes: Optional[int]) -> None:
    """Raise :class:`~deephyperx.disk.DiskFullError` before writing ``expected_bytes`` into ``folder``
    when the disk holds less (with a small margin for the file system's own blocks)."""
    if not expected_bytes:
        return
    free = free_bytes(folder)
    if free is not None and free < expected_bytes + ROOM_MARGIN:
        raise DiskFullError(folder, expected_bytes + ROOM_MARGIN - free)


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise_if_disk_full(error, path.parent)
        raise


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb", private: bool = False,
                 expected_bytes: Optional[int] = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, on error delete it.
    ``private`` files stay readable by their owner only (secrets). A full disk (checked first when
    ``expected_bytes`` is known) is a one-line :class:`~deephyperx.disk.DiskFullError`."""
    path = Path(path)
    _make_parent(path)
    ensure_room(path.parent, expected_bytes)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp, path, private)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise_if_disk_full(error, path.parent, expected_bytes)
        raise


def atomic_write_text(path: PathLike, text: str, private: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (owner-only if ``private``)."""
    data = text.encode("utf-8")
    with atomic_write(path, "wb", private, expected_bytes=len(data)) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_path(path: PathLike, expected_bytes: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name
    (``np.save``, ``matplotlib.savefig``, ``torch.save``); rename it on success. A full disk is a
    one-line :class:`~deephyperx.disk.DiskFullError` (``expected_bytes``, when known, is checked first
    and named in it)."""
    path = Path(path)
    _make_parent(path)
    ensure_room(path.parent, expected_bytes)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        _publish(tmp, path)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise_if_disk_full(error, path.parent, expected_bytes)
        raise


def replace_directory(staging: PathLike, final: PathLike) -> None:
    """Move a finished ``staging`` folder to ``final``, replacing an older ``final`` if any.

    Where the OS swaps two names in one step (Linux's ``renameat2(RENAME_EXCHANGE)``), ``final``
    always names a complete folder, the old one or the new one; elsewhere the old one is first moved
    aside under a name of its own (``.<final>.old-<pid>-<random>``), so that a crash between the two
    renames loses neither folder. Callers hold the seed's claim (:mod:`deephyperx.experiment_lock`):
    no two processes replace the same folder at once, so the aside folders of earlier crashes can go."""
    staging, final = Path(staging), Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for leftover in final.parent.glob(f".{final.name}.old*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if not final.exists():
        os.replace(staging, final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    if exchange_names(staging, final):
        os.replace(staging, old)  # staging now names the old folder
    else:
        os.replace(final, old)
        os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


#: ``renameat2`` arguments: the current directory as the base of relative paths, and the swap flag.
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


@functools.lru_cache(maxsize=None)
def _renameat2() -> Optional[Callable[..., int]]:
    """glibc's ``renameat2`` (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange_names(first: PathLike, second: PathLike) -> bool:
    """Swap what the two existing paths name, in one atomic step; False (nothing done) where the OS or
    the file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))
