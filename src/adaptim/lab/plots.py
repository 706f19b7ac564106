"""The report's figures (matplotlib, Agg backend), returned as PNG bytes.

Every figure has a title, labelled axes and a legend; losses and gradient norms use log scales.
Curves are the mean over seeds with a band from the lowest to the highest seed.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from adaptim.lab.summary import smoothed

__all__ = [
    "COLORS",
    "effective_lr_figure",
    "grad_norm_figure",
    "layer_norm_figure",
    "loss_figure",
    "sweep_figure",
    "to_png",
    "trajectory_figure",
]

COLORS = {"sgd": "#1f77b4", "momentum": "#ff7f0e", "nesterov": "#2ca02c", "adagrad": "#d62728",
          "rmsprop": "#9467bd", "adadelta": "#8c564b", "adam": "#e377c2", "adamw": "#17becf"}
VARIANT_STYLES = ["-", "--", ":", "-."]


def _color(arm: str):
    """An arm's colour: its optimizer's (an arm label starts with the optimizer's name)."""
    return COLORS.get(arm.split()[0].split("+")[0])


def _layout(fig, top: float = 0.45, right: float = 0.2) -> None:
    """Fixed margins in inches (top/right: space for titles/legends) instead of tight_layout,
    which measures every label with a full extra draw and so costs more than the rest of the
    report on a small machine."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.85 / width, right=1 - right / width, bottom=0.6 / height,
                        top=1 - top / height, wspace=0.3 * len(fig.axes) / max(len(fig.axes), 1))


def _guard_log_axes(fig) -> None:
    """A log axis with no positive finite value to show (every run of a panel diverged) cannot
    be drawn: such an axis goes linear and says why."""
    for ax in fig.axes:
        for axis, getter, setter in (("y", ax.get_yscale, ax.set_yscale),
                                     ("x", ax.get_xscale, ax.set_xscale)):
            if getter() != "log":
                continue
            values = []
            for line in ax.get_lines():
                data = line.get_ydata() if axis == "y" else line.get_xdata()
                values.extend(np.asarray(data, dtype=float).ravel().tolist())
            finite = [v for v in values if np.isfinite(v) and v > 0]
            if not finite:
                setter("linear")
                ax.text(0.5, 0.5, "no finite positive values (diverged)",
                        transform=ax.transAxes, ha="center", va="center", fontsize=8)


def to_png(fig, dpi: int = 80) -> bytes:
    _guard_log_axes(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _final_runs(records, task, variant=None, optimizer=None):
    return [r for r in records if r.final and r.task == task
            and (variant is None or r.variant == variant)
            and (optimizer is None or r.arm == optimizer)]


def _band(curves: list[list[float]]):
    arr = np.array(curves, dtype=float)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(arr, 0), np.nanmin(arr, 0), np.nanmax(arr, 0)


def _optimizers(records, task):
    seen = []
    for r in records:
        if r.task == task and r.arm not in seen:
            seen.append(r.arm)
    return seen


def _positive(y):
    """Values a log axis can show: positive and finite (a diverging run's 1e300 is dropped)."""
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y) & (y > 0) & (y < 1e30), y, np.nan)


def loss_figure(task, records, *, baseline: float | None = None, smooth: bool = True):
    """One panel per variant: the (smoothed) loss of every optimizer, mean over seeds with a
    min–max band, the target as a dashed line."""
    variants = [v for v in task.variants if _final_runs(records, task.name, v)]
    fig, axes = plt.subplots(1, len(variants), figsize=(4.8 * len(variants) + 1.8, 4),
                             squeeze=False)
    smooth = smooth and task.stochastic
    for ax, variant in zip(axes[0], variants):
        for opt in _optimizers(records, task.name):
            runs = _final_runs(records, task.name, variant, opt)
            if not runs:
                continue
            curves = [smoothed(r.output.curves["loss"]) if smooth else r.output.curves["loss"]
                      for r in runs]
            mean, lo, hi = _band(curves)
            steps = np.arange(1, len(mean) + 1)
            # one arm may run at different rates on different panels: those are in the table
            label = opt
            if task.log_loss:
                mean, lo, hi = _positive(mean), _positive(lo), _positive(hi)
            ax.plot(steps, mean, color=_color(opt), label=label, lw=1.6)
            if len(runs) > 1:
                ax.fill_between(steps, lo, hi, color=_color(opt), alpha=0.15, lw=0)
        ax.axhline(task.target[variant], color="black", ls="--", lw=1, label="target")
        if baseline is not None:
            ax.axhline(baseline, color="gray", ls=":", lw=1.2, label="baseline (predict mean)")
        if task.log_loss:
            ax.set_yscale("log")
        ax.set_title(f"{task.name} · {variant}")
        ax.set_xlabel("step")
        ax.set_ylabel(task.loss_name + (" (EMA-smoothed)" if smooth else ""))
        ax.grid(alpha=0.3)
    handles: dict = {}
    for ax in axes[0]:  # one legend for every panel's arms
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    axes[0][-1].legend(handles.values(), handles.keys(), fontsize=8, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0))
    n_seeds = max(len({r.seed for r in _final_runs(records, task.name)}), 1)
    fig.suptitle(f"{task.summary}\nmean of {n_seeds} seed(s); band: lowest to highest seed",
                 fontsize=10)
    _layout(fig, top=0.85, right=2.0)
    return fig


