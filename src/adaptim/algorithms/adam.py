r"""Adam (Kingma & Ba, 2015), AMSGrad (Reddi et al., 2018) and AdamW (Loshchilov & Hutter, 2019).

Update rule, step t (1-based)::

    θ ← θ (1 − η λ)                     decoupled_weight_decay=True (AdamW)
    g ← ±∇f(θ) + λ θ                    decoupled_weight_decay=False (Adam + L2)
    m ← β₁ m + (1 − β₁) g                (state ``exp_avg``)
    v ← β₂ v + (1 − β₂) g²               (state ``exp_avg_sq``)
    v_max ← max(v_max, v)                (state ``max_exp_avg_sq``, amsgrad only; then v is v_max)
    b₁ = 1 − β₁ᵗ,  b₂ = 1 − β₂ᵗ          (both 1 when bias_correction=False)
    θ ← θ − η (m/b₁) / (√(v/b₂) + ε)      default (PyTorch, optax, Algorithm 1 of the paper)
    θ ← θ − η (m/b₁) / √(v/b₂ + ε)        eps_in_sqrt=True (optax's eps_root)
    θ ← θ − η (√b₂ / b₁) · m / (√v + ε̂)   eps_hat=True (TF1, Keras: "epsilon hat", paper §2)

With bias_correction=False and β₁ = 0 this is exactly RMSProp with α = β₂. Effective step size
per coordinate (the factor applied to m̂ = m/b₁): η / (√(v/b₂) + ε), η / √(v/b₂ + ε) or
η √b₂ / (√v + ε̂).

``differentiable=True`` follows torch.optim's differentiable mode op for op (its bits): the bias
corrections are tensors computed from the step tensor, ``lr`` and ``betas`` may be tensors that
require grad, and no tensor that backward needs is modified in place.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from torch import Tensor

from adaptim import _validation as V
from adaptim._tensors import real_view
from adaptim.algorithms._spec import (COMMON_FIELDS, Algorithm, check_flags, common_fields,
                                      hyper, number, state_list)
from adaptim.algorithms._foreach import by_device_and_dtype, increment_steps

__all__ = ["SPEC", "AdamSpec", "bias_corrections", "eps_form", "adam", "adam_foreach",
           "adam_tensor"]

# Where ε sits, as the kernels number it
EPS_TORCH, EPS_IN_SQRT, EPS_HAT = 0, 1, 2


def bias_corrections(beta1: float, beta2: float, step: float,
                     enabled: bool = True) -> tuple[float, float]:
    """(b₁, b₂) = (1 − β₁ᵗ, 1 − β₂ᵗ), or (1, 1) without bias correction (Python's ``**``, as
    the reference rule and the C kernel's libm ``pow``)."""
    return (1 - beta1**step, 1 - beta2**step) if enabled else (1.0, 1.0)


def eps_form(group: dict) -> int:
    """Which placement of ε the group uses: EPS_TORCH, EPS_IN_SQRT or EPS_HAT."""
    return EPS_HAT if group["eps_hat"] else EPS_IN_SQRT if group["eps_in_sqrt"] else EPS_TORCH


# -------------------------------------------------------------- the reference rule
# per tensor (torch.optim's for-loop bits) and multi-tensor (its foreach bits)

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
    bias_correction1, bias_correction2 = bias_corrections(beta1, beta2, step, bias_correction)
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
        corrections = [bias_corrections(beta1, beta2, step.item(), bias_correction)
                       for step in dev_steps]
        bias_correction1 = [b1 for b1, _ in corrections]
        bias_correction2 = [b2 for _, b2 in corrections]
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


class AdamSpec(Algorithm):
    name = "adam"
    state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    nonnegative = frozenset({"exp_avg_sq", "max_exp_avg_sq"})
    sparse_refusal = "Adam does not support sparse gradients, please consider SparseAdam instead"
    hp_fields = COMMON_FIELDS + ("decoupled", "decay_factor", "one_minus_beta1", "beta2",
                                 "one_minus_beta2", "amsgrad", "eps_form", "eps", "lr", "beta1",
                                 "bias_correction")
    arg_docs = {
        "betas": "(β₁, β₂): decay rates of the first and second moment averages",
        "eps": "ε added to the denominator (see eps_in_sqrt and eps_hat for where)",
        "weight_decay": "weight decay λ: L2 added to the gradient, or θ ← θ (1 − η λ) before "
                        "the step with decoupled_weight_decay=True (AdamW)",
        "amsgrad": "AMSGrad (Reddi et al. 2018): divide by the running maximum of v",
        "decoupled_weight_decay": "decouple weight decay from the adaptive step (AdamW)",
        "eps_in_sqrt": "True: ε inside the square root, √(v̂ + ε) (optax's eps_root); None: the "
                       "convention's",
        "eps_hat": "True: ε added to √v before bias correction, \"epsilon hat\" of the paper's "
                   "§2 (TF1, Keras); None: the convention's",
        "bias_correction": "divide m and v by 1 − βᵗ (False: no correction; with β₁ = 0 this is "
                           "RMSProp with α = β₂)",
    }
    torch_group_defaults = dict(eps_in_sqrt=False, eps_hat=False, bias_correction=True,
                                convention="torch")
    presets = {
        "torch": dict(lr=1e-3, eps=1e-8, eps_in_sqrt=False, eps_hat=False),
        "tf1": dict(lr=1e-3, eps=1e-8, eps_in_sqrt=False, eps_hat=True),
        "keras": dict(lr=1e-3, eps=1e-7, eps_in_sqrt=False, eps_hat=True),
        "optax": dict(lr=1e-3, eps=1e-8, eps_in_sqrt=False, eps_hat=False),
    }

    def validate(self, group):
        # torch.optim.Adam's checks, in its order: Tensor hyperparameters with foreach=True
        # (its foreach kernels take numbers unless capturable), then ranges, then the betas'
        # types. adaptim matches torch so code moves both ways.
        foreach = group.get("foreach") and not group.get("capturable")
        if foreach and isinstance(group["lr"], torch.Tensor):
            raise V.tensor_with_foreach("lr")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        V.check_finite_nonneg("eps", group["eps"])
        V.check_unit_open("betas[0]", betas[0])
        V.check_unit_open("betas[1]", betas[1])
        is_tensor = [isinstance(b, torch.Tensor) for b in betas]
        if is_tensor[0] != is_tensor[1]:
            # torch also refuses two ints (0, 0.99 is fine; (0, 1) is out of range anyway):
            # adaptim takes any two real numbers.
            raise ValueError("betas must be either both floats or both Tensors")
        for i, t in enumerate(is_tensor):
            if t and foreach:
                raise V.tensor_with_foreach(f"betas[{i}]")
        check_flags(group, "amsgrad", "decoupled_weight_decay", "eps_in_sqrt", "eps_hat",
                    "bias_correction")
        if group["eps_in_sqrt"] and group["eps_hat"]:
            raise ValueError("eps_in_sqrt and eps_hat are two placements of ε; choose one")

    def hyperparameters(self, group, grad_scale, init):
        # the bias corrections and step size are computed per tensor in the kernel from its step
        lr, wd = number(group["lr"]), number(group["weight_decay"])
        beta1, beta2 = (number(b) for b in group["betas"])
        return {**common_fields(group, grad_scale),
                "decoupled": float(group["decoupled_weight_decay"]), "decay_factor": 1 - lr * wd,
                "one_minus_beta1": 1 - beta1, "beta2": beta2, "one_minus_beta2": 1 - beta2,
                "amsgrad": float(group["amsgrad"]), "eps_form": float(eps_form(group)),
                "eps": number(group["eps"]), "lr": lr, "beta1": beta1,
                "bias_correction": float(group["bias_correction"])}

    def kernel_flags(self, group):
        wd, decoupled = number(group["weight_decay"]) != 0, bool(group["decoupled_weight_decay"])
        return dict(HAS_WD=wd and not decoupled, DECAY_PARAM=wd and decoupled,
                    AMSGRAD=bool(group["amsgrad"]), EPS_FORM=eps_form(group))

    def tensor_scalars(self, group, steps, init):
        """(−step size, b₂, √b₂) per tensor, computed once per distinct step count."""
        lr, form, enabled = number(group["lr"]), eps_form(group), bool(group["bias_correction"])
        beta1, beta2 = (number(b) for b in group["betas"])
        unique, inverse = np.unique(steps, return_inverse=True)
        rows = []
        for step in unique.tolist():
            b1, b2 = bias_corrections(beta1, beta2, step, enabled)
            step_size = lr * math.sqrt(b2) / b1 if form == EPS_HAT else lr / b1
            rows.append((-step_size, b2, math.sqrt(b2)))
        return np.asarray(rows, dtype=np.float64).reshape(-1, 3)[inverse.reshape(-1)]

    def required_state(self, group):
        keys = {"step", "exp_avg", "exp_avg_sq"}
        if group["amsgrad"]:
            keys.add("max_exp_avg_sq")
        return keys

    def reference_step(self, group, params, grads, states, foreach=False):
        beta1, beta2 = group["betas"]
        rule = adam_foreach if foreach else adam
        rule(params, grads, state_list(states, "exp_avg"), state_list(states, "exp_avg_sq"),
             state_list(states, "max_exp_avg_sq"), [st["step"] for st in states],
             lr=hyper(group, group["lr"]), beta1=hyper(group, beta1),
             beta2=hyper(group, beta2), eps=hyper(group, group["eps"]),
             weight_decay=hyper(group, group["weight_decay"]),
             differentiable=group["differentiable"],
             amsgrad=group["amsgrad"], maximize=group["maximize"],
             decoupled_weight_decay=group["decoupled_weight_decay"],
             eps_in_sqrt=group["eps_in_sqrt"], eps_hat=group["eps_hat"],
             bias_correction=group["bias_correction"])

    def effective_step(self, state, group):
        if "exp_avg_sq" not in state:
            return None
        lr, eps = number(group["lr"]), number(group["eps"])
        v = state["exp_avg_sq"]
        if group.get("amsgrad") and state.get("max_exp_avg_sq") is not None:
            v = state["max_exp_avg_sq"]
        v = real_view(v).float()
        step = float(state["step"]) if "step" in state else 0.0
        beta1, beta2 = (number(b) for b in group["betas"])
        enabled = bool(group.get("bias_correction", True)) and step > 0
        _, b2 = bias_corrections(beta1, beta2, step, enabled)
        if group.get("eps_hat"):
            root = v.sqrt()
            return lr * math.sqrt(b2) / (root + eps), root < eps
        v_hat = v / b2
        if group.get("eps_in_sqrt"):
            return lr / (v_hat + eps).sqrt(), v_hat < eps
        root = v_hat.sqrt()
        return lr / (root + eps), root < eps


SPEC = AdamSpec()
