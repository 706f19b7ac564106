"""Gradient guards that run inside ``step()`` before any state is touched: clipping
(``max_grad_norm``) and the non-finite policy (``on_nonfinite``).

Both options are optimizer-wide: they are read from ``optimizer.defaults`` (the constructor's
arguments) and apply to the gradients of every parameter group together; a parameter group
that sets a different value is refused with ValueError. Order inside ``step()``: closure ->
non-finite check -> global-norm clipping -> update.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adaptim._tensors import real_view
from adaptim.clip import clip_coefficient, total_grad_norm
from adaptim.diagnostics.errors import NonFiniteGradientError

__all__ = ["before_update", "nonfinite_offenders"]


def _dense(grad: Tensor) -> Tensor:
    """The gradient's entries: a sparse gradient's coalesced values (duplicates summed)."""
    return grad.coalesce()._values() if grad.is_sparse else grad


def _gradients(optimizer) -> list[Tensor]:
    return [_dense(p.grad) for group in optimizer.param_groups for p in group["params"]
            if p.grad is not None]


def nonfinite_offenders(optimizer) -> list[tuple[int, int, str | None, int, int]]:
    """``(group_index, param_index, name, nan_count, inf_count)`` for every parameter whose
    gradient holds NaN or Inf; ``name`` from ``group["param_names"]`` when the optimizer was
    built from ``named_parameters()``, else None."""
    found = []
    for gi, group in enumerate(optimizer.param_groups):
        names = group.get("param_names")
        for pi, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            g = real_view(_dense(g))
            n_nan, n_inf = int(torch.isnan(g).sum()), int(torch.isinf(g).sum())
            if n_nan or n_inf:
                found.append((gi, pi, names[pi] if names else None, n_nan, n_inf))
    return found


def before_update(optimizer) -> float | None:
    """Decide what this step does with the current gradients.

    Returns ``None`` to skip the step entirely (no parameter, no state changes), otherwise the
    factor every gradient is multiplied by before the update (1.0: unchanged). The fused path
    applies the factor inside its kernel; the unfused path multiplies the gradients in place.

    - ``on_nonfinite="propagate"`` (default, torch's behaviour): no check.
    - ``"skip"``: if any gradient holds NaN/Inf, return None and count
      ``optimizer.skipped_steps``.
    - ``"raise"``: raise :class:`adaptim.NonFiniteGradientError` naming the parameters.
    - ``max_grad_norm=c``: factor ``min(c / (‖g‖₂ + 1e-6), 1)`` over all gradients of all
      groups, exactly what ``torch.nn.utils.clip_grad_norm_(params, c)`` multiplies by.

    Cost when either option is set: one reduction over the gradients and one host
    synchronisation (the skip decision and the float factor need the value on the host).
    """
    defaults = optimizer.defaults
    max_norm = defaults.get("max_grad_norm")
    policy = defaults.get("on_nonfinite", "propagate")
    if max_norm is None and policy == "propagate":
        return 1.0
    grads = _gradients(optimizer)
    if not grads:
        return 1.0
    total = total_grad_norm(grads, 2.0) if max_norm is not None else None
    if policy != "propagate":
        # A finite L2 norm proves every entry finite; an infinite one may be overflow of the
        # squares of finite values, so only then look at max |g| (NaN/Inf-propagating).
        total_value = float(total) if total is not None else math.nan
        finite = math.isfinite(total_value) or math.isfinite(
            float(total_grad_norm(grads, math.inf)))
        if not finite:
            if policy == "raise":
                raise NonFiniteGradientError(nonfinite_offenders(optimizer))
            optimizer.skipped_steps = getattr(optimizer, "skipped_steps", 0) + 1
            return None
    if max_norm is None:
        return 1.0
    return float(clip_coefficient(float(max_norm), total))
