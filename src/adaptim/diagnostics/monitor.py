r"""GradientMonitor: per-layer gradient statistics, a diagnosis and advice.

What is measured per layer (a module's own parameters; a multi-layer ``nn.RNN``/``LSTM``/``GRU``
is split into its ``l0, l1, ...`` layers), every ``every``-th optimizer step:

- ``grad_norm`` ‖g‖₂ and ``param_norm`` ‖θ‖₂ (over the layer's parameters together);
- ``rel_grad`` = ‖g‖ / ‖θ‖ (‖g‖ where ‖θ‖ = 0): the gradient relative to the weights, which
  makes layers of different sizes and initialisations comparable;
- ``zero_frac``: the share of gradient entries that are exactly 0 (dead ReLUs, unused rows);
- ``update_ratio`` = ‖Δθ‖ / ‖θ‖ of the optimizer step just taken (needs ``optimizer=``);
- for adaptive optimizers (state ``square_avg`` / ``exp_avg_sq`` / ``sum``): the per-coordinate
  effective step size η / (√v + ε) (η / √(v + ε) with ``eps_in_sqrt``, Adam's v̂ with bias
  correction, Adadelta's η √(u + ε) / √(v + ε)) as 5th/50th/95th percentiles, and
  ``eps_frac``: the share of coordinates where ε dominates the denominator (ε > √v̂, or
  ε > v̂ when ε sits inside the root). Both are computed on every coordinate of layers up to
  8,192 coordinates and on a fixed-stride sample of that many for larger layers.

Diagnosis (:meth:`GradientMonitor.check`), layers in registration order (input side first for
``nn.Sequential`` and for modules that create their layers in forward order), thresholds in
:class:`GradientThresholds`:

- ``"nonfinite"``: a gradient or parameter holds NaN/Inf;
- ``"exploding"``: some layer has ``rel_grad > exploding_ratio`` or
  ``rel_grad > exploding_spread × rel_grad`` of a layer after it (growth towards the input);
- ``"vanishing"``: some layer has ``rel_grad < vanishing_spread × rel_grad`` of a layer after it
  (shrinkage towards the input), or ``zero_frac >= dead_fraction`` (no gradient at all);
- the two depth comparisons skip normalization layers (BatchNorm, LayerNorm, GroupNorm,
  InstanceNorm), whose gains have relative gradients on another scale;
- else ``"healthy"``.

The monitor only reads tensors (norms, counts, a clone of the parameters on recorded steps to
measure the update); it never writes a gradient, parameter or state, and uses no random numbers,
so training with and without it is bit-identical.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import Tensor, nn

from adaptim._tensors import real_view

__all__ = ["GradientMonitor", "GradientReport", "GradientThresholds", "LayerStats"]

STATUSES = ("healthy", "vanishing", "exploding", "nonfinite")
# Quantiles of the effective step size are taken on at most this many coordinates per layer
# (a fixed stride, no randomness), which bounds the cost on large layers.
_QUANTILE_SAMPLE = 8192
_RNN_LAYER = re.compile(r"_l(\d+)(_reverse)?$")
_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardsigmoid, nn.Hardtanh, nn.Softsign, nn.LogSigmoid)
_RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU,
              nn.Mish, nn.RReLU, nn.CELU)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
          nn.modules.instancenorm._InstanceNorm)
_VANILLA_RNN = (nn.RNN, nn.RNNCell)
_GATED_RNN = (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)


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


@dataclass
class LayerStats:
    """One layer at one recorded step (see the module docstring for each quantity)."""

    layer: str
    kind: str
    numel: int
    grad_norm: float
    param_norm: float
    rel_grad: float
    zero_frac: float
    update_ratio: float | None = None
    eff_lr_p05: float | None = None
    eff_lr_p50: float | None = None
    eff_lr_p95: float | None = None
    eps_frac: float | None = None


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
        lines = [f"gradient health at step {self.step}: {self.status.upper()}"]
        if self.layers:
            shown = ", ".join(self.layers[:12]) + (" ..." if len(self.layers) > 12 else "")
            lines.append(f"  layers concerned ({len(self.layers)}): {shown}")
        lines += [f"  advice: {a}" for a in self.advice]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  {'layer':<24}{'kind':<12}{'|g|':>10}{'|g|/|w|':>10}{'zero%':>7}"
                     f"{'upd/|w|':>10}")
        for s in self.stats:
            upd = f"{s.update_ratio:10.1e}" if s.update_ratio is not None else f"{'-':>10}"
            lines.append(f"  {s.layer[:23]:<24}{s.kind[:11]:<12}{s.grad_norm:10.2e}"
                         f"{s.rel_grad:10.2e}{100 * s.zero_frac:7.1f}{upd}")
        return "\n".join(lines)


@dataclass
class _Layer:
    name: str
    kind: str
    module: nn.Module
    params: list[nn.Parameter]


def _layers_of(model: nn.Module) -> list[_Layer]:
    layers: list[_Layer] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        by_layer: dict[str, list[nn.Parameter]] = {}
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            m = _RNN_LAYER.search(p_name) if isinstance(module, nn.RNNBase) else None
            suffix = f"l{m.group(1)}{m.group(2) or ''}" if m else ""
            name = ".".join(x for x in (mod_name, suffix) if x) or type(module).__name__
            by_layer.setdefault(name, []).append(p)
        for name, params in by_layer.items():
            layers.append(_Layer(name, type(module).__name__, module, params))
    return layers


def _hp(group: dict, key: str, default):
    value = group.get(key, default)
    return float(value) if isinstance(value, Tensor) else value


def _effective_step(state: dict, group: dict) -> tuple[Tensor, Tensor] | None:
    """(per-coordinate effective step size, mask where ε dominates) from an adaptive
    optimizer's state, or None for a non-adaptive optimizer or an empty state."""
    lr, eps = _hp(group, "lr", 0.0), _hp(group, "eps", 0.0)
    eps_in_sqrt = bool(group.get("eps_in_sqrt", False))
    step = float(state["step"]) if "step" in state else 0.0
    if "exp_avg_sq" in state:  # Adam / AdamW
        v = state["max_exp_avg_sq"] if group.get("amsgrad") and "max_exp_avg_sq" in state \
            else state["exp_avg_sq"]
        v = real_view(v).float()
        beta2 = float(group.get("betas", (0.9, 0.999))[1])
        b2 = 1 - beta2 ** step if group.get("bias_correction", True) and step > 0 else 1.0
        if group.get("eps_hat", False):
            root = v.sqrt()
            return lr * math.sqrt(b2) / (root + eps), root < eps
        v_hat = v / b2
        if eps_in_sqrt:
            return lr / (v_hat + eps).sqrt(), v_hat < eps
        root = v_hat.sqrt()
        return lr / (root + eps), root < eps
    if "acc_delta" in state:  # Adadelta: ε inside both roots
        v, u = real_view(state["square_avg"]).float(), real_view(state["acc_delta"]).float()
        return lr * (u + eps).sqrt() / (v + eps).sqrt(), v < eps
    if "square_avg" in state:  # RMSprop (centered: v − ḡ²)
        v = real_view(state["square_avg"]).float()
        if group.get("centered") and state.get("grad_avg") is not None:
            v = v - real_view(state["grad_avg"]).float().square()
        if eps_in_sqrt:
            return lr / (v + eps).sqrt(), v < eps
        root = v.clamp(min=0).sqrt()
        return lr / (root + eps), root < eps
    if "sum" in state:  # Adagrad, with its learning-rate decay
        v = real_view(state["sum"]).float()
        clr = lr / (1 + max(step - 1, 0.0) * _hp(group, "lr_decay", 0.0))
        if eps_in_sqrt:
            return clr / (v + eps).sqrt(), v < eps
        root = v.sqrt()
        return clr / (root + eps), root < eps
    return None


