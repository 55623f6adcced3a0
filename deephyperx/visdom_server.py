"""Start a visdom server that works anywhere: bound to 127.0.0.1, envs stored in a folder of the
user's choice, optional login, and its web assets supplied without visdom's own downloader.

visdom fetches React, Plotly, Bootstrap, MathJax and friends from CDNs the first time it starts;
offline (or behind a firewall) it crashes a few seconds later. :func:`ensure_assets` installs the
same files from the npm registry instead (pinned versions, checked against their npm integrity
hashes), or from a folder of npm tarballs carried to an air-gapped machine, under the names that
``visdom/server/build.py`` expects, and writes ``static/version.built`` so that the server makes
no download at all when it starts.

``python main.py visdom [--port 8097] [--env_path DIR] [--username U --password P] [--assets DIR]``
runs :func:`command`: the server in the foreground until Ctrl-C.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from deephyperx.atomic import atomic_write, atomic_write_text
from deephyperx.disk import check_writable_folder
from deephyperx.errors import UserError

DEFAULT_PORT = 8097
DEFAULT_ENV_PATH = "outputs/visdom"
# visdom's page links ../user/style.css for its version hash; absent, every page load logs an ERROR
EMPTY_FILES = ("../user/style.css",)
MATHJAX_FILES = ("config/Safe.js", "config/TeX-AMS-MML_HTMLorMML.js", "extensions/Safe.js",
                 "jax/output/SVG/fonts/TeX/fontdata.js", "jax/output/SVG/jax.js",
                 "jax/output/SVG/fonts/TeX/Size1/Regular/Main.js", "jax/output/SVG/config.js", "MathJax.js")


@dataclass(frozen=True)
class NpmPackage:
    """A pinned npm package, its tarball's npm integrity string, and the files visdom needs from it
    as ``(path in the tarball's package/ folder, path under visdom's static/ folder)``."""

    name: str
    version: str
    integrity: str
    files: tuple[tuple[str, str], ...]

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:
        """The file name ``npm pack`` gives the package."""
        return f"{self.name}-{self.version}.tgz"


_GLYPHS = "glyphicons-halflings-regular"
PACKAGES: tuple[NpmPackage, ...] = (
    NpmPackage("jquery", "3.1.1",
               "sha512-zuiWRmx65Kd1oFGdWLvAjbsumdOBFvs3r1vuqCyKFF79R7exBHNbiNEJ8LR+xkzgfxqBznMD/4Cv6PHXS6mvEw==",
               (("dist/jquery.min.js", "js/jquery.min.js"),)),
    NpmPackage("bootstrap", "3.3.7",
               "sha512-qcFaisBrcBhTFkz1IUnGDYnX6ZWfFzH8zOixUDtHW9Ip+r+7MfMFav2rzy7cIHc7rgIg7xjhWBoo1mS/U26j4g==",
               (("dist/js/bootstrap.min.js", "js/bootstrap.min.js"),
                ("dist/css/bootstrap.min.css", "css/bootstrap.min.css"),
                *((f"dist/fonts/{_GLYPHS}.{ext}", f"fonts/{_GLYPHS}.{ext}") for ext in ("eot", "woff2", "woff", "ttf")),
                (f"dist/fonts/{_GLYPHS}.svg", f"fonts/{_GLYPHS}.svg#glyphicons_halflingsregular"))),
    NpmPackage("react", "16.2.0",
               "sha512-ZmIomM7EE1DvPEnSFAHZn9Vs9zJl5A9H7el0EGTE6ZbW9FKe/14IYAlPbC8iH25YarEQxZL+E8VW7Mi7kfQrDQ==",
               (("umd/react.production.min.js", "js/react-react.min.js"),)),
    NpmPackage("react-dom", "16.2.0",
               "sha512-zpGAdwHVn9K0091d+hr+R0qrjoJ84cIBFL2uU60KvWBPfZ7LPSrfqviTxGHWN0sjPZb2hxWzMexwrvJdKePvjg==",
               (("umd/react-dom.production.min.js", "js/react-dom.min.js"),)),
    NpmPackage("react-modal", "3.1.10",
               "sha512-7b77AGWCkdg0YOf/qcYIGCpuwbxRwOA8P3UrUovk4grUNv+idOmHovJAx/Dcd3fuwHtgixxVjpcjVG60985MSA==",
               (("dist/react-modal.min.js", "js/react-modal.min.js"),)),
    NpmPackage("plotly.js-dist-min", "2.11.1",
               "sha512-F9WWNht0D3yBLZGHbLoJNfvplXvy+GUPSsA/lCbMuYd/UwzSu6Vmyprxlps9Einw1LDS1hYBrJeioK0lE3ieXA==",
               (("plotly.min.js", "js/plotly-plotly.min.js"),)),
    NpmPackage("sjcl", "1.0.7",
               "sha512-xQbiwKfiAj6vyk44ANJ5RRymALRdRZOuRoKNYkWUU404p/RFXmMaay1Z5vRn30GJjkD+psox4Jd38jZojSuNYA==",
               (("sjcl.js", "js/sjcl.js"),)),
    NpmPackage("layout-bin-packer", "1.4.0",
               "sha512-dQOZnajbOBGIcS9YlzKrkRtMCGa2oEpyf1zGRn93suphSvPclJe54Sbgtb053GJ21DUk84IBzaeQvjn+Gb10fA==",
               (("dist/layout-bin-packer.js", "js/layout_bin_packer.js"),
                ("dist/layout-bin-packer.js.map", "js/layout-bin-packer.js.map"))),
    NpmPackage("d3", "3.5.17",
               "sha512-yFk/2idb8OHPKkbAL8QaOaqENNoMhIaSHZerk3oQsECwkObkCpJyjYwCe+OHiq6UEdhe1m8ZGARRRO3ljFjlKg==",
               (("d3.min.js", "js/d3.v3.min.js"),)),
    NpmPackage("d3-selection-multi", "1.0.1",
               "sha512-mEnRkJ6A+Otd1LuRPV3az+s/RLDmIEhuz/MnT21O2nPcWNH7wZotdIlRjMA4Wpr+n7AESQ5fD8v1J3nL2Mnw9g==",
               (("build/d3-selection-multi.js", "js/d3-selection-multi.v1.js"),)),
    NpmPackage("save-svg-as-png", "1.4.17",
               "sha512-7QDaqJsVhdFPwviCxkgHiGm9omeaMBe1VKbHySWU6oFB2LtnGCcYS13eVoslUgq6VZC6Tjq/HddBd1K6p2PGpA==",
               (("lib/saveSvgAsPng.js", "js/saveSvgAsPng.js"),)),
    NpmPackage("react-resizable", "1.4.6",
               "sha512-4zLORO51u0/mlDsrVCAA4p266d+3mb2ZMNdiWOotAh/PdnfrRzZhgePmKE08PSQatXVIfMjmyD+Sapay8tmxdQ==",
               (("css/styles.css", "css/react-resizable-styles.css"),)),
    NpmPackage("react-grid-layout", "0.16.3",
               "sha512-ytP92EqUjqcFhGzvdeKrK610dQ04GdFwRCWtD6PoeL5wR3liETcFISO7k8RBqnosV86JtXf/DwIfrL0COLs0gg==",
               (("css/styles.css", "css/react-grid-layout-styles.css"),)),
    NpmPackage("classnames", "2.2.5",
               "sha512-DTt3GhOUDKhh4ONwIJW4lmhyotQmV2LjNlGK/J2hkwUcqcbKkCLAdJPtxQnxnlc7SR3f1CEXCyMmc7WLUsWbNA==",
               (("index.js", "fonts/classnames"),)),
    NpmPackage("mathjax", "2.7.5",
               "sha512-OzsJNitEHAJB3y4IIlPCAvS0yoXwYjlo2Y4kmm9KQzyIBZt2d8yKRalby3uTRNN4fZQiGL2iMXjpdP1u2Rq2DQ==",
               tuple((name, f"js/mathjax/2.7.5/{name}") for name in MATHJAX_FILES)),
)


# ----- web assets ----------------------------------------------------------------------------------

def visdom_static_dir() -> Path:
    """The installed visdom package's ``static/`` folder (where the server serves its page from)."""
    spec = importlib.util.find_spec("visdom")
    if spec is None or spec.origin is None:
        raise UserError("visdom is not installed; run scripts/setup.sh (it installs visdom 0.2.4 the way that works)")
    return Path(spec.origin).parent / "static"


