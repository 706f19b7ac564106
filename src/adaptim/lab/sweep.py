"""Hyperparameter grids and the rule that extends a grid whose winner sits on its edge.

Fair comparison needs each arm at its own good learning rate (DeepOBS, Schneider et al. 2019,
tunes every optimizer on a log-spaced grid). Each arm starts from a short half-decade grid
``centre · 10^(k/2)`` around a value typical for its optimizer (times the task's scale), swept
on a tuning seed that is never an evaluation seed. When the best point sits on an edge of an
axis, the grid grows by one half-decade on that side (:func:`extension`), until the winner has
an evaluated neighbour on both sides, the point beyond the winner diverged, or the cap is hit;
the report says which (:func:`grid_status`). A winner that an extension of one axis added (a
new learning rate, at the winning weight decay only) gets its neighbours on the other axes from
the grid's own values.
"""

from __future__ import annotations

import itertools
import math

__all__ = [
    "FAST_GRID_EXPONENTS",
    "GRID_EXPONENTS",
    "LR_CENTRE",
    "MAX_EXTENSIONS",
    "STEP",
    "extension",
    "grid_status",
    "hparam_grid",
    "lr_window_share",
]

# Typical good learning rates on small networks (half-decade values so grids read 0.1, 0.316, 1...).
LR_CENTRE = {
    "sgd": 0.316,
    "momentum": 0.0316,
    "nesterov": 0.0316,
    "adagrad": 0.0316,
    "rmsprop": 0.00316,
    "adadelta": 1.0,
    "adam": 0.00316,
    "adamw": 0.00316,
}

GRID_EXPONENTS = (-1, 0, 1)          # centre / √10, centre, centre · √10
FAST_GRID_EXPONENTS = (0,)           # --fast: the centre only
MAX_EXTENSIONS = 6                   # extra points per axis and side at most
STEP = math.sqrt(10)                 # one half-decade


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def hparam_grid(optimizer: str, *, lr: float | None = None, lr_scale: float = 1.0,
                exponents: tuple[int, ...] = GRID_EXPONENTS,
                extra: dict[str, tuple[float, ...]] | None = None,
                centre: float | None = None) -> list[dict[str, float]]:
    """The hyperparameter settings swept for ``optimizer``: a list of keyword dicts.

    ``lr`` given: that learning rate only (no learning-rate sweep). ``extra`` adds further
    swept hyperparameters (e.g. ``{"weight_decay": (1e-4, 1e-3)}``), crossed with the rates.
    ``centre`` overrides the optimizer's typical rate (before ``lr_scale``).
    """
    if lr is not None:
        rates = [float(lr)]
    else:
        base = (LR_CENTRE[optimizer] if centre is None else centre) * lr_scale
        rates = [_round(base * 10 ** (k / 2)) for k in exponents]
    extra = extra or {}
    keys = list(extra)
    grid = []
    for rate in rates:
        for combo in itertools.product(*(extra[k] for k in keys)):
            grid.append({"lr": rate, **dict(zip(keys, combo))})
    return grid


def _axes(grid: list[dict]) -> list[str]:
    return [k for k in grid[0] if len({h[k] for h in grid}) > 1] if grid else []


def extension(trials: list[tuple[dict, float]], *, added: dict[tuple[str, int], int],
              cap: int = MAX_EXTENSIONS) -> list[dict]:
    """New grid points for a sweep whose best point is on an edge: ``trials`` are
    (hyperparameters, score) with lower scores better and +inf for a diverged run; ``added``
    counts the points already added per (axis, side) and is updated. On each swept axis and
    side where the winner has no evaluated neighbour at its other settings, the new point is
    the grid's own nearest value beyond it on that axis where there is one (no extension:
    a winner an extension of another axis added), else one half-decade beyond it (counted
    against ``cap``). Returns [] when the winner is interior on every swept axis, its outer
    neighbour diverged, or the cap is hit.
    When every point diverged, the learning rate goes down a decade at a time (same cap).
    Ties go to the earlier trial."""
    if not trials:
        return []
    grid = [h for h, _ in trials]
    best_h, best_s = min(trials, key=lambda t: t[1])
    if not math.isfinite(best_s):
        if "lr" not in best_h or added.get(("lr", -1), 0) >= cap:
            return []
        added[("lr", -1)] = added.get(("lr", -1), 0) + 1
        lowest = min(h["lr"] for h in grid)
        return [{**best_h, "lr": _round(lowest / 10)}]
    new = []
    for axis in _axes(grid):
        line = sorted({h[axis] for h in grid if all(h[k] == best_h[k] for k in h if k != axis)})
        values = sorted({h[axis] for h in grid})
        x = best_h[axis]
        for side, ratio in ((+1, STEP), (-1, 1 / STEP)):
            if any((v - x) * side > 0 for v in line):
                continue  # an evaluated neighbour on this side
            beyond = [v for v in values if (v - x) * side > 0]
            if beyond:
                # the winner is a point an extension of another axis added: the grid's own
                # next value on this axis, at the winner's other settings (no extension)
                new.append({**best_h, axis: min(beyond, key=lambda v: abs(v - x))})
            elif added.get((axis, side), 0) < cap:
                added[(axis, side)] = added.get((axis, side), 0) + 1
                new.append({**best_h, axis: _round(x * ratio)})
    return new


def grid_status(trials: list[tuple[dict, float]], *, added: dict[tuple[str, int], int],
                cap: int = MAX_EXTENSIONS) -> str:
    """Where the sweep stopped: ``interior`` (the winner has an evaluated neighbour on each
    side of every swept axis, a diverged one included), ``edge (cap reached)``, ``no
    neighbour`` on an axis (not reached after :func:`extension`), ``single point`` (nothing
    swept) or ``all diverged``."""
    if not trials:
        return "no runs"
    if len(trials) == 1:
        return "single point"
    best_h, best_s = min(trials, key=lambda t: t[1])
    if not math.isfinite(best_s):
        return "all diverged"
    grid = [h for h, _ in trials]
    status = "interior"
    for axis in _axes(grid):
        line = {h[axis] for h in grid if all(h[k] == best_h[k] for k in h if k != axis)}
        x = best_h[axis]
        for side in (+1, -1):
            if any((v - x) * side > 0 for v in line):
                continue
            if any((h[axis] - x) * side > 0 for h in grid):
                return f"no neighbour on {axis}"
            status = f"edge of {axis} (cap of {cap} extensions reached)"
    return status


def lr_window_share(trials: list[tuple[dict, bool]], best_lr: float, *, width: int = 2) -> float:
    """Share of the learning rates within ``width`` half-decades of ``best_lr`` (the winner
    included) whose run reached the task's target: ``trials`` are (hyperparameters, reached).
    Only the winner's other hyperparameters are counted; NaN when no point is in the window."""
    lo, hi = best_lr / STEP ** width / 1.01, best_lr * STEP ** width * 1.01
    hits = [reached for h, reached in trials if lo <= h["lr"] <= hi]
    return sum(hits) / len(hits) if hits else math.nan
