"""The reference rule of Adam, AMSGrad and AdamW: the update, per tensor, with torch operations.
The math, the state and the options are in :mod:`adaptim.algorithms.adam`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["adam", "adam_tensor"]


def adam_tensor(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor | None,
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
    eps_in_sqrt: bool,
    eps_hat: bool,
    bias_correction: bool,
) -> None:
    """One Adam step on one real tensor, in place; ``step`` is the 1-based count after this step."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if amsgrad:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    bias_correction1 = 1 - beta1**step if bias_correction else 1.0
    bias_correction2 = 1 - beta2**step if bias_correction else 1.0
    if eps_hat:
        step_size = lr * math.sqrt(bias_correction2) / bias_correction1
        denom = second.sqrt().add_(eps)
    elif eps_in_sqrt:
        step_size = lr / bias_correction1
        denom = second.div(bias_correction2).add_(eps).sqrt_()
    else:
        step_size = lr / bias_correction1
        # in place after the sqrt: one temporary, not two (same bits). Two freed together at
        # return made glibc trim the heap, so every step page-faulted fresh memory (2-3x slower).
        denom = second.sqrt().div_(math.sqrt(bias_correction2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-step_size)


def adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    eps_in_sqrt: bool = False,
    eps_hat: bool = False,
    bias_correction: bool = True,
) -> None:
    """Functional Adam/AdamW over lists of real tensors; increments each ``state_steps`` tensor."""
    for i, param in enumerate(params):
        state_steps[i] += 1
        adam_tensor(param, grads[i], exp_avgs[i], exp_avg_sqs[i], max_exp_avg_sqs[i],
                    int(state_steps[i].item()), lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                    weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                    decoupled_weight_decay=decoupled_weight_decay, eps_in_sqrt=eps_in_sqrt,
                    eps_hat=eps_hat, bias_correction=bias_correction)
