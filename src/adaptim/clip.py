r"""Gradient clipping: by global norm, by value, and unit-wise adaptive clipping (AGC).

``clip_grad_norm_`` and ``clip_grad_value_`` take the same arguments and give bit-for-bit the same
result as :func:`torch.nn.utils.clip_grad_norm_` / :func:`torch.nn.utils.clip_grad_value_`
(same per-(device, dtype) foreach grouping, same ``1e-6`` guard); unlike torch they refuse a
negative or NaN threshold with a ValueError. The norm is returned as a 0-d tensor computed on
the gradients' device: no host synchronisation unless ``error_if_nonfinite=True``.

Remedy for exploding gradients (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
recurrent neural networks"). To clip inside ``optimizer.step()`` instead, pass
``max_grad_norm=`` to any adaptim optimizer.
"""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Iterable
from numbers import Real

import torch
from torch import Tensor
from torch.utils._foreach_utils import (
    _device_has_foreach_support,
    _group_tensors_by_device_and_dtype,
    _has_foreach_support,
)

__all__ = ["adaptive_clip_grad_", "clip_grad_norm_", "clip_grad_value_", "total_grad_norm"]

# torch.nn.utils.clip_grad_norm_ divides by (total_norm + 1e-6); kept identical for parity.
_NORM_GUARD = 1e-6


def _as_list(parameters) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def _check_threshold(name: str, value) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be a number >= 0)")
    return value


def _check_norm_type(norm_type) -> float:
    if isinstance(norm_type, bool) or not isinstance(norm_type, Real):
        raise TypeError(f"norm_type must be a real number or inf, got {norm_type!r}")
    norm_type = float(norm_type)
    if not norm_type > 0:  # also refuses NaN
        raise ValueError(f"Invalid norm_type: {norm_type!r} (must be > 0, or inf)")
    return norm_type


def _use_foreach(tensors: list[Tensor], device: torch.device, foreach: bool | None) -> bool:
    if foreach is None:
        return _has_foreach_support(tensors, device)
    if foreach and not _device_has_foreach_support(device):
        raise RuntimeError(f"foreach=True was passed, but can't use the foreach API on "
                           f"{device.type} tensors")
    return bool(foreach)


@torch.no_grad()
def total_grad_norm(tensors: Iterable[Tensor] | Tensor, norm_type: float = 2.0,
                    foreach: bool | None = None) -> Tensor:
    r"""The p-norm of ``tensors`` seen as one concatenated vector:
    ``‖(‖t₁‖_p, …, ‖t_n‖_p)‖_p`` — torch.nn.utils.get_total_norm's algorithm. A 0-d tensor on
    the first tensor's device (``tensor(0.)`` for an empty list); no host synchronisation."""
    tensors = _as_list(tensors)
    norm_type = _check_norm_type(norm_type)
    if not tensors:
        return torch.tensor(0.0)
    first_device = tensors[0].device
    norms: list[Tensor] = []
    for (device, _), ([group], _) in _group_tensors_by_device_and_dtype([tensors]).items():
        if _use_foreach(group, device, foreach):
            norms.extend(torch._foreach_norm(group, norm_type))
        else:
            norms.extend(torch.linalg.vector_norm(t, norm_type) for t in group)
    return torch.linalg.vector_norm(torch.stack([n.to(first_device) for n in norms]), norm_type)


