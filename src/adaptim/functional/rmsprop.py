"""The reference rule of RMSProp: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.rmsprop`."""

from __future__ import annotations

import torch
from torch import Tensor

from adaptim.functional._foreach import by_device_and_dtype, increment_steps

__all__ = ["rmsprop", "rmsprop_foreach", "rmsprop_tensor"]


def rmsprop_tensor(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor | None,
    momentum_buffer: Tensor | None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    eps_in_sqrt: bool,
    lr_in_momentum: bool,
    differentiable: bool = False,
) -> None:
    """One RMSProp step on one real tensor, in place."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    if centered:
        grad_avg.lerp_(grad, 1 - alpha)
        # E[g²] − E[g]² ≥ 0 exactly (Cauchy–Schwarz), but rounding (a fused multiply-add) can
        # make it slightly negative when the two nearly cancel (α → 0): √ of that is NaN, as in
        # torch.optim. Clamping changes nothing where the value is ≥ 0.
        s = square_avg.addcmul(grad_avg, grad_avg, value=-1).clamp_min_(0)
        avg = s.add_(eps).sqrt_() if eps_in_sqrt else s.sqrt_()
    else:
        avg = square_avg.add(eps).sqrt_() if eps_in_sqrt else square_avg.sqrt()
    if not eps_in_sqrt:
        # differentiable: sqrt's result is saved for backward, so ε is added out of place
        avg = avg.add(eps) if differentiable else avg.add_(eps)
    if momentum > 0:
        if lr_in_momentum:
            momentum_buffer.mul_(momentum).addcdiv_(grad, avg, value=lr)
            param.sub_(momentum_buffer)
        else:
            momentum_buffer.mul_(momentum).addcdiv_(grad, avg)
            param.add_(momentum_buffer, alpha=-lr)
    else:
        param.addcdiv_(grad, avg, value=-lr)


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor | None],
    momentum_buffers: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    lr_in_momentum: bool = False,
    differentiable: bool = False,
) -> None:
    """Functional RMSProp over lists of real tensors; increments each ``state_steps`` tensor.

    Example::

        >>> p, g, v = torch.ones(2), torch.tensor([1.0, -2.0]), torch.zeros(2)
        >>> rmsprop([p], [g], [v], [None], [None], [torch.tensor(0.)], lr=0.01, alpha=0.9,
        ...         eps_in_sqrt=True)
    """
    for i, param in enumerate(params):
        state_steps[i] += 1
        rmsprop_tensor(param, grads[i], square_avgs[i], grad_avgs[i], momentum_buffers[i], lr=lr,
                       alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                       centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt,
                       lr_in_momentum=lr_in_momentum, differentiable=differentiable)


def rmsprop_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor | None],
    momentum_buffers: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    lr_in_momentum: bool = False,
    differentiable: bool = False,
) -> None:
    """:func:`rmsprop` with multi-tensor ops per (device, dtype) group: torch.optim's
    ``foreach=True`` bits for the options torch has."""
    if differentiable:
        raise ValueError("the multi-tensor rule does not record autograd; "
                         "differentiable steps take the per-tensor rule")
    if not params:
        return
    for (dev_params, dev_grads, dev_square_avgs, dev_grad_avgs, dev_bufs,
         dev_steps) in by_device_and_dtype(params, grads, square_avgs, grad_avgs,
                                           momentum_buffers, state_steps):
        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        increment_steps(dev_steps)
        if weight_decay != 0:
            if maximize:  # the negated gradients are a temporary already
                torch._foreach_add_(dev_grads, dev_params, alpha=weight_decay)
            else:
                dev_grads = torch._foreach_add(dev_grads, dev_params, alpha=weight_decay)
        torch._foreach_mul_(dev_square_avgs, alpha)
        torch._foreach_addcmul_(dev_square_avgs, dev_grads, dev_grads, value=1 - alpha)
        if centered:
            torch._foreach_lerp_(dev_grad_avgs, dev_grads, 1 - alpha)
            avg = torch._foreach_addcmul(dev_square_avgs, dev_grad_avgs, dev_grad_avgs, value=-1)
            # ≥ 0 exactly; the clamp undoes rounding where E[g²] and E[g]² nearly cancel
            torch._foreach_clamp_min_(avg, 0)
            if eps_in_sqrt:
                torch._foreach_add_(avg, eps)
                torch._foreach_sqrt_(avg)
            else:
                torch._foreach_sqrt_(avg)
                torch._foreach_add_(avg, eps)
        elif eps_in_sqrt:
            avg = torch._foreach_add(dev_square_avgs, eps)
            torch._foreach_sqrt_(avg)
        else:
            avg = torch._foreach_sqrt(dev_square_avgs)
            torch._foreach_add_(avg, eps)
        if momentum > 0:
            torch._foreach_mul_(dev_bufs, momentum)
            if lr_in_momentum:
                torch._foreach_addcdiv_(dev_bufs, dev_grads, avg, value=lr)
                torch._foreach_sub_(dev_params, dev_bufs)
            else:
                torch._foreach_addcdiv_(dev_bufs, dev_grads, avg)
                torch._foreach_add_(dev_params, dev_bufs, alpha=-lr)
        else:
            torch._foreach_addcdiv_(dev_params, dev_grads, avg, value=-lr)
