r"""AdaDelta (Zeiler, 2012).

Update rule::

    g ← ±∇f(θ) + λ θ
    E[g²]  ← ρ E[g²] + (1 − ρ) g²                        (state ``square_avg``)
    Δ ← √(E[Δθ²] + ε) / √(E[g²] + ε) · g                  (unit-correcting ratio)
    E[Δθ²] ← ρ E[Δθ²] + (1 − ρ) Δ²                       (state ``acc_delta``)
    θ ← θ − η Δ

Zeiler's algorithm has no learning rate (η = 1, torch's default); TF/Keras scale by η = 0.001.
Every framework puts ε inside both square roots, as here. State: ``step``, ``square_avg``,
``acc_delta``. Effective step size per coordinate: η √(E[Δθ²] + ε) / √(E[g²] + ε).
"""

from __future__ import annotations

import torch
from torch import Tensor

from adaptim import _validation as V
from adaptim._tensors import real_view
from adaptim.algorithms._spec import (COMMON_FIELDS, Algorithm, common_fields, hyper, number,
                                      state_list)
from adaptim.algorithms._foreach import by_device_and_dtype, increment_steps

__all__ = ["SPEC", "AdadeltaSpec", "adadelta", "adadelta_foreach", "adadelta_tensor"]


# -------------------------------------------------------------- the reference rule
# per tensor (torch.optim's for-loop bits) and multi-tensor (its foreach bits)

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


class AdadeltaSpec(Algorithm):
    name = "adadelta"
    state_keys = ("square_avg", "acc_delta")
    nonnegative = frozenset({"square_avg", "acc_delta"})
    sparse_refusal = "Adadelta does not support sparse gradients"
    hp_fields = COMMON_FIELDS + ("rho", "one_minus_rho", "eps", "neg_lr")
    arg_docs = {
        "lr": "learning rate η scaling Δ (Zeiler's algorithm has none: η = 1)",
        "rho": "decay rate ρ of both running averages",
        "eps": "ε inside both square roots",
    }
    torch_group_defaults = dict(convention="torch")
    presets = {
        "torch": dict(lr=1.0, rho=0.9, eps=1e-6),
        "tf1": dict(lr=1e-3, rho=0.95, eps=1e-8),
        "keras": dict(lr=1e-3, rho=0.95, eps=1e-7),
        "optax": dict(lr=1.0, rho=0.9, eps=1e-6),
    }

    def validate(self, group):
        V.check_unit_closed("rho", group["rho"])
        V.check_finite_nonneg("eps", group["eps"])

    def hyperparameters(self, group, grad_scale, init):
        rho = number(group["rho"])
        return {**common_fields(group, grad_scale), "rho": rho, "one_minus_rho": 1 - rho,
                "eps": number(group["eps"]), "neg_lr": -number(group["lr"])}

    def kernel_flags(self, group):
        return dict(HAS_WD=number(group["weight_decay"]) != 0)

    def reference_step(self, group, params, grads, states, foreach=False):
        rule = adadelta_foreach if foreach else adadelta
        rule(params, grads, state_list(states, "square_avg"), state_list(states, "acc_delta"),
             [st["step"] for st in states], lr=hyper(group, group["lr"]),
             rho=number(group["rho"]), eps=hyper(group, group["eps"]),
             weight_decay=hyper(group, group["weight_decay"]), maximize=group["maximize"],
             differentiable=group["differentiable"])

    def effective_step(self, state, group):
        if "acc_delta" not in state:
            return None
        lr, eps = number(group["lr"]), number(group["eps"])
        v = real_view(state["square_avg"]).float()
        u = real_view(state["acc_delta"]).float()
        return lr * (u + eps).sqrt() / (v + eps).sqrt(), v < eps


SPEC = AdadeltaSpec()
