r"""Diagnosing: pure functions from per-layer statistics to a verdict.

Layers in registration order (input side first for ``nn.Sequential`` and for modules that
create their layers in forward order), thresholds in :class:`GradientThresholds`:

- ``"nonfinite"``: a gradient or parameter holds NaN/Inf;
- ``"exploding"``: some layer has ``rel_grad > exploding_ratio`` or
  ``rel_grad > exploding_spread × rel_grad`` of a layer after it (growth towards the input);
- ``"vanishing"``: some layer has ``rel_grad < vanishing_spread × rel_grad`` of a layer after it
  (shrinkage towards the input), or ``zero_frac >= dead_fraction`` (no gradient at all);
- the two depth comparisons skip normalization layers (BatchNorm, LayerNorm, GroupNorm,
  InstanceNorm), whose gains have relative gradients on another scale;
- else ``"healthy"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from adaptim.diagnostics.collect import LayerStats
from adaptim.diagnostics.export import render_report

__all__ = ["STATUSES", "GradientReport", "GradientThresholds", "ModelTraits", "Verdict",
           "diagnose", "model_traits", "notes"]

STATUSES = ("healthy", "vanishing", "exploding", "nonfinite")
_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardsigmoid, nn.Hardtanh, nn.Softsign, nn.LogSigmoid)
_RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU,
              nn.Mish, nn.RReLU, nn.CELU)
NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
         nn.modules.instancenorm._InstanceNorm)
_VANILLA_RNN = (nn.RNN, nn.RNNCell)
_GATED_RNN = (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)
RECURRENT_KINDS = frozenset({"RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"})


@dataclass(frozen=True)
class GradientThresholds:
    """Where :meth:`GradientMonitor.check` draws its lines. Defaults measured with
    ``benchmarks/gradient_health_thresholds.py`` (numbers in the README, "Gradient health"):

    - ``vanishing_spread=1e-3``: healthy nets (ReLU+He, BN, LSTM/GRU; depth 4-20; at init and
      after 100 steps) kept min/max ``rel_grad`` across layers >= 1.3e-2; deep sigmoid nets
      went to 1e-4 (depth 4) ... 1e-18 (depth 20).
    - ``exploding_spread=1e3``: the largest input-side/output-side ``rel_grad`` ratio seen in
      healthy nets was 8.3; a tanh RNN with ``W_hh`` = 2·orthogonal over 100 steps gave 3e4.
    - ``exploding_ratio=100``: healthy layers had ``rel_grad`` <= 5.7; exploding ones 80..1e11.
    - ``dead_fraction=1.0``: a layer whose gradient entries are *all* exactly zero gets no
      gradient ("vanishing"); ``nn.Embedding`` layers are exempt (unused rows are zero).
    - ``eps_note_fraction=0.5``: a note (not a status) when ε dominates the adaptive
      denominator in more than half of a layer's coordinates.
    - ``update_ratio_range=(1e-6, 1e-1)``: a note when ‖Δθ‖/‖θ‖ leaves this range (updates near
      1e-3 of the weights are the usual rule of thumb).
    """

    vanishing_spread: float = 1e-3
    exploding_spread: float = 1e3
    exploding_ratio: float = 100.0
    dead_fraction: float = 1.0
    eps_note_fraction: float = 0.5
    update_ratio_range: tuple[float, float] = (1e-6, 1e-1)

    def __post_init__(self) -> None:
        def positive(name, v, upper=None):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v <= 0 or (upper is not None and v > upper):
                bound = f" and <= {upper}" if upper is not None else ""
                raise ValueError(f"Invalid {name}: {v!r} (must be a finite number > 0{bound})")
        positive("vanishing_spread", self.vanishing_spread, 1.0)
        positive("exploding_spread", self.exploding_spread)
        if self.exploding_spread < 1:
            raise ValueError(f"Invalid exploding_spread: {self.exploding_spread!r} (must be >= 1)")
        positive("exploding_ratio", self.exploding_ratio)
        positive("dead_fraction", self.dead_fraction, 1.0)
        positive("eps_note_fraction", self.eps_note_fraction, 1.0)
        lo_hi = self.update_ratio_range
        if not (isinstance(lo_hi, tuple) and len(lo_hi) == 2 and 0 <= lo_hi[0] < lo_hi[1]):
            raise ValueError(f"Invalid update_ratio_range: {lo_hi!r} (a pair 0 <= low < high)")


@dataclass(frozen=True)
class ModelTraits:
    """What the model is built from, as far as the advice cares."""

    saturating: bool = False
    relu: bool = False
    norm: bool = False
    vanilla_rnn: bool = False
    gated_rnn: bool = False


def model_traits(model: nn.Module) -> ModelTraits:
    mods = list(model.modules())
    vanilla = [m for m in mods if isinstance(m, _VANILLA_RNN)]
    return ModelTraits(
        saturating=any(isinstance(m, _SATURATING) for m in mods)
        or any(getattr(m, "nonlinearity", "") == "tanh" for m in vanilla),
        relu=any(isinstance(m, _RELU_LIKE) for m in mods),
        norm=any(isinstance(m, NORMS) for m in mods),
        vanilla_rnn=bool(vanilla),
        gated_rnn=any(isinstance(m, _GATED_RNN) for m in mods))


@dataclass(frozen=True)
class Verdict:
    """``status`` and the layers concerned, input side first; ``dead``: the concerned layers
    with no gradient at all."""

    status: str
    layers: list[str]
    dead: list[str]


def diagnose(stats: list[LayerStats], thresholds: GradientThresholds,
             norm_layers: frozenset[str] | set[str] = frozenset()) -> Verdict:
    """The verdict on one record's statistics (rules in the module docstring).
    ``norm_layers`` names the normalization layers left out of the depth comparisons."""
    t = thresholds
    nonfinite = [s.layer for s in stats
                 if not (math.isfinite(s.grad_norm) and math.isfinite(s.param_norm))]
    finite = [s for s in stats if s.layer not in nonfinite]
    exploding, vanishing = set(), set()
    for s in finite:
        if s.rel_grad > t.exploding_ratio:
            exploding.add(s.layer)
        if s.zero_frac >= t.dead_fraction and s.kind != "Embedding":
            vanishing.add(s.layer)
    # Depth comparisons between weight layers only: a normalization layer's gain (≈ 1)
    # has a relative gradient on another scale (measured ~30× below its Linear neighbours).
    weighted = [s for s in finite if s.layer not in norm_layers]
    rel = [s.rel_grad for s in weighted]
    for i, s in enumerate(weighted):
        after = rel[i + 1:]
        if after:
            if s.rel_grad > t.exploding_spread * min(after):
                exploding.add(s.layer)
            if s.rel_grad < t.vanishing_spread * max(after):
                vanishing.add(s.layer)
    if nonfinite:
        status, concerned = "nonfinite", nonfinite
    elif exploding:
        status, concerned = "exploding", [s.layer for s in finite if s.layer in exploding]
    elif vanishing:
        status, concerned = "vanishing", [s.layer for s in finite if s.layer in vanishing]
    else:
        status, concerned = "healthy", []
    dead = [s.layer for s in stats if s.layer in concerned and s.zero_frac >= t.dead_fraction]
    return Verdict(status, concerned, dead if status == "vanishing" else [])


def notes(stats: list[LayerStats], thresholds: GradientThresholds,
          clip: float | None = None) -> list[str]:
    """Observations that are not a status: ε dominating the adaptive denominator, update
    ratios outside ``update_ratio_range``, clipping inside the step (``clip``)."""
    t, out = thresholds, []
    eps_heavy = [s.layer for s in stats if s.eps_frac is not None
                 and s.eps_frac > t.eps_note_fraction]
    if eps_heavy:
        out.append(
            f"ε dominates the adaptive denominator in more than {t.eps_note_fraction:.0%} "
            "of the coordinates of " + ", ".join(eps_heavy[:5]) + ": the step there is "
            "about lr/ε, not adaptive (gradients tiny compared with ε).")
    if clip is not None:
        out.append(f"the optimizer clips the global gradient norm to {clip:g} inside "
                   "step(): the norms above are before clipping, the updates after it.")
    lo, hi = t.update_ratio_range
    big = [s.layer for s in stats if s.update_ratio is not None and s.update_ratio > hi]
    small = [s.layer for s in stats if s.update_ratio is not None and s.update_ratio < lo]
    if big:
        out.append(f"update/weight ratio above {hi:g} in " + ", ".join(big[:5])
                   + ": the learning rate may be too high.")
    if small:
        out.append(f"update/weight ratio below {lo:g} in " + ", ".join(small[:5])
                   + ": these layers barely move.")
    return out


@dataclass
class GradientReport:
    """The diagnosis of one recorded step: ``status`` (one of ``healthy``, ``vanishing``,
    ``exploding``, ``nonfinite``), the ``layers`` concerned, ``advice`` matched to what was
    seen, informational ``notes``, and the per-layer ``stats``."""

    status: str
    step: int
    layers: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: list[LayerStats] = field(default_factory=list)

    def __str__(self) -> str:
        return render_report(self)
