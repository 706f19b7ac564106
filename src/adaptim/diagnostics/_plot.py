"""Heatmap of a GradientMonitor history. Imported only by ``GradientMonitor.plot_heatmap`` so
that importing adaptim never imports matplotlib (an optional dependency, extra ``lab``)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["gradient_heatmap"]


def gradient_heatmap(history: list[dict], path=None, title: str | None = None,
                     highlight: list[str] | None = None):
    """Layers (rows, input side on top) × recorded steps (columns), colour = log10 ‖g‖.
    NaN/Inf cells are drawn magenta, layers without a gradient at a step are left white, and
    the names of the ``highlight`` layers (those the last check flagged) are drawn in red."""
    try:
        from matplotlib.colors import ListedColormap, Normalize
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("plot_heatmap needs matplotlib (pip install 'adaptim[lab]')") from err
    if not history:
        raise ValueError("the monitor has no history yet: record() or step the optimizer first")
    layers: list[str] = []
    for record in history:
        for s in record["layers"]:
            if s["layer"] not in layers:
                layers.append(s["layer"])
    steps = [r["step"] for r in history]
    values = np.full((len(layers), len(steps)), np.nan)
    bad = np.zeros_like(values, dtype=bool)
    row = {name: i for i, name in enumerate(layers)}
    for j, record in enumerate(history):
        for s in record["layers"]:
            g = s["grad_norm"]
            g = float(g) if not isinstance(g, str) else float(g)
            if not math.isfinite(g):
                bad[row[s["layer"]], j] = True
            else:
                values[row[s["layer"]], j] = math.log10(g) if g > 0 else -np.inf
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    values[np.isneginf(values)] = lo  # exactly-zero gradient: bottom of the scale

    height = min(max(3.5, 2.0 + 0.28 * len(layers)), 14.0)
    fig = Figure(figsize=(max(7.0, min(2.0 + 0.12 * len(steps), 16.0)), height), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", interpolation="nearest",
                      cmap="viridis", norm=Normalize(vmin=lo, vmax=hi))
    if bad.any():
        overlay = np.ma.masked_where(~bad, np.ones_like(values))
        ax.imshow(overlay, aspect="auto", interpolation="nearest",
                  cmap=ListedColormap(["magenta"]), vmin=0, vmax=1)
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels(layers, fontsize=8 if len(layers) < 30 else 6)
    flagged = set(highlight or ())
    for label in ax.get_yticklabels():
        if label.get_text() in flagged:
            label.set_color("red")
            label.set_fontweight("bold")
    ticks = list(range(0, len(steps), max(1, math.ceil(len(steps) / 8))))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(steps[k]) for k in ticks], fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("layer (input side on top)")
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("log10 gradient norm")
    caption = title or "Gradient norm per layer"
    legend = ["dark = tiny gradient, bright = large"]
    if flagged:
        legend.append("red name = flagged by check()")
    if bad.any():
        legend.append("magenta = NaN/Inf")
    ax.set_title(caption + "\n" + "; ".join(legend), fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
