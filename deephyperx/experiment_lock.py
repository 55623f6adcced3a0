"""Who may write in an experiment folder: one process per seed, and one at a time for the folder's
shared files.

Two commands may run the same experiment (write into the same folder) at once only on different
seeds. Before any work, a command claims every seed it will run (:func:`claim_seeds`): an OS file
lock per seed, ``.seed<N>.lock``, taken without waiting, and beside it ``.seed<N>.owner.json``, a
note of who holds it (process id, host, start time, command line). A seed held by another process
stops the command with one line naming the folder, the seed and the holder. The folder's shared
files (``results.json``, ``results.md``), and the folder itself when it is created or removed,
change only under a short-held lock on the folder, ``.experiment.lock`` (:func:`experiment_lock`).

The lock decides; the owner file is only information. The OS releases a process's locks when it
ends, however it ends: a killed process leaves its lock and owner files behind but not its locks,
so the next claim of that seed succeeds and overwrites the stale note. When a claim ends, under the
folder's lock, it removes its own lock and owner files, and those of any seed nobody holds; a
folder left with nothing else in it is removed too, with the folders above it that the claim
created (such as a new ``--out``), so that a run that failed on bad input leaves no trace.

A lock file is unlinked only by the process holding its lock, under the folder's lock; a process
waiting on an unlinked file notices (filelock checks the file's link count) and tries again.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from filelock import FileLock, Timeout

from deephyperx.atomic import atomic_write_text
from deephyperx.errors import UserError

PathLike = Union[str, Path]

#: The folder's lock file (held while shared files are written or the folder is created or removed).
EXPERIMENT_LOCK = ".experiment.lock"
#: How long to wait for the folder's lock: it is held for moments, so this only bounds a pathology.
LOCK_TIMEOUT_S = 300.0
#: Lock and owner files of seeds, and an owner file's temporary twin left by a process killed mid-write.
SEED_FILE = re.compile(r"\.{1,2}seed(\d+)\.(?:lock|owner\.json)(?:\..+\.tmp)?")


def seed_lock_path(folder: PathLike, seed: int) -> Path:
    """The OS lock file of one seed of an experiment."""
    return Path(folder) / f".seed{seed}.lock"


def owner_path(folder: PathLike, seed: int) -> Path:
    """The note of who holds a seed (read only to say so; the lock decides)."""
    return Path(folder) / f".seed{seed}.owner.json"


# ----- the folder's lock ------------------------------------------------------------------------------

@contextlib.contextmanager
def experiment_lock(folder: PathLike, timeout: float = LOCK_TIMEOUT_S) -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder and its parents if missing) while shared files are
    written or the folder is created or removed. Not reentrant: never nest it for one folder."""
    folder = Path(folder)
    lock = _acquire_folder_lock(folder, timeout)
    ours = _file_id(folder / EXPERIMENT_LOCK)
    try:
        yield folder
    finally:
        try:  # unlinked while held (unless already gone with the folder): the next holder makes a new file
            if _file_id(folder / EXPERIMENT_LOCK) == ours:
                (folder / EXPERIMENT_LOCK).unlink(missing_ok=True)
        finally:
            lock.release()


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    """Device and inode of ``path``, None if it is missing: is the lock file still the one we hold?"""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def _acquire_folder_lock(folder: Path, timeout: float) -> FileLock:
    deadline = time.monotonic() + timeout
    while True:
        lock = FileLock(folder / EXPERIMENT_LOCK)
        try:
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            return lock
        except FileNotFoundError:  # the holder we waited for removed the folder: make it again and retry
            if time.monotonic() >= deadline:
                raise UserError(f"experiment folder {folder} kept disappearing while waiting for its lock; "
                                "check that nothing else removes folders under --out") from None
            time.sleep(0.01)
        except Timeout:
            raise UserError(f"experiment folder {folder} has been locked by another process for more than "
                            f"{timeout:.0f} s ({EXPERIMENT_LOCK}); wait for it, or choose another --out") from None
        except OSError as error:
            raise UserError(f"cannot lock experiment folder {folder} ({error.strerror or error}); give an --out "
                            "folder you can write to") from None


# ----- claims on seeds --------------------------------------------------------------------------------

@dataclass
class SeedClaim:
    """The seeds of ``folder`` this process holds, and the folders its claim created."""

    folder: Path
    seeds: list[int]
    command: str
    locks: dict[int, FileLock] = field(default_factory=dict)
    created: list[Path] = field(default_factory=list)  # folders above ``folder`` it made (a new --out), deepest first


