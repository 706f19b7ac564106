r"""Gradient descent, heavy-ball momentum and Nesterov momentum.

Update rule (PyTorch convention, Sutskever et al. 2013 in the form torch.optim.SGD uses)::

    g ← ±∇f(θ) + λ θ                      (λ = weight_decay, L2 added to the gradient)
    v ← g                                 on the first step with momentum
    v ← μ v + (1 − τ) g                   afterwards (μ = momentum, τ = dampening)
    d ← g + μ v   if nesterov else  v     (d = g when μ = 0)
    θ ← θ − η d

Plain gradient descent is μ = 0; "Momentum" is μ = 0.9; Nesterov accelerated gradient is the
look-ahead form with nesterov=True. State: ``momentum_buffer`` (v), made from the first
gradient; none without momentum.

Sparse gradients (``nn.Embedding(sparse=True)``) follow the same ops, as in torch.optim.SGD: the
first momentum buffer is the sparse gradient itself. A tensor ``lr`` or ``weight_decay`` that
requires grad enters the graph as in torch.optim's differentiable mode.
"""

from __future__ import annotations

import math

import numpy as np

from adaptim import _validation as V
from adaptim.algorithms._spec import COMMON_FIELDS, Algorithm, common_fields, hyper, number
from adaptim.functional.sgd import sgd, sgd_foreach

__all__ = ["SPEC", "SGDSpec"]


class SGDSpec(Algorithm):
    name = "sgd"
    state_keys = ("momentum_buffer",)
    hp_fields = COMMON_FIELDS + ("neg_lr", "momentum", "has_momentum", "one_minus_dampening",
                                 "nesterov", "init_buffer")
    counts_steps = False
    sparse_refusal = None
    grad_initialised_state = "momentum_buffer"
    views_complex_as_real = False  # no squares: complex tensors update as they are, as in torch
    arg_docs = {
        "momentum": "momentum factor μ (0: plain gradient descent)",
        "dampening": "dampening τ of the gradient added to the momentum buffer",
        "nesterov": "Nesterov's look-ahead form (needs momentum > 0 and dampening = 0)",
    }

    def validate(self, group: dict) -> None:
        V.check_finite_nonneg("momentum", group["momentum"])
        dampening = V.as_real("dampening", group["dampening"])
        if not math.isfinite(dampening):
            raise ValueError(f"Invalid dampening: {dampening!r} (must be finite)")
        V.check_bool("nesterov", group["nesterov"])
        if group["nesterov"] and (number(group["momentum"]) <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")

    def hyperparameters(self, group, grad_scale, init):
        mom = number(group["momentum"])
        return {**common_fields(group, grad_scale), "neg_lr": -number(group["lr"]),
                "momentum": mom, "has_momentum": float(mom != 0),
                "one_minus_dampening": 1 - number(group["dampening"]),
                "nesterov": float(group["nesterov"]), "init_buffer": float(init)}

    def kernel_flags(self, group):
        return dict(HAS_WD=number(group["weight_decay"]) != 0,
                    HAS_MOM=number(group["momentum"]) != 0, NESTEROV=bool(group["nesterov"]))

    def tensor_scalars(self, group, steps, init):
        return np.asarray(init, dtype=np.float64).reshape(-1, 1)  # 1.0: first step, v ← g

    def required_state(self, group):
        # a parameter with state under momentum has its buffer (made on its first step)
        return {"momentum_buffer"} if number(group["momentum"]) != 0 else set()

    def stateless(self, group):
        return number(group["momentum"]) == 0

    def init_state(self, param, state, group):
        pass  # the momentum buffer is made from the first gradient, as in torch.optim.SGD

    def reference_step(self, group, params, grads, states, foreach=False):
        momentum = number(group["momentum"])
        bufs = [s.get("momentum_buffer") for s in states]
        rule = sgd_foreach if foreach else sgd
        rule(params, grads, bufs, lr=hyper(group, group["lr"]), momentum=momentum,
             dampening=number(group["dampening"]),
             weight_decay=hyper(group, group["weight_decay"]), nesterov=group["nesterov"],
             maximize=group["maximize"])
        if momentum != 0:
            for state, buf in zip(states, bufs):
                state["momentum_buffer"] = buf


SPEC = SGDSpec()
