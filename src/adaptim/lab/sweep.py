"""Learning-rate grids for the per-optimizer sweep.

Fair comparison needs each optimizer at its own good learning rate (DeepOBS, Schneider et al.
2019, tunes every optimizer on a log-spaced grid). A full DeepOBS grid (36 values) does not fit a
laptop budget, so each optimizer gets a short half-decade grid around a centre value that is
typical for it on small networks; tasks with very different gradient scales multiply the centre
(``Task.lr_scale``). The grid is ``centre · 10^(k/2)`` for ``k`` in ``GRID_EXPONENTS``.
"""

from __future__ import annotations

import itertools

__all__ = ["LR_CENTRE", "GRID_EXPONENTS", "FAST_GRID_EXPONENTS", "hparam_grid"]

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


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def hparam_grid(optimizer: str, *, lr: float | None = None, lr_scale: float = 1.0,
                exponents: tuple[int, ...] = GRID_EXPONENTS,
                extra: dict[str, tuple[float, ...]] | None = None) -> list[dict[str, float]]:
    """The hyperparameter settings swept for ``optimizer``: a list of keyword dicts.

    ``lr`` given: that learning rate only (no learning-rate sweep). ``extra`` adds further
    swept hyperparameters (e.g. ``{"weight_decay": (1e-4, 1e-3)}``), crossed with the rates.
    """
    if lr is not None:
        rates = [float(lr)]
    else:
        centre = LR_CENTRE[optimizer] * lr_scale
        rates = [_round(centre * 10 ** (k / 2)) for k in exponents]
    extra = extra or {}
    keys = list(extra)
    grid = []
    for rate in rates:
        for combo in itertools.product(*(extra[k] for k in keys)):
            grid.append({"lr": rate, **dict(zip(keys, combo))})
    return grid
