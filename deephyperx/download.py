"""Downloading one file safely: streamed, checksummed, and never left half-written.

The bytes go to a temporary file beside the target (see :mod:`deephyperx.atomic`) while their
SHA-256 is computed; the file is renamed into place only if the checksum matches. Any HTTP or
network failure, or a checksum mismatch, raises :class:`UserError` and leaves no file behind.
"""
from __future__ import annotations

import hashlib
import http.client
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Optional, Union

from deephyperx.atomic import atomic_write
from deephyperx.errors import UserError
from deephyperx.hashing import file_sha256

PathLike = Union[str, Path]

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0


#: Hex SHA-256 of a file, read in chunks (the engine's one checksum helper).
sha256_of = file_sha256


def is_present(dest: PathLike, sha256: Optional[str]) -> bool:
    """True if ``dest`` exists and, when a checksum is known, matches it."""
    dest = Path(dest)
    if not dest.is_file():
        return False
    return sha256 is None or sha256_of(dest) == sha256.lower()


def download_file(url: str, dest: PathLike, sha256: Optional[str], progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest`` (verified against ``sha256`` when given) and return ``dest``.

    A file already at ``dest`` is kept as is when its checksum matches (or none is known).
    """
    dest = Path(dest)
    if is_present(dest, sha256):
        return dest
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            total = _content_length(response)
            with atomic_write(dest, "wb") as handle:
                got = _stream(response, handle, total, dest.name, progress)
                if sha256 is not None and got != sha256.lower():
                    raise UserError(
                        f"download of {dest.name} from {url}: checksum mismatch (expected sha256 {sha256.lower()}, "
                        f"got {got}); the file was not kept: retry, or check the URL/mirror serves the original file"
                    )
    except urllib.error.HTTPError as exc:
        raise UserError(f"download of {dest.name} from {url} failed: HTTP {exc.code} {exc.reason}; "
                        "check the URL or use another mirror (--mirror or DEEPHYPERX_MIRROR)") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        detail = " ".join(str(reason).split()) or type(exc).__name__
        raise UserError(f"download of {dest.name} from {url} failed ({detail}); check the network connection "
                        "or use a mirror (--mirror or DEEPHYPERX_MIRROR), then retry") from None
    return dest


def _content_length(response) -> Optional[int]:
    """The announced size in bytes, if the server gave one."""
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _stream(response, handle: IO[bytes], total: Optional[int], label: str, progress: bool) -> str:
    """Copy the response body to ``handle`` with a progress bar; return the body's SHA-256."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"Downloading {label}",
              disable=not progress, file=sys.stderr, leave=False) as bar:
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            handle.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()
