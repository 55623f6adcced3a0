"""Live monitoring in visdom: one env per run (``<scene>_<model>_seed<N>``) holding the training
loss per iteration (raw and smoothed), validation OA/AA/kappa, losses and learning rate per epoch,
the confusion matrix, ground truth beside the predicted map with the scene's palette and a legend,
the RGB composite, per-class mean ± std spectra and a log of messages. The env is saved to the
server's ``-env_path`` at the end of the run, so it survives a server restart.

A dead server never stops training. Every call is guarded; when the server is absent or dies the
monitor prints one warning, keeps every plotted value in memory, checks again (a TCP connect) at
most every ``retry_seconds``, and when the server answers again redraws every window in full,
then goes on appending. Training never waits on the server for more than one request timeout.
"""
from __future__ import annotations

import functools
import html
import json
import logging
import math
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlparse

import numpy as np

from deephyperx.monitor import Monitor
from deephyperx.reports import colour_map_image
from deephyperx.scene import default_palette

MIN_IMAGE_SIDE = 280  # small scenes are enlarged by an integer factor (nearest neighbour) to at least this
MAX_IMAGE_SIDE = 1200  # huge scenes are shown subsampled, so that a window stays a few hundred kB
MAX_LOG_LINES = 200
MAP_GAP = 12
CAPTION_HEIGHT = 22

Draw = Callable[[Any], Any]


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _host(server: str) -> str:
    """The host name in a server address such as ``http://127.0.0.1`` or ``localhost``."""
    parsed = urlparse(server if "://" in server else f"http://{server}")
    return parsed.hostname or "127.0.0.1"


def visdom_installed() -> bool:
    """Whether the visdom package can be imported (this module itself imports it only when plotting)."""
    import importlib.util

    return importlib.util.find_spec("visdom") is not None


