r"""Gradient descent, heavy-ball momentum and Nesterov momentum.

Update rule (PyTorch convention, Sutskever et al. 2013 in the form torch.optim.SGD uses)::

    g ← ∇f(θ) + λ θ                      (λ = weight_decay, L2 added to the gradient)
    v ← g                                 on the first step with momentum
    v ← μ v + (1 − τ) g                   afterwards (μ = momentum, τ = dampening)
    d ← g + μ v   if nesterov else  v     (d = g when μ = 0)
    θ ← θ − η d

Plain gradient descent is μ = 0; "Momentum" is μ = 0.9; Nesterov accelerated gradient is the
look-ahead form with nesterov=True.

Sparse gradients (``nn.Embedding(sparse=True)``) follow the same ops, as in torch.optim.SGD: the
first momentum buffer is the sparse gradient itself. A tensor ``lr`` or ``weight_decay`` that
requires grad enters the graph as in torch.optim's differentiable mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sgd", "sgd_tensor"]


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
