"""The reference rule of Gradient descent, heavy-ball momentum and Nesterov momentum: the update,
per tensor, with torch operations. The math, the state and the options are in
:mod:`adaptim.algorithms.sgd`."""

from __future__ import annotations

import torch
from torch import Tensor

from adaptim.functional._foreach import by_device_and_dtype

__all__ = ["sgd", "sgd_foreach", "sgd_tensor"]


def sgd_tensor(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    dampening: float,
    weight_decay: float | Tensor,
    nesterov: bool,
    maximize: bool,
) -> Tensor | None:
    """One SGD step on one (real) tensor, in place. Returns the momentum buffer (new on step 1)."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if isinstance(weight_decay, Tensor) and weight_decay.requires_grad:
            grad = grad.addcmul_(param.clone(), weight_decay)  # torch's differentiable form
        else:
            grad = grad.add(param, alpha=weight_decay)
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = grad.detach().clone()  # v_1 = g_1, as torch.optim.SGD
        else:
            momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer
    if isinstance(lr, Tensor) and lr.requires_grad:
        param.addcmul_(grad, lr, value=-1)  # the gradient flows to lr
    else:
        param.add_(grad, alpha=-lr)
    return momentum_buffer


def sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float | Tensor = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> None:
    """Functional SGD over lists of tensors; ``momentum_buffers`` entries are replaced in place.

    Example::

        >>> p, g = torch.ones(3), torch.full((3,), 0.5)
        >>> bufs = [None]
        >>> sgd([p], [g], bufs, lr=0.1, momentum=0.9)
        >>> p
        tensor([0.9500, 0.9500, 0.9500])
    """
    for i, param in enumerate(params):
        momentum_buffers[i] = sgd_tensor(
            param, grads[i], momentum_buffers[i], lr=lr, momentum=momentum, dampening=dampening,
            weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)


def sgd_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> None:
    """:func:`sgd` with multi-tensor ops per (device, dtype) group: torch.optim's
    ``foreach=True`` bits. ``momentum_buffers`` entries are replaced in place."""
    if not params:
        return
    for (dev_params, dev_grads, dev_bufs), indices in by_device_and_dtype(
            params, grads, momentum_buffers, with_indices=True):
        owned = maximize or weight_decay != 0  # dev_grads are temporaries, not the .grad tensors
        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        if weight_decay != 0:
            if maximize:
                torch._foreach_add_(dev_grads, dev_params, alpha=weight_decay)
            else:
                dev_grads = torch._foreach_add(dev_grads, dev_params, alpha=weight_decay)
        if momentum != 0:
            if all(b is not None for b in dev_bufs):
                torch._foreach_mul_(dev_bufs, momentum)
                torch._foreach_add_(dev_bufs, dev_grads, alpha=1 - dampening)
            else:  # v_1 = g_1, as torch.optim.SGD
                for i, (g, buf) in enumerate(zip(dev_grads, dev_bufs)):
                    if buf is None:
                        dev_bufs[i] = momentum_buffers[indices[i]] = g.detach().clone()
                    else:
                        buf.mul_(momentum).add_(g, alpha=1 - dampening)
            if not nesterov:
                dev_grads = dev_bufs
            elif owned:
                torch._foreach_add_(dev_grads, dev_bufs, alpha=momentum)
            else:  # leave the caller's gradients alone (torch.optim adds in place into .grad)
                dev_grads = torch._foreach_add(dev_grads, dev_bufs, alpha=momentum)
        torch._foreach_add_(dev_params, dev_grads, alpha=-lr)