@contextlib.contextmanager
def claim_seeds(folder: PathLike, seeds: Sequence[int], command: Optional[str] = None,
                flags: str = "--seed or --out") -> Iterator[SeedClaim]:
    """Claim ``seeds`` of the experiment in ``folder`` for this process, all of them before any work
    (creating the folder); raise :class:`UserError` naming the holder when another process holds one
    (releasing those taken). ``command`` is recorded for that message (default: this process's
    command line); ``flags`` are what the user can change to run elsewhere. On exit, whatever happened,
    the claim's lock and owner files go, and the folder too if nothing else is left in it."""
    folder = Path(folder)
    claim = SeedClaim(folder, sorted({int(s) for s in seeds}), command or this_command(),
                      created=missing_folders(folder))
    with experiment_lock(folder):
        try:
            for seed in claim.seeds:
                lock = FileLock(seed_lock_path(folder, seed))
                try:
                    lock.acquire(blocking=False)
                except Timeout:
                    raise UserError(held_message(folder, seed, flags)) from None
                claim.locks[seed] = lock
                atomic_write_text(owner_path(folder, seed), json.dumps(owner_record(claim.command), indent=1) + "\n")
        except BaseException:
            _end_claim(claim)
            raise
    try:
        yield claim
    finally:
        with experiment_lock(folder):
            _end_claim(claim)


def _end_claim(claim: SeedClaim) -> None:
    """Under the folder's lock: drop the claim's files and locks, then tidy the folder."""
    try:
        for seed, lock in list(claim.locks.items()):
            try:
                owner_path(claim.folder, seed).unlink(missing_ok=True)
                seed_lock_path(claim.folder, seed).unlink(missing_ok=True)
            finally:
                lock.release()
                del claim.locks[seed]
    finally:
        if remove_unheld_files(claim.folder):
            remove_empty_folders([claim.folder, *claim.created])


def remove_unheld_files(folder: Path) -> bool:
    """Under ``folder``'s lock: remove the lock and owner files of seeds nobody holds (left by a killed
    process, or by this one). True when nothing else is left in ``folder`` but its lock file."""
    if not folder.is_dir():
        return False
    by_seed: dict[int, list[Path]] = {}
    alone = True
    for entry in folder.iterdir():
        match = SEED_FILE.fullmatch(entry.name)
        if match is not None:
            by_seed.setdefault(int(match.group(1)), []).append(entry)
        elif entry.name != EXPERIMENT_LOCK:
            alone = False
    for seed, files in by_seed.items():
        probe = FileLock(seed_lock_path(folder, seed))
        try:
            probe.acquire(blocking=False)
        except Timeout:  # a running process holds it (this one, maybe): its files stay
            alone = False
            continue
        try:
            for path in files:
                path.unlink(missing_ok=True)
            seed_lock_path(folder, seed).unlink(missing_ok=True)
        finally:
            probe.release()
    return alone


def remove_empty_folders(folders: Sequence[Path]) -> None:
    """Under the lock of the experiment folder ``folders[0]``: remove its lock file, then ``folders`` in
    order (deepest first) while they are empty; stop at the first that is not (it holds another
    experiment, or a file of another process)."""
    if folders:
        (folders[0] / EXPERIMENT_LOCK).unlink(missing_ok=True)
    for path in dict.fromkeys(folders):
        try:
            path.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def missing_folders(folder: Path) -> list[Path]:
    """The ancestors of ``folder`` (``folder`` excluded) that do not exist yet, deepest first: the
    folders a claim creates beside the experiment folder, and removes again when it leaves nothing."""
    missing, path = [], folder.parent
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


# ----- who holds a seed ---------------------------------------------------------------------------------

def this_command() -> str:
    """This process's command line, as recorded in owner files (a visdom password hidden)."""
    from deephyperx.command_line import redact_secrets

    return "python " + " ".join(shlex.quote(a) for a in redact_secrets(sys.argv))


def owner_record(command: str) -> dict[str, Any]:
    """What an owner file says: process id, host, start time and command line."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"), "command": command}


def read_owner(folder: PathLike, seed: int) -> Optional[dict[str, Any]]:
    """The owner note of a seed, or None when there is none (yet) or it cannot be read."""
    try:
        record = json.loads(owner_path(folder, seed).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def held_message(folder: PathLike, seed: int, flags: str) -> str:
    """One line: which experiment and seed, who runs it (from its owner file), and what to do."""
    owner = read_owner(folder, seed)
    if owner is None:
        who = "another process (it has not written its owner file yet)"
    else:
        command = " ".join(str(owner.get("command") or "?").split())
        who = f"process {owner.get('pid')} on {owner.get('host')} since {owner.get('started')} ({command})"
    return (f"experiment {folder} seed {seed} is being run by {who}; wait for it to finish, "
            f"or choose another {flags}")
