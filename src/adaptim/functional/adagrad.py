"""The reference rule of AdaGrad: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.adagrad`."""

from __future__ import annotations

import torch
from torch import Tensor

from adaptim.functional._foreach import by_device_and_dtype, increment_steps

__all__ = ["adagrad", "adagrad_foreach", "adagrad_tensor"]


def adagrad_tensor(
    param: Tensor,
    grad: Tensor,
    state_sum: Tensor,
    step: int,
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    eps_in_sqrt: bool,
    differentiable: bool = False,
) -> None:
    """One AdaGrad step on one real tensor, in place; ``step`` is the 1-based count after this
    step."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if grad.is_sparse:
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")
        grad = grad.add(param, alpha=weight_decay)
    clr = lr / (1 + (step - 1) * lr_decay)
    if grad.is_sparse:
        _sparse_step(param, grad, state_sum, clr, eps, eps_in_sqrt)
        return
    state_sum.addcmul_(grad, grad, value=1)
    if eps_in_sqrt:
        std = state_sum.add(eps).sqrt_()
    elif differentiable:
        std = state_sum.sqrt() + eps  # sqrt's result is saved for backward: no in-place add
    else:
        std = state_sum.sqrt().add_(eps)
    param.addcdiv_(grad, std, value=-clr)


def _sparse_step(param: Tensor, grad: Tensor, state_sum: Tensor, clr, eps: float,
                 eps_in_sqrt: bool) -> None:
    """torch.optim.Adagrad's sparse update: G and θ change only at the gradient's indices."""
    grad = grad.coalesce()  # the update is non-linear, so indices must be unique
    indices, values = grad._indices(), grad._values()

    def sparse(v):
        return torch.sparse_coo_tensor(indices, v, grad.size())

    state_sum.add_(sparse(values.pow(2)))
    std_values = state_sum.sparse_mask(grad)._values()
    std_values = std_values.add_(eps).sqrt_() if eps_in_sqrt else std_values.sqrt_().add_(eps)
    param.add_(sparse(values / std_values), alpha=-clr)


def adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    differentiable: bool = False,
) -> None:
    """Functional AdaGrad over lists of real tensors; increments each ``state_steps`` tensor."""
    for i, param in enumerate(params):
        state_steps[i] += 1
        adagrad_tensor(param, grads[i], state_sums[i], int(state_steps[i].item()), lr=lr,
                       lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, maximize=maximize,
                       eps_in_sqrt=eps_in_sqrt, differentiable=differentiable)


def adagrad_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    differentiable: bool = False,
) -> None:
    """:func:`adagrad` with multi-tensor ops per (device, dtype) group: torch.optim's
    ``foreach=True`` bits (which scale g by −η_t before the division, one rounding apart from
    the per-tensor rule)."""
    if differentiable:
        raise ValueError("the multi-tensor rule does not record autograd; "
                         "differentiable steps take the per-tensor rule")
    if not params:
        return
    for dev_params, dev_grads, dev_sums, dev_steps in by_device_and_dtype(
            params, grads, state_sums, state_steps):
        owned = maximize or weight_decay != 0  # dev_grads are temporaries, not the .grad tensors
        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        increment_steps(dev_steps)
        if weight_decay != 0:
            if maximize:
                torch._foreach_add_(dev_grads, dev_params, alpha=weight_decay)
            else:
                dev_grads = torch._foreach_add(dev_grads, dev_params, alpha=weight_decay)
        minus_clr = [-lr / (1 + (step.item() - 1) * lr_decay) for step in dev_steps]
        torch._foreach_addcmul_(dev_sums, dev_grads, dev_grads, value=1)
        if eps_in_sqrt:
            std = torch._foreach_add(dev_sums, eps)
            torch._foreach_sqrt_(std)
        else:
            std = torch._foreach_sqrt(dev_sums)
            torch._foreach_add_(std, eps)
        if owned:
            torch._foreach_mul_(dev_grads, minus_clr)
            numerator = dev_grads
        else:
            numerator = torch._foreach_mul(dev_grads, minus_clr)
        torch._foreach_addcdiv_(dev_params, numerator, std)
