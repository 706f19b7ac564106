r"""RMSProp (Tieleman & Hinton 2012; centered form: Graves 2013).

Update rule::

    g ← ±∇f(θ) + λ θ
    E[g²] ← α E[g²] + (1 − α) g²                     (state ``square_avg``; α is "rho" elsewhere)
    E[g]  ← α E[g]  + (1 − α) g                      (state ``grad_avg``, centered only)
    s ← max(E[g²] − E[g]², 0)   if centered  else  E[g²]   (≥ 0 exactly; the max undoes rounding)
    r ← √s + ε          eps_in_sqrt=False  (PyTorch; the textbook *code*)
    r ← √(s + ε)        eps_in_sqrt=True   (TF1, Keras, optax; the textbook *equation*)
    without momentum:   θ ← θ − η g / r
    with momentum μ:    b ← μ b + g / r ;    θ ← θ − η b    lr_in_momentum=False (PyTorch)
                        b ← μ b + η g / r ;  θ ← θ − b      lr_in_momentum=True (TF1, Keras, optax)

The two momentum forms agree while η is constant and differ once a scheduler changes η.
E[g²] starts at ``initial_accumulator_value`` (torch/Keras/optax 0, TF1 1.0). State: ``step``,
``square_avg``, ``grad_avg`` (centered), ``momentum_buffer`` (μ > 0). Effective step size per
coordinate: η / r.
"""

from __future__ import annotations

import torch

from torch import Tensor

from adaptim import _validation as V
from adaptim._tensors import real_view
from adaptim.algorithms._spec import (COMMON_FIELDS, Algorithm, check_flags, common_fields,
                                      filled, hyper, number, state_list)
from adaptim.algorithms._foreach import by_device_and_dtype, increment_steps

__all__ = ["SPEC", "RMSpropSpec", "rmsprop", "rmsprop_foreach", "rmsprop_tensor"]


# -------------------------------------------------------------- the reference rule
# per tensor (torch.optim's for-loop bits) and multi-tensor (its foreach bits)

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


class RMSpropSpec(Algorithm):
    name = "rmsprop"
    state_keys = ("square_avg", "grad_avg", "momentum_buffer")
    nonnegative = frozenset({"square_avg"})
    sparse_refusal = "RMSprop does not support sparse gradients"
    hp_fields = COMMON_FIELDS + ("alpha", "one_minus_alpha", "eps", "eps_in_sqrt", "centered",
                                 "momentum", "has_momentum", "lr_in_momentum", "lr", "neg_lr")
    arg_docs = {
        "alpha": "decay rate α of the mean square E[g²] (\"rho\" in TF and Keras)",
        "eps": "ε added to the denominator",
        "momentum": "momentum factor μ (0: none)",
        "centered": "divide by the root of the variance E[g²] − E[g]² (Graves 2013) instead",
        "eps_in_sqrt": "True: ε inside the square root, √(E[g²] + ε) (TF, Keras, optax, the "
                       "textbook equation); False: √E[g²] + ε (PyTorch); None: the convention's",
        "initial_accumulator_value": "where E[g²] starts (TF1: 1.0)",
        "lr_in_momentum": "True: η inside the momentum buffer, b ← μ b + η g / r ; θ ← θ − b "
                          "(TF, Keras, optax); False: b ← μ b + g / r ; θ ← θ − η b (PyTorch); "
                          "None: the convention's",
    }
    torch_group_defaults = dict(eps_in_sqrt=False, initial_accumulator_value=0.0,
                                lr_in_momentum=False, convention="torch")
    presets = {
        "torch": dict(lr=1e-2, alpha=0.99, eps=1e-8, eps_in_sqrt=False,
                      initial_accumulator_value=0.0, lr_in_momentum=False),
        "tf1": dict(lr=1e-2, alpha=0.9, eps=1e-10, eps_in_sqrt=True,
                    initial_accumulator_value=1.0, lr_in_momentum=True),
        "keras": dict(lr=1e-3, alpha=0.9, eps=1e-7, eps_in_sqrt=True,
                      initial_accumulator_value=0.0, lr_in_momentum=True),
        "optax": dict(lr=1e-2, alpha=0.9, eps=1e-8, eps_in_sqrt=True,
                      initial_accumulator_value=0.0, lr_in_momentum=True),
    }

    def validate(self, group):
        V.check_unit_closed("alpha", group["alpha"])
        V.check_finite_nonneg("eps", group["eps"])
        V.check_finite_nonneg("momentum", group["momentum"])
        V.check_finite_nonneg("initial_accumulator_value", group["initial_accumulator_value"])
        check_flags(group, "centered", "eps_in_sqrt", "lr_in_momentum")

    def hyperparameters(self, group, grad_scale, init):
        alpha, mom, lr = number(group["alpha"]), number(group["momentum"]), number(group["lr"])
        return {**common_fields(group, grad_scale), "alpha": alpha, "one_minus_alpha": 1 - alpha,
                "eps": number(group["eps"]), "eps_in_sqrt": float(group["eps_in_sqrt"]),
                "centered": float(group["centered"]), "momentum": mom,
                "has_momentum": float(mom > 0), "lr_in_momentum": float(group["lr_in_momentum"]),
                "lr": lr, "neg_lr": -lr}

    def kernel_flags(self, group):
        return dict(HAS_WD=number(group["weight_decay"]) != 0,
                    EPS_IN_SQRT=bool(group["eps_in_sqrt"]), CENTERED=bool(group["centered"]),
                    HAS_MOM=number(group["momentum"]) > 0,
                    LR_IN_MOM=bool(group["lr_in_momentum"]))

    def required_state(self, group):
        keys = {"step", "square_avg"}
        if number(group["momentum"]) > 0:
            keys.add("momentum_buffer")
        if group["centered"]:
            keys.add("grad_avg")
        return keys

    def init_state(self, param, state, group):
        # keys in torch.optim.RMSprop's order
        state["step"] = self.new_step()
        state["square_avg"] = filled(param, group["initial_accumulator_value"])
        if number(group["momentum"]) > 0:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def reference_step(self, group, params, grads, states, foreach=False):
        rule = rmsprop_foreach if foreach else rmsprop
        rule(params, grads, state_list(states, "square_avg"), state_list(states, "grad_avg"),
             state_list(states, "momentum_buffer"), [st["step"] for st in states],
             lr=hyper(group, group["lr"]), alpha=number(group["alpha"]),
             eps=hyper(group, group["eps"]), weight_decay=hyper(group, group["weight_decay"]),
             momentum=number(group["momentum"]), centered=group["centered"],
             maximize=group["maximize"], eps_in_sqrt=group["eps_in_sqrt"],
             lr_in_momentum=group["lr_in_momentum"], differentiable=group["differentiable"])

    def effective_step(self, state, group):
        if "square_avg" not in state:
            return None
        lr, eps = number(group["lr"]), number(group["eps"])
        s = real_view(state["square_avg"]).float()
        if group.get("centered") and state.get("grad_avg") is not None:
            s = (s - real_view(state["grad_avg"]).float().square()).clamp(min=0)
        if group.get("eps_in_sqrt"):
            return lr / (s + eps).sqrt(), s < eps
        root = s.sqrt()
        return lr / (root + eps), root < eps


SPEC = RMSpropSpec()
