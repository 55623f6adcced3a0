"""Figures of the realism report (:mod:`deephyperx.realism`): real against synthetic spectra.

Drawn with matplotlib's object API and the Agg canvas (no display, no global state), written
atomically as PNG files a person can read: labelled axes, a legend, one panel per class.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deephyperx.atomic import atomic_path
from deephyperx.scene import default_palette

#: At most this many points of each source are drawn in the PCA scatter.
MAX_SCATTER = 3000
REAL_COLOUR = "0.15"
SYNTHETIC_COLOUR = "tab:orange"
DPI = 100


def save(fig: Figure, path: Path) -> None:
    """Render ``fig`` to a PNG at ``path``, atomically."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1)


def class_colours(n_classes: int) -> list[tuple[float, float, float]]:
    """The scene palette's colours as matplotlib RGB fractions."""
    return [tuple(c / 255.0 for c in rgb) for rgb in default_palette(n_classes)]


def _x_axis(wavelengths: Optional[np.ndarray], n_bands: int) -> tuple[np.ndarray, str]:
    if wavelengths is None:
        return np.arange(n_bands), "band"
    return np.asarray(wavelengths, float), "wavelength (nm)"


def class_spectra_figure(wavelengths: Optional[np.ndarray], real: tuple[np.ndarray, np.ndarray],
                         synthetic: tuple[np.ndarray, np.ndarray], class_names: Sequence[str]) -> Figure:
    """Small multiples, one panel per class: real and synthetic mean spectra with ± std bands.
    ``real`` and ``synthetic`` are (mean, std) arrays of shape (K, B)."""
    n = len(class_names)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    x, xlabel = _x_axis(wavelengths, real[0].shape[1])
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    for k, ax in enumerate(axes):
        if k >= n:
            ax.set_visible(False)
            continue
        for (mean, std), colour, label, style in ((real, REAL_COLOUR, "real", "-"),
                                                  (synthetic, SYNTHETIC_COLOUR, "synthetic", "--")):
            if np.isfinite(mean[k]).any():
                ax.plot(x, mean[k], style, color=colour, linewidth=1.2, label=label)
                ax.fill_between(x, mean[k] - std[k], mean[k] + std[k], color=colour, alpha=0.2, linewidth=0)
        ax.set_title(class_names[k], fontsize=9)
        ax.tick_params(labelsize=7)
        if k + cols >= n:  # no panel below this one: it carries the x axis
            ax.set_xlabel(xlabel, fontsize=8)
            ax.tick_params(labelbottom=True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=2, frameon=False)
    fig.suptitle("class spectra, mean ± std: real against synthetic", x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def principal_axes(spectra: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the first principal axes (C, B) of ``spectra``, signs fixed for reproducibility."""
    mean = spectra.mean(axis=0)
    _, _, vt = np.linalg.svd(spectra - mean, full_matrices=False)
    axes = vt[:n_components]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    if len(axes) < n_components:  # fewer spectra than components: the missing axes are flat
        axes = np.vstack([axes, np.zeros((n_components - len(axes), spectra.shape[1]))])
    return mean, axes


def _sample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=limit, replace=False)) if n > limit else np.arange(n)


def pca_figure(real: tuple[np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray],
               class_names: Sequence[str], palette: Sequence[Any], seed: int) -> Figure:
    """Two panels on the same axes: real spectra on their first two principal components, and
    synthetic spectra projected into them (real ones in grey behind), coloured by class."""
    mean, axes = principal_axes(real[0])
    rng = np.random.default_rng([seed, 7])
    shown = [(x[idx], y[idx]) for x, y in (real, synthetic) for idx in [_sample(len(y), MAX_SCATTER, rng)]]
    points = [(x - mean) @ axes.T for x, _ in shown]
    fig = Figure(figsize=(12, 5))
    left, right = fig.subplots(1, 2, sharex=True, sharey=True)
    right.scatter(points[0][:, 0], points[0][:, 1], s=4, color="0.85", label="real", rasterized=True)
    for ax, (xy, (_, labels)), marker in ((left, (points[0], shown[0]), "o"), (right, (points[1], shown[1]), "x")):
        for k, name in enumerate(class_names):
            sel = labels == k
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=6 if marker == "o" else 10, marker=marker, linewidths=0.7,
                           color=palette[k], label=name, rasterized=True)
        ax.set_xlabel("principal component 1")
    left.set_ylabel("principal component 2")
    left.set_title("real training spectra")
    right.set_title("synthetic spectra (grey: real)")
    right.legend(fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def angle_figure(synthetic_nearest: np.ndarray, test_nearest: np.ndarray,
                 diversity: Sequence[dict[str, Any]]) -> Figure:
    """Left: histograms of the angle to the nearest real training spectrum, synthetic against real
    test (a synthetic histogram piled at zero means memorisation). Right: per-class diversity."""
    fig = Figure(figsize=(13, 4.5))
    hist, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    values = np.concatenate([synthetic_nearest, test_nearest])
    values = values[np.isfinite(values)]
    top = float(values.max()) if values.size and values.max() > 0 else 1.0
    bins = np.linspace(0.0, top, 41)
    for data, colour, label in ((test_nearest, REAL_COLOUR, "real test (baseline)"),
                                (synthetic_nearest, SYNTHETIC_COLOUR, "synthetic")):
        data = data[np.isfinite(data)]
        if data.size:
            hist.hist(data, bins=bins, density=True, histtype="step", linewidth=1.6, color=colour,
                      label=f"{label}, median {np.median(data):.3f}")
    hist.set(title="angle to the nearest real training spectrum", xlabel="spectral angle (radians)", ylabel="density")
    hist.legend(fontsize=8)
    names = [row["class"] for row in diversity]
    x = np.arange(len(names))
    for offset, key, colour in ((-0.2, "real", REAL_COLOUR), (0.2, "synthetic", SYNTHETIC_COLOUR)):
        heights = [row[key] if row[key] is not None else 0.0 for row in diversity]
        bars.bar(x + offset, heights, width=0.4, color=colour, label=key)
    bars.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    bars.set(title="diversity: mean pairwise angle within the class", ylabel="spectral angle (radians)")
    bars.legend(fontsize=8)
    fig.tight_layout()
    return fig


def interpolation_figure(wavelengths: Optional[np.ndarray], spectra: np.ndarray) -> Figure:
    """Spectra generated along a latent path, coloured from the first step to the last."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    x, xlabel = _x_axis(wavelengths, spectra.shape[1])
    steps = len(spectra)
    norm = Normalize(0, max(steps - 1, 1))
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    for i, spectrum in enumerate(spectra):
        ax.plot(x, spectrum, color=cmap(norm(i)), linewidth=1.0)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="step along the latent path")
    ax.set(title=f"latent interpolation between two classes ({steps} steps)", xlabel=xlabel, ylabel="value")
    fig.tight_layout()
    return fig
