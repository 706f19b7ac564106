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

from adaptim import _validation as V
from adaptim._tensors import real_view
from adaptim.algorithms._spec import (COMMON_FIELDS, Algorithm, check_flags, common_fields,
                                      hyper, number, state_list)
from adaptim.functional.adam import adam, adam_foreach

__all__ = ["SPEC", "AdamSpec", "bias_corrections", "eps_form"]

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
