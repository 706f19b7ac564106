"""The reference rule of Adam, AMSGrad and AdamW: the update, per tensor, with torch operations.
The math, the state and the options are in :mod:`adaptim.algorithms.adam`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adaptim.functional._foreach import by_device_and_dtype, increment_steps

__all__ = ["adam", "adam_foreach", "adam_tensor"]


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


def _adam_tensor_differentiable(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sqs, i, step,
                                *, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
                                decoupled_weight_decay, eps_in_sqrt, eps_hat,
                                bias_correction) -> None:
    """One Adam step in torch.optim's differentiable form (``_single_tensor_adam`` with
    differentiable=True), extended to adaptim's ε placements; ``step`` is the step tensor."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        elif isinstance(weight_decay, Tensor) and weight_decay.requires_grad:
            grad = grad.addcmul_(param.clone(), weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    device_beta1 = beta1
    if isinstance(beta1, Tensor):  # as torch: beta1 in the parameter's dtype for lerp_
        device_beta1 = beta1.to(device=param.device, dtype=param.dtype)
    exp_avg.lerp_(grad, 1 - device_beta1)
    if isinstance(beta2, Tensor) and beta2.requires_grad:
        exp_avg_sq.lerp_(torch.square(grad), weight=1 - beta2)  # addcmul_ takes no tensor value
    else:
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    # beta ** step.clone() where beta requires grad: pow saves its exponent, which += changes
    def power(beta):
        return beta ** (step.clone() if isinstance(beta, Tensor) and beta.requires_grad else step)

    if bias_correction:
        bias_correction1, bias_correction2 = 1 - power(beta1), 1 - power(beta2)
    else:
        bias_correction1 = bias_correction2 = torch.ones((), dtype=step.dtype)
    bias_correction2_sqrt = bias_correction2.sqrt()
    step_size_neg = (lr / bias_correction1).neg()
    if amsgrad:
        previous = max_exp_avg_sqs[i].clone()
        max_exp_avg_sqs[i].copy_(torch.maximum(previous, exp_avg_sq))
        second = max_exp_avg_sqs[i]
    else:
        second = exp_avg_sq
    # param += exp_avg / denom with denom = (√v̂ + ε) / (−η/b₁), folded as torch folds it
    if eps_hat:
        denom = second.sqrt().add(eps).div(bias_correction2_sqrt * step_size_neg)
    elif eps_in_sqrt:
        denom = (second / bias_correction2).add_(eps).sqrt() / step_size_neg
    else:
        denom = (second.sqrt() / (bias_correction2_sqrt * step_size_neg)).add_(
            eps / step_size_neg)
    param.addcdiv_(exp_avg.clone(), denom)


def adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    lr: float | Tensor = 1e-3,
    beta1: float | Tensor = 0.9,
    beta2: float | Tensor = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    eps_in_sqrt: bool = False,
    eps_hat: bool = False,
    bias_correction: bool = True,
    differentiable: bool = False,
) -> None:
    """Functional Adam/AdamW over lists of real tensors; increments each ``state_steps`` tensor."""
    if differentiable:
        for i, param in enumerate(params):
            state_steps[i] += 1
            _adam_tensor_differentiable(
                param, grads[i], exp_avgs[i], exp_avg_sqs[i], max_exp_avg_sqs, i,
                state_steps[i], lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                decoupled_weight_decay=decoupled_weight_decay, eps_in_sqrt=eps_in_sqrt,
                eps_hat=eps_hat, bias_correction=bias_correction)
        return
    for i, param in enumerate(params):
        state_steps[i] += 1
        adam_tensor(param, grads[i], exp_avgs[i], exp_avg_sqs[i], max_exp_avg_sqs[i],
                    int(state_steps[i].item()), lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                    weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                    decoupled_weight_decay=decoupled_weight_decay, eps_in_sqrt=eps_in_sqrt,
                    eps_hat=eps_hat, bias_correction=bias_correction)


def adam_foreach(
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
    differentiable: bool = False,
) -> None:
    """:func:`adam` with multi-tensor ops, one pass per operation per (device, dtype) group:
    torch.optim's ``foreach=True`` bits for the options torch has."""
    if differentiable:
        raise ValueError("the multi-tensor rule does not record autograd; "
                         "differentiable steps take the per-tensor rule")
    if not params:
        return
    for (dev_params, dev_grads, dev_exp_avgs, dev_exp_avg_sqs, dev_max_exp_avg_sqs,
         dev_steps) in by_device_and_dtype(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                           state_steps):
        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        increment_steps(dev_steps)
        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(dev_params, 1 - lr * weight_decay)
            elif maximize:  # the negated gradients are a temporary already
                torch._foreach_add_(dev_grads, dev_params, alpha=weight_decay)
            else:
                dev_grads = torch._foreach_add(dev_grads, dev_params, alpha=weight_decay)
        torch._foreach_lerp_(dev_exp_avgs, dev_grads, 1 - beta1)
        torch._foreach_mul_(dev_exp_avg_sqs, beta2)
        torch._foreach_addcmul_(dev_exp_avg_sqs, dev_grads, dev_grads, 1 - beta2)
        del dev_grads
        if amsgrad:
            torch._foreach_maximum_(dev_max_exp_avg_sqs, dev_exp_avg_sqs)
            second = dev_max_exp_avg_sqs
        else:
            second = dev_exp_avg_sqs
        if bias_correction:
            bias_correction1 = [1 - beta1 ** step.item() for step in dev_steps]
            bias_correction2 = [1 - beta2 ** step.item() for step in dev_steps]
        else:
            bias_correction1 = bias_correction2 = [1.0] * len(dev_steps)
        if eps_hat:
            step_size = [-(lr * math.sqrt(bc2) / bc1)
                         for bc1, bc2 in zip(bias_correction1, bias_correction2)]
            denom = torch._foreach_sqrt(second)
            torch._foreach_add_(denom, eps)
        elif eps_in_sqrt:
            step_size = [-(lr / bc) for bc in bias_correction1]
            denom = torch._foreach_div(second, bias_correction2)
            torch._foreach_add_(denom, eps)
            torch._foreach_sqrt_(denom)
        else:
            step_size = [(lr / bc) * -1 for bc in bias_correction1]
            denom = torch._foreach_sqrt(second)
            torch._foreach_div_(denom, [bc**0.5 for bc in bias_correction2])
            torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(dev_params, dev_exp_avgs, denom, step_size)