def sweep_figure(task, records):
    """Sweep score (what the learning rate was chosen by) against the learning rate, per
    optimizer (and per weight decay where it is swept too); the chosen point is a star."""
    sweeps = [r for r in records if r.task == task.name and r.sweep]
    variants = [v for v in task.variants if any(r.variant == v for r in sweeps)]
    if not variants:
        return None
    from adaptim.lab.summary import selection_score

    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants) + 2.4, 3.8),
                             squeeze=False)
    for ax, variant in zip(axes[0], variants):
        lines: dict[tuple, list] = {}
        for r in sweeps:
            if r.variant != variant:
                continue
            extra = tuple((k, v) for k, v in sorted(r.hparams.items()) if k != "lr")
            lines.setdefault((r.arm, extra), []).append(r)
        styles: dict[str, int] = {}
        for (opt, extra), runs in lines.items():
            # One point per learning rate: the mean over its tuning seeds (what chose it).
            by_lr: dict[float, list] = {}
            for r in sorted(runs, key=lambda r: (r.hparams["lr"], r.seed)):
                by_lr.setdefault(r.hparams["lr"], []).append(r)
            lrs = list(by_lr)
            scores = [float(np.mean([selection_score(r.output) for r in group]))
                      for group in by_lr.values()]
            scores = list(_positive(scores))
            runs = [group[0] for group in by_lr.values()]
            k = styles.setdefault(opt, 0)
            styles[opt] += 1
            label = opt + "".join(f" {name}={val:g}" for name, val in extra)
            ax.plot(lrs, scores, marker="o", ms=4, color=_color(opt),
                    ls=VARIANT_STYLES[k % len(VARIANT_STYLES)], label=label)
            for r, s in zip(runs, scores):
                if r.final:
                    ax.plot([r.hparams["lr"]], [s], marker="*", ms=14, color=_color(opt),
                            mec="black", ls="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("sweep score (lower is better)")
        ax.set_title(f"{task.name} · {variant}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("Learning-rate sweep on the tuning seed(s) (★ = chosen setting, used for "
                 "every evaluation seed)",
                 fontsize=10)
    _layout(fig, top=0.55, right=2.4)
    return fig


def trajectory_figure(task, records, surfaces):
    """Contour plot (log-spaced levels) of each surface with every optimizer's path (seed 0)."""
    variants = [v for v in task.variants if _final_runs(records, task.name, v)]
    fig, axes = plt.subplots(1, len(variants), figsize=(5.0 * len(variants) + 1.6, 4.8),
                             squeeze=False)
    for ax, variant in zip(axes[0], variants):
        s = surfaces[variant]
        xs = np.linspace(*s.xlim, 160)
        ys = np.linspace(*s.ylim, 160)
        X, Y = np.meshgrid(xs, ys)
        Z = s.f(X, Y) - s.f_min
        levels = np.logspace(np.log10(max(Z.min(), 1e-3)), np.log10(Z.max()), 25)
        ax.contour(X, Y, np.maximum(Z, 1e-3), levels=levels, cmap="Greys", linewidths=0.6,
                   norm=matplotlib.colors.LogNorm())
        for opt in _optimizers(records, task.name):
            runs = sorted(_final_runs(records, task.name, variant, opt), key=lambda r: r.seed)
            if not runs:
                continue
            r = runs[0]
            px = [r.output.scalars["start_x"]] + r.output.curves["x"]
            py = [r.output.scalars["start_y"]] + r.output.curves["y"]
            # learning rates differ per surface (see the table), so the shared legend names only
            ax.plot(px, py, color=_color(opt), lw=1.4, label=opt)
            ax.plot(px[-1:], py[-1:], "o", color=_color(opt), ms=4)
        ax.plot([s.start[0]], [s.start[1]], "ks", ms=6, label="start")
        ax.plot([s.minimum[0]], [s.minimum[1]], "k*", ms=12, label="minimum")
        ax.set_xlim(*s.xlim)
        ax.set_ylim(*s.ylim)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"{variant}: f = {s.formula}", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    steps = max((r.steps for r in _final_runs(records, task.name)), default=0)
    fig.suptitle(f"Optimizer trajectories over {steps} steps (seed 0; each optimizer at its "
                 "swept learning rate for that surface)",
                 fontsize=10)
    _layout(fig, top=0.6, right=1.9)
    return fig


def effective_lr_figure(task, records, variant: str):
    """Effective learning rate (median factor on the gradient) against the step, log scale."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for opt in _optimizers(records, task.name):
        runs = _final_runs(records, task.name, variant, opt)
        if not runs or "effective_lr" not in runs[0].output.sparse:
            continue
        steps = runs[0].output.sparse["effective_lr"][0]
        mean, lo, hi = _band([r.output.sparse["effective_lr"][1] for r in runs
                              if len(r.output.sparse["effective_lr"][1]) == len(steps)])
        ax.plot(steps, _positive(mean), color=_color(opt), label=opt, lw=1.6)
        ax.fill_between(steps, _positive(lo), _positive(hi), color=_color(opt), alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("effective learning rate (median over entries)")
    ax.set_title(f"{task.name} · {variant}: effective step size per unit gradient")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", ncol=2)
    _layout(fig, top=0.35)
    return fig


def layer_norm_figure(task, records):
    """Gradient norm of each layer's weight, first layer (next to the input) to last, per
    variant: at the first step (left) and averaged over training (right), first optimizer."""
    opts = _optimizers(records, task.name)
    if not opts:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, variant in enumerate(task.variants):
        runs = [r for r in _final_runs(records, task.name, variant) if r.arm == opts[0]]
        if not runs:
            continue
        r = sorted(runs, key=lambda r: r.seed)[0]
        names = sorted((n for n in r.output.sparse if n.startswith("grad_norm/layer")),
                       key=lambda n: int(n.rsplit("layer", 1)[1]))
        first = [r.output.sparse[n][1][0] for n in names]
        mean = [float(np.mean(r.output.sparse[n][1])) for n in names]
        layers = np.arange(1, len(names) + 1)
        for ax, values in zip(axes, (first, mean)):
            ax.plot(layers, _positive(values), marker="o", ls=VARIANT_STYLES[k % 4],
                    label=variant, lw=1.6)
    for ax, title in zip(axes, ("at the first step", "mean over training")):
        ax.set_yscale("log")
        ax.set_xlabel("layer (1 = next to the input)")
        ax.set_ylabel("‖∂L/∂W‖ of the layer")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{task.name}: gradient norm of each layer's weight ({opts[0]}, seed 0)",
                 fontsize=10)
    _layout(fig, top=0.6)
    return fig


def grad_norm_figure(task, records):
    """Global gradient norm before clipping against the step, clipped vs unclipped, one panel
    per optimizer (seed 0)."""
    opts = _optimizers(records, task.name)
    if not opts:
        return None
    fig, axes = plt.subplots(1, len(opts), figsize=(4.6 * len(opts), 3.8), squeeze=False)
    for ax, opt in zip(axes[0], opts):
        for k, variant in enumerate(task.variants):
            runs = sorted(_final_runs(records, task.name, variant, opt), key=lambda r: r.seed)
            if not runs or "grad_norm" not in runs[0].output.curves:
                continue
            norms = runs[0].output.curves["grad_norm"]
            ax.plot(np.arange(1, len(norms) + 1), _positive(norms), ls=VARIANT_STYLES[k % 4],
                    label=f"{variant}" + (" (diverged)" if runs[0].output.diverged else ""),
                    lw=1.4)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("gradient norm before clipping")
        ax.set_title(f"{task.name} · {opt} (seed 0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _layout(fig, top=0.35)
    return fig
