"""The reference rule of AdaDelta: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.adadelta`."""

from __future__ import annotations

import torch
from torch import Tensor

from adaptim.functional._foreach import by_device_and_dtype, increment_steps

__all__ = ["adadelta", "adadelta_foreach", "adadelta_tensor"]


def adadelta_tensor(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    acc_delta: Tensor,
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    differentiable: bool = False,
) -> Tensor:
    """One AdaDelta step on one real tensor, in place; returns the update Δ (a temporary)."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
    std = square_avg.add(eps).sqrt_()
    delta = acc_delta.add(eps).sqrt_()
    if differentiable:
        delta = delta.clone()  # sqrt_'s result is saved for backward; keep it unmodified
    delta.div_(std).mul_(grad)
    acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
    param.add_(delta, alpha=-lr)
    return delta


def adadelta(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    differentiable: bool = False,
) -> None:
    """Functional AdaDelta over lists of real tensors; increments each ``state_steps`` tensor."""
    # Keep each tensor's Δ alive until the next one exists (as torch.optim's loop does): freeing
    # both full-size temporaries at once left a free heap top above glibc's trim threshold, so
    # the heap was trimmed and every step page-faulted fresh memory (~2x slower).
    delta = None
    for i, param in enumerate(params):
        state_steps[i] += 1
        delta = adadelta_tensor(param, grads[i], square_avgs[i], acc_deltas[i], lr=lr, rho=rho,
                                eps=eps, weight_decay=weight_decay, maximize=maximize,
                                differentiable=differentiable)
    del delta


def adadelta_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
    differentiable: bool = False,
) -> None:
    """:func:`adadelta` with multi-tensor ops per (device, dtype) group: torch.optim's
    ``foreach=True`` bits."""
    if differentiable:
        raise ValueError("the multi-tensor rule does not record autograd; "
                         "differentiable steps take the per-tensor rule")
    if not params:
        return
    for dev_params, dev_grads, dev_square_avgs, dev_acc_deltas, dev_steps in by_device_and_dtype(
            params, grads, square_avgs, acc_deltas, state_steps):
        increment_steps(dev_steps)
        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        if weight_decay != 0:
            if maximize:  # the negated gradients are a temporary already
                torch._foreach_add_(dev_grads, dev_params, alpha=weight_decay)
            else:
                dev_grads = torch._foreach_add(dev_grads, dev_params, alpha=weight_decay)
        torch._foreach_mul_(dev_square_avgs, rho)
        torch._foreach_addcmul_(dev_square_avgs, dev_grads, dev_grads, value=1 - rho)
        std = torch._foreach_add(dev_square_avgs, eps)
        torch._foreach_sqrt_(std)
        deltas = torch._foreach_add(dev_acc_deltas, eps)
        torch._foreach_sqrt_(deltas)
        torch._foreach_div_(deltas, std)
        torch._foreach_mul_(deltas, dev_grads)
        torch._foreach_mul_(dev_acc_deltas, rho)
        torch._foreach_addcmul_(dev_acc_deltas, deltas, deltas, value=1 - rho)
        torch._foreach_add_(dev_params, deltas, alpha=-lr)