def visdom_reachable(server: str = "http://127.0.0.1", port: int = 8097, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at the server's address (cheap: no HTTP)."""
    try:
        with socket.create_connection((_host(server), port), timeout=timeout):
            return True
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def _client_class() -> type:
    """visdom's client with a timeout on every request and no stdout chatter when the server is gone.

    visdom posts without a timeout (a hung server would hang training), and its ``win_exists``
    prints a line on connection errors instead of letting the caller decide."""
    from visdom import Visdom

    logging.getLogger("visdom").setLevel(logging.ERROR)  # its "no incoming socket" notice is noise here

    class TimedVisdom(Visdom):
        request_timeout = 10.0

        def _handle_post(self, url: str, data: Any = None) -> str:
            return self.session.post(url, data=data or {}, timeout=self.request_timeout).text

        def win_exists(self, win: str, env: Optional[str] = None) -> Optional[bool]:
            return {"true": True, "false": False}.get(self._win_exists_wrap(win, env))

    return TimedVisdom


def display_size(image: np.ndarray, min_side: int = MIN_IMAGE_SIDE, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """An (H, W[, C]) image resized by an integer factor for the screen: a 145 x 145 scene enlarged
    (nearest neighbour) so it is not a thumbnail, a huge one subsampled; others unchanged."""
    longest = max(image.shape[0], image.shape[1], 1)
    if longest > max_side:
        step = math.ceil(longest / max_side)
        return image[::step, ::step]
    factor = max(1, math.ceil(min_side / longest))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def _caption(width: int, text: str) -> np.ndarray:
    """A white strip of ``CAPTION_HEIGHT`` rows with ``text`` written on it in black."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (width, CAPTION_HEIGHT), "white")
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    ImageDraw.Draw(strip).text((2, 2), text, fill="black", font=font)
    return np.asarray(strip)


def compose_maps(maps: dict[str, np.ndarray]) -> np.ndarray:
    """Coloured maps side by side, each with its name above it, on white: (H, W, 3) uint8."""
    panels = [np.concatenate([_caption(rgb.shape[1], name.replace("_", " ")), rgb]) for name, rgb in maps.items()]
    height = max(p.shape[0] for p in panels)
    gap = np.full((height, MAP_GAP, 3), 255, np.uint8)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate([x for p in padded for x in (p, gap)][:-1], axis=1)


def legend_html(palette: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    """The classes' colours as an HTML list of swatches (unlabelled pixels are black)."""
    rows = [(tuple(palette[k])[:3], name) for k, name in enumerate(class_names)] + [((0, 0, 0), "unlabelled")]
    swatch = "display:inline-block;width:14px;height:14px;margin-right:6px;vertical-align:middle;border:1px solid #888"
    items = "".join(f'<div><span style="{swatch};background:rgb{colour}"></span>{html.escape(name)}</div>'
                    for colour, name in rows)
    return f'<div style="font-size:12px;line-height:17px">{items}</div>'


def _json_values(values: np.ndarray) -> list[Optional[float]]:
    """Floats for JSON, with None (a gap in the plot) for NaN or infinity, which JSON cannot carry."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, float).ravel()]


def spectra_traces(x: np.ndarray, mean: np.ndarray, std: np.ndarray, class_names: Sequence[str],
                   palette: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """Plotly traces: per class, its mean spectrum as a line inside a shaded mean ± std band."""
    traces: list[dict[str, Any]] = []
    for k, name in enumerate(class_names):
        r, g, b = tuple(palette[k])[:3]
        common = {"type": "scatter", "mode": "lines", "x": _json_values(x), "legendgroup": name, "hoverinfo": "skip"}
        traces.append({**common, "y": _json_values(mean[k] + std[k]), "line": {"width": 0}, "showlegend": False})
        traces.append({**common, "y": _json_values(mean[k] - std[k]), "line": {"width": 0}, "fill": "tonexty",
                       "fillcolor": f"rgba({r},{g},{b},0.2)", "showlegend": False})
        traces.append({**common, "y": _json_values(mean[k]), "name": name, "hoverinfo": "x+y+name",
                       "line": {"color": f"rgb({r},{g},{b})", "width": 1.5}})
    return traces


@dataclass
class Series:
    """The points of one line window (one or more traces sharing x), and how many have reached it."""

    win: str
    title: str
    legend: list[str]
    xlabel: str
    ylabel: str
    ytype: str = "linear"
    x: list[float] = field(default_factory=list)
    y: list[list[float]] = field(default_factory=list)
    sent: int = 0

    def add(self, x: float, values: Sequence[float]) -> None:
        self.x.append(float(x))
        self.y.append([float(v) for v in values])

    def _arrays(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(self.x[start:], float), np.asarray(self.y[start:], float)
        if len(self.legend) == 1:
            return x, y[:, 0]
        return np.repeat(x[:, None], len(self.legend), axis=1), y

    def draw(self, client: Any, env: str) -> None:
        """Send the unsent points: the whole window the first time, then appended points only."""
        if self.sent >= len(self.x):
            return
        x, y = self._arrays(self.sent)
        if self.sent == 0:
            client.line(Y=y, X=x, win=self.win, env=env,
                        opts={"title": self.title, "legend": self.legend, "xlabel": self.xlabel, "ylabel": self.ylabel,
                              "ytype": self.ytype, "width": 450, "height": 320, "showlegend": True})
        else:
            client.line(Y=y, X=x, win=self.win, env=env, update="append")
        self.sent = len(self.x)


class VisdomMonitor(Monitor):
    """Plot a run live in a visdom server; never raises into training (see the module notes).

    ``env`` defaults to the run's name from ``run_started`` (e.g. ``IndianPines_hu_seed0``).
    ``smoothing`` is the weight of the exponential moving average of the loss (debiased, as
    TensorBoard's). Points per iteration are sent at most every ``flush_seconds`` and at every
    epoch's end, appended to the window, so plotting costs training almost nothing.
    """

    def __init__(self, server: str = "http://127.0.0.1", port: int = 8097, username: Optional[str] = None,
                 password: Optional[str] = None, env: Optional[str] = None, smoothing: float = 0.9,
                 warn: Callable[[str], None] = _print_warning, retry_seconds: float = 5.0,
                 flush_seconds: float = 1.0, request_timeout: float = 10.0):
        self.server, self.port, self.username, self.password = server, port, username, password
        self.env: Optional[str] = env
        self.smoothing = min(max(float(smoothing), 0.0), 0.999)
        self.warn_function = warn
        self.retry_seconds, self.flush_seconds, self.request_timeout = retry_seconds, flush_seconds, request_timeout
        self._client: Any = None
        self._warned = False
        self._next_check = 0.0
        self._last_flush = 0.0
        self._title = ""
        self._ema, self._ema_steps = 0.0, 0
        self._series: dict[str, Series] = {}
        self._windows: dict[str, Draw] = {}  # the latest full drawing of each non-line window
        self._maps: dict[str, np.ndarray] = {}
        self._log: list[str] = []
        self._palette: Optional[Sequence[Sequence[int]]] = None

    # --- the connection ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the monitor currently talks to a server."""
        return self._client is not None

    def _warn_once(self, reason: Any) -> None:
        if not self._warned:
            self._warned = True
            self.warn_function(f"warning: visdom at {self.server}:{self.port} is not available ({reason}); training "
                               "goes on and plots resume when it answers (start one with `python main.py visdom`)")

    def _lost(self, reason: Any) -> None:
        self._client = None
        self._next_check = time.monotonic() + self.retry_seconds
        self._warn_once(reason)

    def _connect(self, force: bool = False) -> bool:
        """Return whether a server is there, connecting (and redrawing everything) when one came back;
        tries at most every ``retry_seconds`` unless ``force``."""
        if self._client is not None:
            return True
        if self.env is None or (not force and time.monotonic() < self._next_check):
            return False
        if not visdom_reachable(self.server, self.port):
            self._lost("no server answers")
            return False
        try:
            cls = _client_class()
        except ImportError:
            self._lost("the visdom package is not installed; scripts/setup.sh installs it")
            self._next_check = math.inf
            return False
        try:
            with warnings.catch_warnings():  # visdom calls the deprecated logger.warn
                warnings.simplefilter("ignore", DeprecationWarning)
                client = cls(server=self.server, port=self.port, env=self.env, username=self.username,
                             password=self.password, raise_exceptions=True, use_incoming_socket=False)
            client.request_timeout = self.request_timeout
            self._redraw(client)
        except Exception as error:  # a server that died again, refused the login, ...
            self._lost(error)
            return False
        self._client = client
        return True

    def _redraw(self, client: Any) -> None:
        """Start the env afresh and send every window's current state."""
        client.close(win=None, env=self.env)
        for series in self._series.values():
            series.sent = 0
            series.draw(client, self.env)
        for draw in self._windows.values():
            draw(client)

    def _send(self, draw: Optional[Draw] = None, force: bool = False) -> None:
        """Run ``draw`` (and push pending line points) if a server is there; on any failure go offline."""
        if not self._connect(force):
            return
        try:
            for series in self._series.values():
                series.draw(self._client, self.env)
            self._last_flush = time.monotonic()
            if draw is not None:
                draw(self._client)
        except Exception as error:  # the server died or misbehaved: never let it reach training
            self._lost(error)

    def _window(self, win: str, draw: Draw) -> None:
        """Remember ``draw`` as the latest state of ``win`` (replayed after a reconnection) and send it."""
        self._windows[win] = draw
        self._send(draw)

    # --- events --------------------------------------------------------------------------------
    def run_started(self, info: dict[str, Any]) -> None:
        self.env = self.env or str(info.get("run") or "deephyperx")
        self._title = f"{info.get('model', '')} on {info.get('scene', '')}, seed {info.get('seed', '')}"
        config = info.get("config") or {}
        shown = ", ".join(f"{k} {config[k]}" for k in ("epoch", "batch_size", "lr", "optimizer", "patch_size",
                                                        "sampling_mode", "training_sample") if k in config)
        self._connect(force=True)
        self.text(f"{self.env}: {self._title} ({shown})")

    def image(self, name: str, rgb: np.ndarray) -> None:
        picture = display_size(np.asarray(rgb, np.uint8)).transpose(2, 0, 1)
        title = "RGB composite" if name == "rgb" else name.replace("_", " ")
        win = f"image_{name}"
        self._window(win, lambda c: c.image(picture, win=win, env=self.env, opts={"title": title}))

    def label_map(self, name: str, label_map: np.ndarray, palette: Sequence[tuple[int, int, int]],
                  class_names: Sequence[str]) -> None:
        self._maps[name] = display_size(colour_map_image(label_map, palette, len(class_names)))
        picture = compose_maps(self._maps).transpose(2, 0, 1)
        title = " | ".join(n.replace("_", " ") for n in self._maps)
        self._window("maps", lambda c: c.image(picture, win="maps", env=self.env, opts={"title": title}))
        if self._palette is None:
            self._palette = palette
            legend = legend_html(palette, class_names)
            self._window("legend", lambda c: c.text(legend, win="legend", env=self.env,
                                                    opts={"title": "classes", "width": 220}))

    def spectra(self, name: str, wavelengths: Optional[np.ndarray], mean: np.ndarray, std: np.ndarray,
                class_names: Sequence[str]) -> None:
        mean, std = np.asarray(mean, float), np.asarray(std, float)
        x = np.asarray(wavelengths, float) if wavelengths is not None else np.arange(mean.shape[1], dtype=float)
        palette = self._palette if self._palette is not None and len(self._palette) >= len(class_names) \
            else default_palette(len(class_names))
        traces = spectra_traces(x, mean, std, class_names, palette)
        title = name.replace("_", " ") + " (mean ± std)"
        layout = {"title": {"text": title}, "xaxis": {"title": {"text": "wavelength (nm)" if wavelengths is not None
                                                                  else "band"}},
                  "yaxis": {"title": {"text": "value"}}, "showlegend": True, "legend": {"font": {"size": 10}},
                  "margin": {"l": 50, "r": 10, "t": 40, "b": 40}}
        win = f"spectra_{name}"
        self._window(win, lambda c: c._send({"data": traces, "layout": layout, "win": win, "eid": self.env,
                                             "opts": {"title": title, "width": 700, "height": 420}}))

    def iteration(self, step: int, logs: dict[str, float]) -> None:
        loss = logs.get("loss")
        if loss is None or not math.isfinite(float(loss)):
            return
        self._ema_steps += 1
        self._ema = self.smoothing * self._ema + (1.0 - self.smoothing) * float(loss)
        smoothed = self._ema / (1.0 - self.smoothing ** self._ema_steps) if self.smoothing > 0 else float(loss)
        series = self._line("loss", "training loss", ["loss", "smoothed"], "iteration", "loss")
        series.add(step, [float(loss), smoothed])
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self._send()

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        finite = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        shown = epoch + 1
        if all(k in finite for k in ("val_oa", "val_aa", "val_kappa")):
            self._line("validation", "validation", ["OA", "AA", "kappa"], "epoch", "score").add(
                shown, [finite["val_oa"], finite["val_aa"], finite["val_kappa"]])
        if "train_loss" in finite:
            names = ["train", "validation"] if "val_loss" in finite else ["train"]
            series = self._line("epoch_loss", "loss per epoch", names, "epoch", "loss")
            if len(series.legend) == len(names):
                series.add(shown, [finite["train_loss"], *([finite["val_loss"]] if len(names) == 2 else [])])
        if "lr" in finite:
            self._line("lr", "learning rate", ["lr"], "epoch", "learning rate", "log").add(shown, [finite["lr"]])
        self._send()

    def confusion(self, matrix: np.ndarray, class_names: Sequence[str]) -> None:
        matrix = np.asarray(matrix)
        names = [str(n) for n in class_names]
        opts = {"title": "confusion matrix (rows: truth)", "rownames": names, "columnnames": names,
                "colormap": "Viridis", "width": 600, "height": 540,
                "layoutopts": {"plotly": {"yaxis": {"autorange": "reversed", "title": {"text": "truth"}},
                                          "xaxis": {"title": {"text": "prediction"}},
                                          "margin": {"l": 170, "b": 150, "t": 40, "r": 10}}}}
        self._window("confusion", lambda c: c.heatmap(matrix, win="confusion", env=self.env, opts=opts))

    def text(self, message: str) -> None:
        self._log = (self._log + [html.escape(str(message))])[-MAX_LOG_LINES:]
        lines = "<br>".join(self._log)
        opts = {"title": "log", "width": 450, "height": 180}
        self._window("log", lambda c: c.text(lines, win="log", env=self.env, opts=opts))

    def run_ended(self, summary: dict[str, Any]) -> None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float))
        self.text(f"finished: {shown}" if shown else "finished")
        self._send(lambda c: c.save([self.env]), force=True)

    # --- helpers ---------------------------------------------------------------------------------
    def _line(self, win: str, title: str, legend: list[str], xlabel: str, ylabel: str, ytype: str = "linear") -> Series:
        if win not in self._series:
            self._series[win] = Series(win, title, legend, xlabel, ylabel, ytype)
        return self._series[win]


def window_data(client: Any, win: str, env: str) -> Optional[dict[str, Any]]:
    """A window as the server holds it (``get_window_data`` parsed), or None when it does not exist."""
    text = client.get_window_data(win, env)
    return json.loads(text) if text else None
