"""Downloads from a real HTTP server on 127.0.0.1 serving shared/data as a mirror."""
from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

import datasets
from deephyperx.download import download_file, sha256_of
from deephyperx.errors import UserError

SHARED = Path(os.environ.get("DEEPHYPERX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not (SHARED / "SalinasA").is_dir(),
                                reason=f"real scenes not found in {SHARED} (set DEEPHYPERX_SHARED_DATA)")


class _Mirror:
    """A ThreadingHTTPServer serving one folder, remembering the paths it was asked for."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "_Mirror":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def mirror() -> Iterator[_Mirror]:
    with _Mirror(SHARED) as server:
        yield server


def test_download_salinas_a_then_load_it(tmp_path: Path, mirror: _Mirror) -> None:
    paths = datasets.download_scene("SalinasA", tmp_path, mirror=mirror.url, progress=False)
    assert [p.name for p in paths] == ["SalinasA_corrected.mat", "SalinasA_gt.mat"]
    for path in paths:
        assert sha256_of(path) == sha256_of(SHARED / "SalinasA" / path.name)
    scene = datasets.load_scene("SalinasA", tmp_path)
    assert scene.class_counts().tolist() == [391, 1343, 616, 1525, 674, 799]


def test_mirror_from_environment_variable(tmp_path: Path, mirror: _Mirror, monkeypatch) -> None:
    monkeypatch.setenv(datasets.MIRROR_ENV, mirror.url + "/")
    datasets.download_scene("SalinasA", tmp_path, progress=False)
    assert mirror.requests == ["/SalinasA/SalinasA_corrected.mat", "/SalinasA/SalinasA_gt.mat"]


def test_present_files_are_not_fetched_again(tmp_path: Path, mirror: _Mirror) -> None:
    datasets.download_scene("SalinasA", tmp_path, mirror=mirror.url, progress=False)
    assert len(mirror.requests) == 2
    datasets.download_scene("SalinasA", tmp_path, mirror=mirror.url, progress=False)
    assert len(mirror.requests) == 2


def test_checksum_mismatch_leaves_no_file(tmp_path: Path, mirror: _Mirror) -> None:
    # shared/data's Indian Pines cube is a re-encoded copy: its bytes differ from GIC's original.
    with pytest.raises(UserError) as info:
        datasets.download_scene("IndianPines", tmp_path, mirror=mirror.url, progress=False)
    message = str(info.value)
    assert "\n" not in message and "checksum mismatch" in message
    expected = datasets.CATALOGUE["IndianPines"].files[0].sha256
    assert expected in message and sha256_of(SHARED / "IndianPines" / "Indian_pines_corrected.mat") in message
    folder = tmp_path / "IndianPines"
    leftovers = [p.name for p in folder.iterdir() if p.name != "Indian_pines_gt.mat"] if folder.exists() else []
    assert leftovers == [], "no cube and no temporary file may remain"


def test_http_404_is_a_user_error_and_leaves_no_file(tmp_path: Path, mirror: _Mirror) -> None:
    dest = tmp_path / "absent.mat"
    with pytest.raises(UserError, match=r"absent\.mat.*HTTP 404"):
        download_file(f"{mirror.url}/no/such/file.mat", dest, None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_user_error(tmp_path: Path) -> None:
    with _Mirror(SHARED) as server:
        url = f"{server.url}/SalinasA/SalinasA_gt.mat"
    # The server is shut down now: the connection is refused.
    with pytest.raises(UserError, match=r"SalinasA_gt\.mat.*failed.*mirror"):
        download_file(url, tmp_path / "gt.mat", None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_file_present_is_replaced(tmp_path: Path, mirror: _Mirror) -> None:
    dest = tmp_path / "SalinasA_gt.mat"
    dest.write_bytes(b"stale")
    sha = sha256_of(SHARED / "SalinasA" / "SalinasA_gt.mat")
    download_file(f"{mirror.url}/SalinasA/SalinasA_gt.mat", dest, sha, progress=False)
    assert sha256_of(dest) == sha and mirror.requests == ["/SalinasA/SalinasA_gt.mat"]