def visdom_version() -> str:
    """The installed visdom's version string, as its server compares it with ``static/version.built``."""
    import visdom

    return str(visdom.__version__)


def missing_assets(static: Path) -> list[str]:
    """The asset files (relative to ``static``) that are absent, plus ``version.built`` when it
    does not name the installed visdom (the server would then download everything again)."""
    targets = [target for package in PACKAGES for _, target in package.files] + list(EMPTY_FILES)
    missing = [target for target in targets if not (static / target).is_file()]
    built = static / "version.built"
    if not built.is_file() or built.read_text().strip() != visdom_version():
        missing.append("version.built")
    return missing


def _integrity(path: Path) -> str:
    """npm's integrity string of a file: ``sha512-`` and the base64 digest."""
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def _npm_pack(packages: Sequence[NpmPackage], folder: Path) -> None:
    """Download the packages' tarballs into ``folder`` with ``npm pack`` (npm's own registry
    settings, mirrors and cache apply)."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError("visdom's web assets are missing and npm is not installed to fetch them; install Node.js "
                        "(npm), or pass --assets DIR with the npm tarballs (see docs/MONITORING.md)")
    result = subprocess.run([npm, "pack", "--silent", "--pack-destination", str(folder), *(p.spec for p in packages)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"npm pack of visdom's web assets failed ({last}); check npm's registry access, "
                        "or pass --assets DIR with the npm tarballs (see docs/MONITORING.md)")


def _check_tarball(package: NpmPackage, path: Path) -> Path:
    """``path`` if it is the published tarball of ``package`` (same npm integrity hash), else raise."""
    if not path.is_file():
        raise UserError(f"npm pack did not produce {path.name}; fetch it with `npm pack {package.spec}`")
    if _integrity(path) != package.integrity:
        raise UserError(f"{path} is not the published {package.spec} (its hash differs); delete it and fetch it "
                        f"again with `npm pack {package.spec}`")
    return path


def _gather_tarballs(folder: Path, tarballs: Optional[Path]) -> dict[str, Path]:
    """Each package's checked tarball: from ``tarballs`` when it holds it, else packed by npm into ``folder``."""
    given = [p for p in PACKAGES if tarballs is not None and (tarballs / p.tarball).is_file()]
    found = {p.name: _check_tarball(p, tarballs / p.tarball) for p in given}
    wanted = [p for p in PACKAGES if p.name not in found]
    if wanted:
        _npm_pack(wanted, folder)
        found.update({p.name: _check_tarball(p, folder / p.tarball) for p in wanted})
    return found


