r"""Collecting: which parameters form a layer, the optimizer hooks, and the per-layer statistics
of one recorded step (plain dicts of :class:`LayerStats` fields, appended to a history).

Per layer (a module's own parameters; a multi-layer ``nn.RNN``/``LSTM``/``GRU`` is split into
its ``l0, l1, ...`` layers):

- ``grad_norm`` ‖g‖₂ and ``param_norm`` ‖θ‖₂ (over the layer's parameters together);
- ``rel_grad`` = ‖g‖ / ‖θ‖ (‖g‖ where ‖θ‖ = 0): the gradient relative to the weights, which
  makes layers of different sizes and initialisations comparable;
- ``zero_frac``: the share of gradient entries that are exactly 0 (dead ReLUs, unused rows);
- ``update_ratio`` = ‖Δθ‖ / ‖θ‖ of the optimizer step just taken (needs the optimizer hooks);
- for adaptive optimizers (state ``square_avg`` / ``exp_avg_sq`` / ``sum``): the per-coordinate
  effective step size η / (√v + ε) (η / √(v + ε) with ``eps_in_sqrt``, Adam's v̂ with bias
  correction, Adadelta's η √(u + ε) / √(v + ε)) as 5th/50th/95th percentiles, and
  ``eps_frac``: the share of coordinates where ε dominates the denominator (ε > √v̂, or
  ε > v̂ when ε sits inside the root). Both are computed on every coordinate of layers up to
  8,192 coordinates and on a fixed-stride sample of that many for larger layers.

Everything here only reads tensors (norms, counts, a copy of the parameters on recorded steps
to measure the update); it writes no gradient, parameter or state and draws no random numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from adaptim._tensors import real_view
from adaptim.algorithms import for_state

__all__ = ["Collector", "Layer", "LayerStats", "layers_of"]

# Quantiles of the effective step size are taken on at most this many coordinates per layer
# (a fixed stride, no randomness), which bounds the cost on large layers.
_QUANTILE_SAMPLE = 8192
_RNN_LAYER = re.compile(r"_l(\d+)(_reverse)?$")


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
class Layer:
    """The parameters watched together: a module's own, or one layer of a multi-layer RNN."""

    name: str
    kind: str
    module: nn.Module
    params: list[nn.Parameter]


def layers_of(model: nn.Module) -> list[Layer]:
    """The model's trainable parameters grouped into layers, in registration order."""
    layers: list[Layer] = []
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
            layers.append(Layer(name, type(module).__name__, module, params))
    return layers


def _sample(t: Tensor, limit: int) -> Tensor:
    flat = t.reshape(-1)
    stride = max(1, flat.numel() // max(limit, 1))
    return flat[::stride].contiguous()


@torch.no_grad()
def gradient_stats(layers: list[Layer], step: int) -> dict:
    """``{"step": step, "layers": [LayerStats as dict, ...]}`` from the current gradients;
    layers without gradients are left out."""
    values: list[Tensor] = []
    present: list[tuple[Layer, int]] = []
    for layer in layers:
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
    stats = []
    for k, (layer, numel) in enumerate(present):
        g2, w2, nonzero = flat[3 * k: 3 * k + 3]
        gn, wn = math.sqrt(g2), math.sqrt(w2)
        stats.append(asdict(LayerStats(
            layer=layer.name, kind=layer.kind, numel=numel, grad_norm=gn, param_norm=wn,
            rel_grad=gn / wn if wn > 0 else gn,
            zero_frac=(numel - nonzero) / numel if numel else 0.0)))
    return {"step": int(step), "layers": stats}


@torch.no_grad()
def add_adaptive_stats(record: dict, layers: list[Layer], optimizer) -> None:
    """Add the effective-step percentiles and ``eps_frac`` to ``record`` from the optimizer's
    state (layers whose optimizer keeps no adaptive state are left as they are)."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    by_name = {s["layer"]: s for s in record["layers"]}
    for layer in layers:
        stats = by_name.get(layer.name)
        if stats is None:
            continue
        samples, dominated, total = [], 0.0, 0
        limit = _QUANTILE_SAMPLE // len(layer.params)
        for p in layer.params:
            state, group = optimizer.state.get(p), group_of.get(id(p))
            if not state or group is None:
                continue
            # Work on a strided sample of the coordinates (every one for small tensors):
            # the cost stays bounded however large the layer.
            sampled = {k: (_sample(real_view(v), limit) if isinstance(v, Tensor) and v.ndim > 0
                           else v) for k, v in state.items()}
            spec = for_state(sampled, optimizer)
            found = None if spec is None else spec.effective_step(sampled, group)
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


class Collector:
    """Records per-layer statistics into :attr:`history`, by hand (:meth:`record`) or from an
    optimizer's step hooks on every ``every``-th step: gradients before the step (after
    backward and any GradScaler unscaling), the update and the adaptive state after it."""

    def __init__(self, model: nn.Module, optimizer=None, *, every: int = 10,
                 max_history: int | None = None, track_updates: bool = True) -> None:
        self.layers = layers_of(model)
        if not self.layers:
            raise ValueError("model has no trainable parameters to monitor")
        self.optimizer = optimizer
        self.every = every
        self.max_history = max_history
        self.track_updates = track_updates
        self.history: list[dict] = []
        self.steps_seen = 0
        self.buffers: list[Tensor] | None = None  # θ before a recorded step (track_updates)
        self._snapshot: list[Tensor] | None = None
        self._pending: dict | None = None
        self._handles = []
        if optimizer is not None:
            self._handles = [optimizer.register_step_pre_hook(self._before_step),
                             optimizer.register_step_post_hook(self._after_step)]

    def record(self, step: int | None = None, *, adaptive: bool = True) -> dict:
        record = gradient_stats(self.layers, self.steps_seen if step is None else step)
        if adaptive and self.optimizer is not None:
            add_adaptive_stats(record, self.layers, self.optimizer)
        self.history.append(record)
        if self.max_history is not None and len(self.history) > self.max_history:
            del self.history[: len(self.history) - self.max_history]
        return record

    def _params(self) -> list[Tensor]:
        return [p.detach() for layer in self.layers for p in layer.params]

    def _before_step(self, optimizer, args, kwargs) -> None:
        if self.steps_seen % self.every == 0:
            self._pending = self.record(step=self.steps_seen, adaptive=False)
            if self.track_updates:
                # θ before the step, copied into buffers allocated once (re-allocating them
                # each time costs more than the copy)
                with torch.no_grad():
                    params = self._params()
                    if self.buffers is None:
                        self.buffers = [torch.empty_like(p) for p in params]
                    torch._foreach_copy_(self.buffers, params)
                    self._snapshot = self.buffers
            else:
                self._snapshot = []
        self.steps_seen += 1

    def _after_step(self, optimizer, args, kwargs) -> None:
        if self._pending is None or self._snapshot is None:
            return
        record, before = self._pending, self._snapshot
        self._pending = self._snapshot = None
        if before:
            self._add_update_ratios(record, before)
        add_adaptive_stats(record, self.layers, self.optimizer)

    @torch.no_grad()
    def _add_update_ratios(self, record: dict, before: list[Tensor]) -> None:
        params = self._params()
        old = torch._foreach_norm(before)
        torch._foreach_sub_(before, params)  # the snapshot is ours: reuse it for Δθ
        deltas = torch._foreach_norm(before)
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

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
