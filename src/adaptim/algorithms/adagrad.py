r"""AdaGrad (Duchi, Hazan & Singer, 2011).

Update rule, step t (1-based)::

    g ← ±∇f(θ) + λ θ
    η_t ← η / (1 + (t − 1) · lr_decay)
    G ← G + g²                                   (state ``sum``)
    θ ← θ − η_t g / (√G + ε)        eps_in_sqrt=False  (PyTorch)
    θ ← θ − η_t g / √(G + ε)        eps_in_sqrt=True   (Keras, optax)

G starts at ``initial_accumulator_value`` (torch 0, TF1/Keras/optax 0.1). State: ``step``,
``sum``, made for every parameter when the optimizer is built, as torch.optim.Adagrad does.
Effective step size per coordinate: η_t / (√G + ε).

Sparse gradients update only the rows they touch, as torch.optim.Adagrad (no weight decay).
``differentiable=True`` builds the update from ops autograd can differentiate (torch's
differentiable mode).
"""

from __future__ import annotations

import torch
from torch import Tensor

from adaptim import _validation as V
from adaptim._tensors import real_view
from adaptim.algorithms._spec import (COMMON_FIELDS, Algorithm, check_flags, common_fields,
                                      filled, hyper, number, state_list)
from adaptim.algorithms._foreach import by_device_and_dtype, increment_steps

__all__ = ["SPEC", "AdagradSpec", "decayed_lr", "adagrad", "adagrad_foreach",
           "adagrad_tensor"]


def decayed_lr(lr: float, lr_decay: float, step):
    """η_t = η / (1 + (t − 1) · lr_decay) for the 1-based step t (a number or a numpy array)."""
    return lr / (1 + (step - 1) * lr_decay)


# -------------------------------------------------------------- the reference rule
# per tensor (torch.optim's for-loop bits) and multi-tensor (its foreach bits)

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


class AdagradSpec(Algorithm):
    name = "adagrad"
    state_keys = ("sum",)
    nonnegative = frozenset({"sum"})
    hp_fields = COMMON_FIELDS + ("lr", "lr_decay", "eps", "eps_in_sqrt")
    eager_state = True
    sparse_refusal = None
    arg_docs = {
        "lr_decay": "decay of the learning rate: η_t = η / (1 + (t − 1) lr_decay)",
        "initial_accumulator_value": "where the sum of squares G starts",
        "eps": "ε added to the denominator",
        "eps_in_sqrt": "True: ε inside the square root, √(G + ε) (Keras, optax); False: "
                       "√G + ε (PyTorch); None: the convention's",
    }
    torch_group_defaults = dict(eps_in_sqrt=False, convention="torch")
    presets = {
        "torch": dict(lr=1e-2, eps=1e-10, eps_in_sqrt=False, initial_accumulator_value=0.0),
        "tf1": dict(lr=1e-2, eps=0.0, eps_in_sqrt=True, initial_accumulator_value=0.1),
        "keras": dict(lr=1e-3, eps=1e-7, eps_in_sqrt=True, initial_accumulator_value=0.1),
        "optax": dict(lr=1e-2, eps=1e-7, eps_in_sqrt=True, initial_accumulator_value=0.1),
    }

    def validate(self, group):
        V.check_finite_nonneg("lr_decay", group["lr_decay"])
        V.check_finite_nonneg("eps", group["eps"])
        V.check_finite_nonneg("initial_accumulator_value", group["initial_accumulator_value"])
        check_flags(group, "eps_in_sqrt")

    def hyperparameters(self, group, grad_scale, init):
        # η_t is computed per tensor in the kernel from its step
        return {**common_fields(group, grad_scale), "lr": number(group["lr"]),
                "lr_decay": number(group["lr_decay"]), "eps": number(group["eps"]),
                "eps_in_sqrt": float(group["eps_in_sqrt"])}

    def kernel_flags(self, group):
        return dict(HAS_WD=number(group["weight_decay"]) != 0,
                    EPS_IN_SQRT=bool(group["eps_in_sqrt"]))

    def tensor_scalars(self, group, steps, init):
        lr_t = decayed_lr(number(group["lr"]), number(group["lr_decay"]), steps)
        return (-lr_t).reshape(-1, 1)

    def init_state(self, param, state, group):
        state["step"] = self.new_step()
        state["sum"] = filled(param, group["initial_accumulator_value"])

    def reference_step(self, group, params, grads, states, foreach=False):
        rule = adagrad_foreach if foreach else adagrad
        rule(params, grads, state_list(states, "sum"), [st["step"] for st in states],
             lr=hyper(group, group["lr"]), lr_decay=number(group["lr_decay"]),
             weight_decay=hyper(group, group["weight_decay"]), eps=hyper(group, group["eps"]),
             maximize=group["maximize"], eps_in_sqrt=group["eps_in_sqrt"],
             differentiable=group["differentiable"])

    def effective_step(self, state, group):
        if "sum" not in state:
            return None
        eps = number(group["eps"])
        step = float(state["step"]) if "step" in state else 0.0
        lr_t = decayed_lr(number(group["lr"]), number(group["lr_decay"]), max(step, 1.0))
        v = real_view(state["sum"]).float()
        if group.get("eps_in_sqrt"):
            return lr_t / (v + eps).sqrt(), v < eps
        root = v.sqrt()
        return lr_t / (root + eps), root < eps


SPEC = AdagradSpec()
