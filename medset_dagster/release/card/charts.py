"""The card's two charts, rendered with fixed size, dpi and style and no software metadata, so
identical data gives identical PNG bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from medset_dagster.common.files import atomic_write

CHART_SIZE = (8.0, 4.5)
CHART_DPI = 100


def _new_figure(ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure with its own Agg canvas: no pyplot global state, no GUI backend.
    fig = Figure(figsize=CHART_SIZE, dpi=CHART_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save(fig: Any, path: Path) -> None:
    # No software/version metadata: bytes depend on the data (and the pinned matplotlib), nothing else.
    atomic_write(path, lambda temporary: fig.savefig(temporary, format="png", dpi=CHART_DPI, metadata={"Software": None}))


def render_source_mix(dataset: pl.DataFrame, path: Path) -> Path:
    """Rows per source, horizontal bars, largest at the top."""
    import matplotlib.style

    counts = (
        dataset.group_by("source").len().sort(["len", "source"], descending=[False, True]).rows()
        if dataset.height else []
    )
    with matplotlib.style.context("default"):
        fig, ax = _new_figure()
        if counts:
            labels, values = [c[0] for c in counts], [c[1] for c in counts]
            bars = ax.barh(labels, values, color="#4C72B0")
            ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
            ax.set_xlim(0, max(values) * 1.15)
            ax.tick_params(axis="y", labelsize=8)
        else:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("rows")
        ax.set_title(f"Rows per source ({dataset.height:,} in total)")
        fig.tight_layout()
        _save(fig, path)
    return path


def render_length_histogram(dataset: pl.DataFrame, path: Path, bounds: tuple[int, int] | None = None) -> Path:
    """Histograms of input and output lengths in characters; log-spaced bins, log counts."""
    import matplotlib.style
    import numpy as np

    with matplotlib.style.context("default"):
        fig, axes = _new_figure(ncols=2)
        for ax, column in zip(axes, ("input", "output")):
            lengths = dataset[column].str.len_chars().to_numpy() if dataset.height else np.array([], dtype=np.int64)
            if lengths.size:
                low, high = max(int(lengths.min()), 1), int(lengths.max()) + 1
                bins = np.unique(np.geomspace(low, max(high, low + 1), 40).round().astype(np.int64))
                ax.hist(np.maximum(lengths, 1), bins=bins, color="#55A868", log=True)
                ax.set_xscale("log")
                if bounds is not None:
                    for i, bound in enumerate(bounds):
                        ax.axvline(bound, color="#C44E52", linestyle="--", linewidth=1,
                                   label="length bounds" if i == 0 else None)
                    ax.legend(loc="upper left", fontsize=8)
            else:
                ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{column} length")
            ax.set_xlabel("characters (log scale)")
            ax.set_ylabel("rows (log scale)")
        fig.tight_layout()
        _save(fig, path)
    return path