def _install_package(package: NpmPackage, tarball: Path, static: Path) -> None:
    """Copy the files visdom needs out of one npm tarball into ``static``, each written atomically."""
    with tarfile.open(tarball, "r:gz") as archive:
        for inside, target in package.files:
            member = archive.extractfile(f"package/{inside}")
            if member is None:
                raise UserError(f"{tarball.name} has no file package/{inside}; "
                                f"fetch it again with `npm pack {package.spec}`")
            with atomic_write(static / target) as handle:
                shutil.copyfileobj(member, handle)


def ensure_assets(tarballs: Optional[str | Path] = None, static: Optional[str | Path] = None) -> Path:
    """Make sure visdom's web assets are installed in its ``static/`` folder (or ``static``);
    return that folder.

    Missing files come from ``npm pack`` of the pinned packages, or from the folder ``tarballs``
    holding their ``.tgz`` files (for machines without any registry). Each tarball is checked
    against its npm integrity hash before anything is copied. Nothing is done when all is there.
    """
    static = Path(static) if static is not None else visdom_static_dir()
    missing = missing_assets(static)
    if not missing:
        return static
    static.mkdir(parents=True, exist_ok=True)
    if not os.access(static, os.W_OK):
        raise UserError(f"visdom's web assets are missing and {static} is not writable; "
                        "run `python main.py visdom` once as the user who installed visdom")
    if any(name not in EMPTY_FILES for name in missing):
        _install_packages(static, Path(tarballs) if tarballs is not None else None)
    for name in EMPTY_FILES:
        if not (static / name).is_file():
            atomic_write_text(static / name, "")
    atomic_write_text(static / "version.built", visdom_version())
    return static


def _install_packages(static: Path, tarballs: Optional[Path]) -> None:
    """Install every pinned package's files into ``static`` (tarballs from the folder or npm)."""
    if tarballs is not None and not tarballs.is_dir():
        raise UserError(f"--assets {tarballs}: no such folder; give the folder holding the npm tarballs")
    with tempfile.TemporaryDirectory(prefix="visdom-assets-") as tmp:
        found = _gather_tarballs(Path(tmp), tarballs)
        for package in PACKAGES:
            _install_package(package, found[package.name], static)


# ----- the server ----------------------------------------------------------------------------------