def _sample(t: Tensor, limit: int) -> Tensor:
    flat = t.reshape(-1)
    stride = max(1, flat.numel() // max(limit, 1))
    return flat[::stride].contiguous()


class GradientMonitor:
    """Watch the gradients of ``model`` and say whether they vanish or explode.

    Args:
        model: the network (its parameters are grouped into layers by module).
        optimizer: optional. When given, the monitor records automatically through
            ``optimizer.register_step_pre_hook`` (gradients, after backward and any
            GradScaler unscaling) and ``register_step_post_hook`` (update-to-parameter ratio and
            the adaptive effective step size), on every ``every``-th step, counting from the
            first. Without it, call :meth:`record` after ``loss.backward()``.
        every: record every this many optimizer steps (default 10).
        thresholds: a :class:`GradientThresholds` (defaults documented there).
        max_history: keep at most this many records (oldest dropped); None keeps all.
        track_updates: measure ``update_ratio`` (default True). It keeps one copy of the
            parameters (allocated on the first recorded step, refreshed on recorded steps only);
            False saves that memory.

    Example::

        >>> monitor = adaptim.GradientMonitor(model, opt, every=10)
        >>> for x, y in data:
        ...     opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        >>> report = monitor.check()
        >>> print(report.status, report.layers, report.advice)
        >>> monitor.to_jsonl("grads.jsonl"); monitor.plot_heatmap("grads.png")
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 every: int = 10, thresholds: GradientThresholds | None = None,
                 max_history: int | None = None, track_updates: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got "
                            f"{type(optimizer).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Invalid every: {every!r} (must be an integer >= 1)")
        if thresholds is None:
            thresholds = GradientThresholds()
        if not isinstance(thresholds, GradientThresholds):
            raise TypeError("thresholds must be a GradientThresholds")
        if max_history is not None and (isinstance(max_history, bool)
                                        or not isinstance(max_history, int) or max_history < 1):
            raise ValueError(f"Invalid max_history: {max_history!r} (an integer >= 1 or None)")
        if not isinstance(track_updates, bool):
            raise TypeError(f"track_updates must be True or False, got {track_updates!r}")
        self.model = model
        self.optimizer = optimizer
        self.every = every
        self.thresholds = thresholds
        self.max_history = max_history
        self.layers = _layers_of(model)
        self._norm_layers = {layer.name for layer in self.layers
                             if isinstance(layer.module, _NORMS)}
        if not self.layers:
            raise ValueError("model has no trainable parameters to monitor")
        self.history: list[dict] = []
        self.steps_seen = 0
        self.track_updates = track_updates
        self._snapshot: list[Tensor] | None = None
        self._buffers: list[Tensor] | None = None
        self._pending: dict | None = None
        self._handles = []
        if optimizer is not None:
            self._handles = [optimizer.register_step_pre_hook(self._before_step),
                             optimizer.register_step_post_hook(self._after_step)]

    # ------------------------------------------------------------------ hooks
    def _before_step(self, optimizer, args, kwargs) -> None:
        if self.steps_seen % self.every == 0:
            self._pending = self.record(step=self.steps_seen, adaptive=False)
            if self.track_updates:
                # The update ratio needs θ before the step: copied into buffers allocated once
                # (re-allocating them each time costs more than the copy).
                with torch.no_grad():
                    params = [p.detach() for layer in self.layers for p in layer.params]
                    if self._buffers is None:
                        self._buffers = [torch.empty_like(p) for p in params]
                    torch._foreach_copy_(self._buffers, params)
                    self._snapshot = self._buffers
            else:
                self._snapshot = []
        self.steps_seen += 1

    def _after_step(self, optimizer, args, kwargs) -> None:
        if self._pending is None or self._snapshot is None:
            return
        record, before = self._pending, self._snapshot
        self._pending = self._snapshot = None
        if not before:  # track_updates=False
            self._adaptive_stats(record)
            return
        with torch.no_grad():
            params = [p.detach() for layer in self.layers for p in layer.params]
            old = torch._foreach_norm(before) if before else []
            if before:
                torch._foreach_sub_(before, params)  # the snapshot is ours: reuse it for Δθ
            deltas = torch._foreach_norm(before) if before else []
            values, i = [], 0
            for layer in self.layers:
                n = len(layer.params)
                values.append(torch.stack([d.double() ** 2 for d in deltas[i:i + n]]).sum().sqrt())
                values.append(torch.stack([o.double() ** 2 for o in old[i:i + n]]).sum().sqrt())
                i += n
            flat = torch.stack([v.cpu() for v in values]).tolist()
        # record["layers"] holds only the layers that had gradients: match by name
        by_layer = {layer.name: (flat[2 * k], flat[2 * k + 1])
                    for k, layer in enumerate(self.layers)}
        for stats in record["layers"]:
            delta, norm = by_layer[stats["layer"]]
            stats["update_ratio"] = delta / norm if norm > 0 else delta
        self._adaptive_stats(record)

    def close(self) -> None:
        """Remove the optimizer hooks (the history stays)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ recording
    @torch.no_grad()
    def record(self, step: int | None = None, *, adaptive: bool = True) -> dict:
        """Read the current gradients (call after ``loss.backward()``) and append a record to
        :attr:`history`: ``{"step": int, "layers": [LayerStats as dict, ...]}``. Layers without
        gradients are left out. Returns the record."""
        if step is None:
            step = self.steps_seen
        values: list[Tensor] = []
        present: list[tuple[_Layer, int]] = []
        for layer in self.layers:
            with_grad = [p for p in layer.params if p.grad is not None and not p.grad.is_sparse]
            if not with_grad:
                continue
            grads = [real_view(p.grad) for p in with_grad]
            params = [real_view(p.detach()) for p in with_grad]
            # Squares summed in float64 so a big layer's norm does not overflow float32.
            g2 = torch.stack([n.double() ** 2 for n in torch._foreach_norm(grads)]).sum()
            w2 = torch.stack([n.double() ** 2 for n in torch._foreach_norm(params)]).sum()
            nonzero = torch.stack([torch.count_nonzero(g) for g in grads]).sum().double()
            values += [g2.cpu(), w2.cpu(), nonzero.cpu()]
            present.append((layer, sum(g.numel() for g in grads)))
        flat = torch.stack(values).tolist() if values else []
        layers = []
        for k, (layer, numel) in enumerate(present):
            g2, w2, nonzero = flat[3 * k: 3 * k + 3]
            zeros = numel - nonzero
            gn, wn = math.sqrt(g2), math.sqrt(w2)
            layers.append(asdict(LayerStats(
                layer=layer.name, kind=layer.kind, numel=numel, grad_norm=gn, param_norm=wn,
                rel_grad=gn / wn if wn > 0 else gn, zero_frac=zeros / numel if numel else 0.0)))
        record = {"step": int(step), "layers": layers}
        if adaptive:
            self._adaptive_stats(record)
        self.history.append(record)
        if self.max_history is not None and len(self.history) > self.max_history:
            del self.history[: len(self.history) - self.max_history]
        return record

    @torch.no_grad()
    def _adaptive_stats(self, record: dict) -> None:
        opt = self.optimizer
        if opt is None:
            return
        group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
        by_name = {s["layer"]: s for s in record["layers"]}
        for layer in self.layers:
            stats = by_name.get(layer.name)
            if stats is None:
                continue
            samples, dominated, total = [], 0.0, 0
            limit = _QUANTILE_SAMPLE // len(layer.params)
            for p in layer.params:
                state, group = opt.state.get(p), group_of.get(id(p))
                if not state or group is None:
                    continue
                # Work on a strided sample of the coordinates (every one for small tensors):
                # the cost stays bounded however large the layer.
                sampled = {k: (_sample(real_view(v), limit) if isinstance(v, Tensor) and v.ndim > 0
                               else v) for k, v in state.items()}
                found = _effective_step(sampled, group)
                if found is None:
                    continue
                eff, eps_mask = found
                samples.append(eff)
                dominated += float(eps_mask.sum())
                total += eps_mask.numel()
            if not samples:
                continue
            # numpy's partition-based percentile: same linear interpolation as torch.quantile,
            # several times faster (torch.quantile sorts)
            q = np.percentile(torch.cat(samples).double().cpu().numpy(), [5, 50, 95]).tolist()
            stats.update(eff_lr_p05=q[0], eff_lr_p50=q[1], eff_lr_p95=q[2],
                         eps_frac=dominated / total if total else 0.0)

    # ------------------------------------------------------------------ diagnosis
    def check(self, record: dict | None = None) -> GradientReport:
        """Diagnose the latest record (recording the current gradients first if there is none
        yet), or ``record`` if given. See the module docstring for the rules."""
        if record is None:
            record = self.history[-1] if self.history else self.record()
        stats = [LayerStats(**s) for s in record["layers"]]
        t = self.thresholds
        kinds = {s.layer: s.kind for s in stats}
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
        weighted = [s for s in finite if s.layer not in self._norm_layers]
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
        advice = self._advice(status, concerned, stats, kinds)
        return GradientReport(status=status, step=record["step"], layers=concerned,
                              advice=advice, notes=self._notes(stats), stats=stats)

    def _model_traits(self) -> dict:
        mods = list(self.model.modules())
        vanilla = [m for m in mods if isinstance(m, _VANILLA_RNN)]
        return dict(
            saturating=any(isinstance(m, _SATURATING) for m in mods)
            or any(getattr(m, "nonlinearity", "") == "tanh" for m in vanilla),
            relu=any(isinstance(m, _RELU_LIKE) for m in mods),
            norm=any(isinstance(m, _NORMS) for m in mods),
            vanilla_rnn=bool(vanilla),
            gated_rnn=any(isinstance(m, _GATED_RNN) for m in mods))

    def _advice(self, status: str, concerned: list[str], stats: list[LayerStats],
                kinds: dict[str, str]) -> list[str]:
        if status == "healthy":
            return []
        traits = self._model_traits()
        recurrent = any(kinds.get(name) in ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell",
                                            "GRUCell") for name in concerned)
        advice: list[str] = []
        if status == "nonfinite":
            advice.append(
                "NaN/Inf in the gradients of " + ", ".join(concerned[:5]) + ": find the first "
                "step where it appears (monitor history) and look for log(0), division by zero "
                "or overflowing exp. To ride over rare overflows, build the optimizer with "
                "on_nonfinite='skip' (skips the step, counts optimizer.skipped_steps); with "
                "fp16 autocast use torch.amp.GradScaler.")
            advice.append("If gradient norms were growing before the NaN it is an explosion: "
                          "clip (max_grad_norm=1.0) and lower the learning rate.")
            return advice
        if status == "exploding":
            if recurrent or traits["vanilla_rnn"]:
                advice.append(
                    "Recurrent explosion (gradients grow through time; Pascanu et al. 2013): "
                    "clip the gradient norm — max_grad_norm=1.0 in the adaptim optimizer, or "
                    "adaptim.clip_grad_norm_(model.parameters(), 1.0) before step() — and lower "
                    "the learning rate.")
                if traits["vanilla_rnn"]:
                    advice.append(
                        "A vanilla RNN over long sequences multiplies the gradient by W_hh at "
                        "every time step: an LSTM or GRU (nn.LSTM / nn.GRU) keeps it in range; "
                        "or initialise W_hh orthogonal with spectral radius <= 1.")
            else:
                advice.append(
                    "Gradients grow towards the input: the initialisation is too large for the "
                    "depth — use Xavier (tanh/sigmoid) or He (ReLU) initialisation.")
                advice.append(
                    "Clip the gradient norm (max_grad_norm=1.0 or adaptim.clip_grad_norm_), "
                    "lower the learning rate, and consider L2 weight decay to keep weights small.")
            return advice
        # vanishing
        dead = [s.layer for s in stats if s.layer in concerned
                and s.zero_frac >= self.thresholds.dead_fraction]
        if traits["saturating"] and not recurrent:
            advice.append(
                "Sigmoid/tanh saturate (σ' <= 0.25) and the gradient shrinks by that factor at "
                "every layer: use ReLU hidden activations with He initialisation "
                "(nn.init.kaiming_normal_(w, nonlinearity='relu')), or add batch normalization "
                "(nn.BatchNorm1d) after each linear layer.")
        elif traits["relu"] and not recurrent:
            advice.append(
                "ReLU with PyTorch's default init (variance 1/(3·fan_in), too small for ReLU) "
                "shrinks the gradient at every layer: use He initialisation "
                "(nn.init.kaiming_normal_(w, nonlinearity='relu')) and/or batch normalization.")
        if recurrent or traits["vanilla_rnn"]:
            advice.append(
                "A vanilla RNN over long sequences loses the gradient through time: use an LSTM "
                "or GRU (nn.LSTM / nn.GRU), whose gated cell state carries it.")
        if dead:
            advice.append(
                "No gradient at all in " + ", ".join(dead[:5]) + " (every entry exactly 0): "
                "dead ReLUs or a layer cut off from the loss — lower the learning rate, try "
                "LeakyReLU, check that the layer is used in forward().")
        if not advice:
            advice.append("Gradients shrink towards the input: use an initialisation matched "
                          "to the activation (Xavier for tanh, He for ReLU), normalization layers "
                          "or residual connections.")
        if not traits["norm"] and not recurrent:
            advice.append("The model has no normalization layer: batch normalization keeps "
                          "each layer's input scale, and so its gradient, in range.")
        return advice

    def _notes(self, stats: list[LayerStats]) -> list[str]:
        t, notes = self.thresholds, []
        eps_heavy = [s.layer for s in stats if s.eps_frac is not None
                     and s.eps_frac > t.eps_note_fraction]
        if eps_heavy:
            notes.append(
                f"ε dominates the adaptive denominator in more than {t.eps_note_fraction:.0%} "
                "of the coordinates of " + ", ".join(eps_heavy[:5]) + ": the step there is "
                "about lr/ε, not adaptive (gradients tiny compared with ε).")
        clip = getattr(self.optimizer, "defaults", {}).get("max_grad_norm")
        if clip is not None:
            notes.append(f"the optimizer clips the global gradient norm to {clip:g} inside "
                         "step(): the norms above are before clipping, the updates after it.")
        lo, hi = t.update_ratio_range
        big = [s.layer for s in stats if s.update_ratio is not None and s.update_ratio > hi]
        small = [s.layer for s in stats if s.update_ratio is not None
                 and s.update_ratio < lo]
        if big:
            notes.append(f"update/weight ratio above {hi:g} in " + ", ".join(big[:5])
                         + ": the learning rate may be too high.")
        if small:
            notes.append(f"update/weight ratio below {lo:g} in " + ", ".join(small[:5])
                         + ": these layers barely move.")
        return notes

    # ------------------------------------------------------------------ export
    def rows(self) -> list[dict]:
        """The history flattened: one dict per (step, layer)."""
        return [{"step": r["step"], **s} for r in self.history for s in r["layers"]]

    def to_jsonl(self, path) -> None:
        """Write the history as JSON Lines, one record (step + its layers) per line.
        Non-finite numbers are written as the strings "nan", "inf", "-inf"."""
        def clean(v):
            return v if not isinstance(v, float) or math.isfinite(v) else str(v)
        with open(path, "w", encoding="utf-8") as fh:
            for r in self.history:
                layers = [{k: clean(v) for k, v in s.items()} for s in r["layers"]]
                fh.write(json.dumps({"step": r["step"], "layers": layers}) + "\n")

    def to_csv(self, path) -> None:
        """Write the history as CSV, one row per (step, layer); empty cells for missing values."""
        columns = ["step"] + [f.name for f in fields(LayerStats)]
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in self.rows():
                writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})

    def to_tensorboard(self, log_dir=None, writer=None, prefix: str = "gradients") -> None:
        """Write the history as TensorBoard scalars (``{prefix}/grad_norm/{layer}``, ...)
        through :mod:`torch.utils.tensorboard`. Needs the optional ``tensorboard`` package
        (not an adaptim dependency): ImportError with instructions if it is missing."""
        own = writer is None
        if own:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # tensorboard is optional
                raise ImportError("to_tensorboard needs the 'tensorboard' package "
                                  "(pip install tensorboard); to_jsonl/to_csv need nothing"
                                  ) from err
            writer = SummaryWriter(log_dir=log_dir)
        for row in self.rows():
            for key in ("grad_norm", "param_norm", "rel_grad", "zero_frac", "update_ratio",
                        "eff_lr_p50", "eps_frac"):
                if row.get(key) is not None:
                    writer.add_scalar(f"{prefix}/{key}/{row['layer']}", row[key], row["step"])
        if own:
            writer.close()

    def plot_heatmap(self, path=None, *, title: str | None = None):
        """A layers × steps heatmap of log10 gradient norm (matplotlib, imported only here);
        the layers that :meth:`check` flags on the latest record are named in red. Saves to
        ``path`` if given; returns the figure."""
        from adaptim.diagnostics._plot import gradient_heatmap
        flagged = self.check().layers if self.history else None
        return gradient_heatmap(self.history, path=path, title=title, highlight=flagged)
