"""The decision rules of the lab, as pure functions of numbers (no torch, no runs).

A claim compares arm A with arm B on one metric over *paired* evaluation seeds (seed k of A and
seed k of B share the initialization and the data). Each pair gives a difference oriented so
that a positive value favours the claim; the effect is the mean difference with a Student-t
confidence interval. A run that diverged is not dropped: it takes the worst value of the
comparison (rank-based: it ties with the worst finite outcome, or takes the metric's declared
failure value), so a method that diverges more often can only look worse.

Verdicts (:func:`decide`):

- superiority claims ("A is better than B"): *holds* when the interval excludes zero in the
  claimed direction and the mean effect is at least the stated minimum; *does not hold* when the
  interval excludes zero in the opposite direction, or lies inside ±δ (equivalence: no effect
  that matters); otherwise *inconclusive*;
- equivalence claims ("A is as good as B"): *holds* when the interval lies inside ±δ; *does not
  hold* when it excludes zero and the mean effect is at least δ in size; otherwise inconclusive.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = [
    "HOLDS",
    "INCONCLUSIVE",
    "NOT_HOLD",
    "Effect",
    "decay_ratio",
    "decay_rule",
    "decide",
    "oriented_differences",
    "paired_effect",
    "seeds_needed",
    "t_quantile",
]

HOLDS, NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
CONFIDENCE = 0.95


def _bad(x) -> bool:
    return x is None or not math.isfinite(x)


def oriented_differences(a: list, b: list | None, *, higher_is_better: bool,
                         transform: str = "diff", worst: float | None = None) -> list[float]:
    """Per-pair differences, positive = A better. ``b`` None: one-sample (A against zero).

    ``a``/``b`` hold one value per seed (same order); None, NaN or ±inf mark a diverged run,
    which takes ``worst`` or, if that is None, the worst finite value of either arm.
    ``transform``: ``diff`` (A − B), ``log10`` (log10 A − log10 B: for losses that span orders
    of magnitude; values must be positive), ``sign`` (+½ A better, −½ B better, 0 tie: the mean
    is the win rate − ½).
    """
    if b is not None and len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    values = list(a) + (list(b) if b is not None else [])
    finite = [v for v in values if not _bad(v)]
    if worst is None:
        if finite:
            worst = min(finite) if higher_is_better else max(finite)
        else:
            worst = 0.0
    fill = [worst if _bad(v) else v for v in values]
    fa, fb = fill[:len(a)], (fill[len(a):] if b is not None else [0.0] * len(a))
    sign = 1.0 if higher_is_better else -1.0
    out = []
    for x, y in zip(fa, fb):
        if transform == "diff":
            out.append(sign * (x - y))
        elif transform == "log10":
            floor = 1e-12
            out.append(sign * (math.log10(max(x, floor)) - (math.log10(max(y, floor))
                                                            if b is not None else 0.0)))
        elif transform == "sign":
            d = sign * (x - y)
            out.append(0.5 if d > 0 else -0.5 if d < 0 else 0.0)
        else:
            raise ValueError(f"transform must be 'diff', 'log10' or 'sign', got {transform!r}")
    return out


def t_quantile(df: int, level: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value (scipy)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Effect:
    """Mean paired effect (positive = claim direction) with its confidence interval."""

    mean: float
    lo: float
    hi: float
    n: int
    wins: int       # pairs favouring the claim
    losses: int     # pairs against it

    def to_dict(self) -> dict:
        return dict(mean=self.mean, lo=self.lo, hi=self.hi, n=self.n, wins=self.wins,
                    losses=self.losses)


def paired_effect(diffs: list[float], level: float = CONFIDENCE, *,
                  deterministic: bool = False) -> Effect:
    """Mean of ``diffs`` with a t interval. ``deterministic``: the measurement has no seed
    noise (a byte count), so the interval is the value itself."""
    n = len(diffs)
    if n == 0:
        return Effect(math.nan, math.nan, math.nan, 0, 0, 0)
    mean = statistics.fmean(diffs)
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    if deterministic:
        return Effect(mean, min(diffs), max(diffs), n, wins, losses)
    if n == 1:
        return Effect(mean, -math.inf, math.inf, n, wins, losses)
    half = t_quantile(n - 1, level) * statistics.stdev(diffs) / math.sqrt(n)
    return Effect(mean, mean - half, mean + half, n, wins, losses)


def decide(effect: Effect, *, min_effect: float, delta: float | None = None,
           kind: str = "superior") -> tuple[str, str]:
    """(verdict, reason) for ``effect`` (see the module docstring). ``delta`` defaults to
    ``min_effect``: an effect smaller than the minimum that matters counts as none."""
    if min_effect <= 0:
        raise ValueError(f"min_effect must be positive, got {min_effect}")
    delta = min_effect if delta is None else delta
    m, lo, hi = effect.mean, effect.lo, effect.hi
    if effect.n == 0 or math.isnan(m):
        return INCONCLUSIVE, "no paired runs"
    if kind == "superior":
        if lo > 0 and m >= min_effect:
            return HOLDS, f"interval above 0 and effect ≥ {min_effect:g}"
        if hi < 0:
            return NOT_HOLD, "interval below 0: the opposite holds"
        if -delta < lo and hi < delta:
            return NOT_HOLD, f"interval inside ±{delta:g}: no effect that matters"
        if lo > 0:
            return INCONCLUSIVE, f"effect above 0 but below the minimum {min_effect:g}"
        return INCONCLUSIVE, "interval includes 0"
    if kind == "equivalent":
        if -delta < lo and hi < delta:
            return HOLDS, f"interval inside ±{delta:g}"
        if (lo > 0 or hi < 0) and abs(m) >= delta:
            return NOT_HOLD, f"interval excludes 0 and |effect| ≥ {delta:g}"
        return INCONCLUSIVE, f"interval neither inside ±{delta:g} nor clear of 0"
    raise ValueError(f"kind must be 'superior' or 'equivalent', got {kind!r}")


def seeds_needed(effect: Effect, *, min_effect: float, limit: int = 200) -> int | None:
    """Rough number of paired seeds for the interval's half-width to shrink below the larger of
    |effect| and the minimum effect (the half-width falls as 1/√n); None if it cannot tell."""
    if effect.n < 2 or not all(map(math.isfinite, (effect.lo, effect.hi, effect.mean))):
        return None
    half = (effect.hi - effect.lo) / 2
    goal = max(abs(effect.mean), min_effect) / 2
    if half <= 0 or goal <= 0:
        return None
    n = math.ceil(effect.n * (half / goal) ** 2)
    return min(max(n, effect.n + 1), limit)


def decay_ratio(steps: list[int], values: list[float], *, start: int) -> float:
    """Late/early ratio of a probe series (an effective learning rate): the mean over the
    last fifth of the probes after ``start`` divided by the mean over the first fifth. ``start``
    skips an optimizer's warm-up (RMSProp's average of g² starts at zero, so its step size
    begins large and settles within a few 1/(1 − α) steps). NaN when undefined."""
    kept = [v for s, v in zip(steps, values) if s >= start]
    span = len(kept) // 5
    if span < 1 or any(_bad(v) or v <= 0 for v in kept):
        return math.nan
    return statistics.fmean(kept[-span:]) / statistics.fmean(kept[:span])


def decay_rule(ratio: float, *, factor: float = 3.0) -> str:
    """Classify a late/early ratio (:func:`decay_ratio`): ``decays`` (fell by more than
    ``factor``), ``controlled`` (within ``factor`` either way) or ``grows``."""
    if _bad(ratio) or ratio <= 0:
        return "undefined"
    if ratio < 1 / factor:
        return "decays"
    if ratio > factor:
        return "grows"
    return "controlled"
