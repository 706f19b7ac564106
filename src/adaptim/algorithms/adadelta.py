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

from adaptim import _validation as V
from adaptim._tensors import real_view
from adaptim.algorithms._spec import (COMMON_FIELDS, Algorithm, common_fields, hyper, number,
                                      state_list)
from adaptim.functional.adadelta import adadelta, adadelta_foreach

__all__ = ["SPEC", "AdadeltaSpec"]


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