def clip_coefficient(max_norm: float, total_norm: Tensor) -> Tensor:
    """``min(max_norm / (total_norm + 1e-6), 1)`` as a 0-d tensor (torch's formula)."""
    return torch.clamp(max_norm / (total_norm + _NORM_GUARD), max=1.0)


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> Tensor:
    r"""Clip the gradients of ``parameters`` so that their global norm is at most ``max_norm``.

    ``n = ‖(‖g₁‖_p, …, ‖g_k‖_p)‖_p ;  gᵢ ← gᵢ · min(max_norm / (n + 1e-6), 1)``

    Same signature and result as :func:`torch.nn.utils.clip_grad_norm_`. Returns the total norm
    *before* clipping as a 0-d tensor on the gradients' device (the scaling is a tensor op, so
    nothing waits for the device unless ``error_if_nonfinite=True``). A NaN/Inf norm scales every
    gradient to NaN, as torch does; ``error_if_nonfinite=True`` raises RuntimeError instead.

    Example::

        >>> loss.backward()
        >>> norm = adaptim.clip_grad_norm_(model.parameters(), max_norm=1.0)
        >>> opt.step()
    """
    max_norm = _check_threshold("max_norm", max_norm)
    is_generator = isinstance(parameters, types.GeneratorType)
    parameters = _as_list(parameters)
    if is_generator and not parameters:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.",
                      stacklevel=2)
    grads = [p.grad for p in parameters if p.grad is not None]
    total_norm = total_grad_norm(grads, norm_type, foreach)
    if error_if_nonfinite and torch.logical_or(total_norm.isnan(), total_norm.isinf()):
        raise RuntimeError(
            f"The total norm of order {float(norm_type)} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the gradients "
            "by the non-finite norm anyway, set `error_if_nonfinite=False`")
    if not grads:
        return total_norm
    coef = clip_coefficient(max_norm, total_norm)
    for (device, _), ([group], _) in _group_tensors_by_device_and_dtype([grads]).items():
        coef_here = coef.to(device)
        if _use_foreach(group, device, foreach):
            torch._foreach_mul_(group, coef_here)
        else:
            for g in group:
                g.mul_(coef_here)
    return total_norm


@torch.no_grad()
def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float,
                     foreach: bool | None = None) -> None:
    r"""Clamp every gradient entry into ``[-clip_value, clip_value]`` in place.

    Same signature and result as :func:`torch.nn.utils.clip_grad_value_` (returns None). NaN
    entries stay NaN. Unlike torch, a negative or NaN ``clip_value`` raises ValueError.
    """
    clip_value = _check_threshold("clip_value", clip_value)
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return
    for (device, _), ([group], _) in _group_tensors_by_device_and_dtype([grads]).items():
        if _use_foreach(group, device, foreach):
            torch._foreach_clamp_min_(group, -clip_value)
            torch._foreach_clamp_max_(group, clip_value)
        else:
            for g in group:
                g.clamp_(min=-clip_value, max=clip_value)


def unitwise_norm(x: Tensor, norm_type: float = 2.0) -> Tensor:
    """Norm per output unit: over all dimensions but the first for matrices and conv kernels
    (PyTorch stores weights as ``(out, in, ...)``), over the whole tensor for vectors/scalars
    (biases, gains) — the NFNets reference's ``unitwise_norm`` transposed to PyTorch's layout."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x, norm_type)
    return torch.linalg.vector_norm(x, norm_type, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[Tensor] | Tensor, clipping: float = 0.01,
                        eps: float = 1e-3, norm_type: float = 2.0) -> None:
    r"""Unit-wise adaptive gradient clipping (AGC), Brock, De, Smith & Simonyan 2021, "High-
    Performance Large-Scale Image Recognition Without Normalization", eq. (3).

    For every output unit i of every parameter (row i of a weight ``(out, in, ...)``; the whole
    tensor for a bias or gain), with ``‖W_i‖* = max(‖W_i‖, eps)``::

        G_i ← λ · ‖W_i‖* / ‖G_i‖ · G_i    if ‖G_i‖ / ‖W_i‖* > λ
        G_i ← G_i                         otherwise

    λ = ``clipping`` (default 0.01; the paper uses 0.01-0.16 depending on batch size), ``eps``
    = 1e-3 (the paper's ε, so zero-initialised weights can still move). The gradient norm in
    the divisor is floored at 1e-6 to avoid 0/0. The paper does not clip the final classifier
    layer: pass the other parameters only. Gradients are modified in place.
    """
    clipping = _check_threshold("clipping", clipping)
    eps = _check_threshold("eps", eps)
    norm_type = _check_norm_type(norm_type)
    for p in _as_list(parameters):
        if p.grad is None:
            continue
        grad = p.grad
        max_norm = unitwise_norm(p.detach(), norm_type).clamp(min=eps).mul_(clipping)
        grad_norm = unitwise_norm(grad, norm_type)
        clipped = grad * (max_norm / grad_norm.clamp(min=1e-6))
        grad.copy_(torch.where(grad_norm > max_norm, clipped, grad))