def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:``port`` (tested by binding, as tornado would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check_port(port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise UserError(f"--port {port!r} is not a port number; give a whole number in 1..65535")
    if port_in_use(port):
        raise UserError(f"port {port} is in use on 127.0.0.1 (another visdom server?); stop it or pick another --port")


def _server_environment(username: Optional[str], password: Optional[str]) -> dict[str, str]:
    """The server's environment: with login, visdom reads the credentials from variables (so they
    never appear in the process list) and keeps its cookie secret in ``~/.visdom/``."""
    env = dict(os.environ)
    if username is None and password is None:
        return env
    if not username or not password:
        raise UserError("visdom login needs both --username and --password (or $VISDOM_PASSWORD)")
    cookie = Path.home() / ".visdom" / "COOKIE_SECRET"
    if not cookie.is_file():  # written here, readable by the user only (visdom would make it world-readable)
        atomic_write_text(cookie, env.get("VISDOM_COOKIE") or secrets.token_hex(32), private=True)
    env.update(VISDOM_USE_ENV_CREDENTIALS="1", VISDOM_USERNAME=username, VISDOM_PASSWORD=password)
    return env


def server_argv(port: int, env_path: str | Path, login: bool = False) -> list[str]:
    """The command line of a loopback-only visdom server on ``port`` storing envs in ``env_path``."""
    argv = [sys.executable, "-m", "visdom.server", "-port", str(port), "-env_path", str(Path(env_path).resolve()),
            "-bind_local", "--hostname", "127.0.0.1", "-logging_level", "WARNING"]
    return argv + (["-enable_login"] if login else [])


def _answers(port: int) -> bool:
    """Whether the server on 127.0.0.1:``port`` answers an HTTP request (any status below 500)."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
    try:
        with direct.open(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except OSError:
        return False


def wait_until_answering(process: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    """Block until the server answers HTTP; stop it and raise if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"the visdom server on port {port} exited at start with status {process.returncode}; "
                            "run `python -m visdom.server -port PORT` to see why")
        if _answers(port):
            return
        time.sleep(0.1)
    stop_server(process)
    raise UserError(f"the visdom server on port {port} did not answer within {timeout:.0f} s; "
                    "run `python -m visdom.server -port PORT` to see why")


def start_server(port: int = DEFAULT_PORT, env_path: str | Path = DEFAULT_ENV_PATH, username: Optional[str] = None,
                 password: Optional[str] = None, wait: bool = True, log: Optional[str | Path] = None,
                 assets: Optional[str | Path] = None) -> subprocess.Popen:
    """Start a visdom server on 127.0.0.1:``port`` with envs stored in ``env_path`` (created);
    login when ``username``/``password`` are given. Web assets are installed first when missing.
    The server's output goes to the file ``log`` (appended) or, without one, to this terminal.
    With ``wait``, return only once the server answers HTTP."""
    _check_port(port)
    check_writable_folder(env_path, "--env_path")
    environment = _server_environment(username, password)
    ensure_assets(assets)
    Path(env_path).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(open(log, "ab")) if log is not None else None
        process = subprocess.Popen(server_argv(port, env_path, login=username is not None), env=environment,
                                   stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT if output else None, start_new_session=True)
    if wait:
        wait_until_answering(process, port)
    return process


def stop_server(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`start_server` (terminate, then kill if it lingers)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ----- python main.py visdom -----------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """Bad flags raise :class:`UserError` (one line, exit status 2 from the command line)."""

    def error(self, message: str):
        raise UserError(f"main.py visdom: {message}; see python main.py visdom --help")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="main.py visdom", description="Start a visdom server on 127.0.0.1 for watching runs live "
        "(training runs plot into it with --visdom). Runs until Ctrl-C.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (default %(default)s)")
    parser.add_argument("--env_path", default=DEFAULT_ENV_PATH,
                        help="folder where the envs (one per run) are saved and reloaded from (default %(default)s)")
    parser.add_argument("--username", help="enable login with this user name (training runs then need "
                                           "--visdom_username/--visdom_password)")
    parser.add_argument("--password", help="the login password (or set $VISDOM_PASSWORD, which keeps it out of "
                                           "the shell history)")
    parser.add_argument("--assets", help="folder of npm tarballs (`npm pack` of the packages in docs/MONITORING.md) "
                                         "to install visdom's web assets from on a machine without any registry")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def command(argv: list[str], plugins: object = None) -> int:
    """``python main.py visdom ...``: run a loopback visdom server in the foreground until Ctrl-C.
    Returns the exit status (0 after Ctrl-C). The server needs no plugins."""
    args = _parser().parse_args(argv)
    password = args.password or (os.environ.get("VISDOM_PASSWORD") if args.username else None)
    process = start_server(args.port, args.env_path, args.username, password, assets=args.assets, wait=False)
    for stop in (signal.SIGTERM, signal.SIGHUP):  # the server runs in its own session: stop it with us
        signal.signal(stop, _interrupt)
    try:
        wait_until_answering(process, args.port)
        login = f", login as {args.username}" if args.username else ""
        print(f"visdom server on http://127.0.0.1:{args.port}{login}; envs saved in {Path(args.env_path).resolve()}; "
              "Ctrl-C stops it", file=sys.stderr, flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(process)
