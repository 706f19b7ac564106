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

import torch
from torch import Tensor

from adaptim import _validation as V
from adaptim.algorithms._spec import COMMON_FIELDS, Algorithm, common_fields, hyper, number
from adaptim.algorithms._foreach import by_device_and_dtype

__all__ = ["SPEC", "SGDSpec", "sgd", "sgd_foreach", "sgd_tensor"]


# -------------------------------------------------------------- the reference rule
# per tensor (torch.optim's for-loop bits) and multi-tensor (its foreach bits)

def sgd_tensor(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    dampening: float,
    weight_decay: float | Tensor,
    nesterov: bool,
    maximize: bool,
) -> Tensor | None:
    """One SGD step on one (real) tensor, in place. Returns the momentum buffer (new on step 1)."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if isinstance(weight_decay, Tensor) and weight_decay.requires_grad:
            grad = grad.addcmul_(param.clone(), weight_decay)  # torch's differentiable form
        else:
            grad = grad.add(param, alpha=weight_decay)
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = grad.detach().clone()  # v_1 = g_1, as torch.optim.SGD
        else:
            momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer
    if isinstance(lr, Tensor) and lr.requires_grad:
        param.addcmul_(grad, lr, value=-1)  # the gradient flows to lr
    else:
        param.add_(grad, alpha=-lr)
    return momentum_buffer


def sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float | Tensor = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> None:
    """Functional SGD over lists of tensors; ``momentum_buffers`` entries are replaced in place.

    Example::

        >>> p, g = torch.ones(3), torch.full((3,), 0.5)
        >>> bufs = [None]
        >>> sgd([p], [g], bufs, lr=0.1, momentum=0.9)
        >>> p
        tensor([0.9500, 0.9500, 0.9500])
    """
    for i, param in enumerate(params):
        momentum_buffers[i] = sgd_tensor(
            param, grads[i], momentum_buffers[i], lr=lr, momentum=momentum, dampening=dampening,
            weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)


def sgd_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> None:
    """:func:`sgd` with multi-tensor ops per (device, dtype) group: torch.optim's
    ``foreach=True`` bits. ``momentum_buffers`` entries are replaced in place."""
    if not params:
        return
    for (dev_params, dev_grads, dev_bufs), indices in by_device_and_dtype(
            params, grads, momentum_buffers, with_indices=True):
        owned = maximize or weight_decay != 0  # dev_grads are temporaries, not the .grad tensors
        if maximize:
            dev_grads = torch._foreach_neg(dev_grads)
        if weight_decay != 0:
            if maximize:
                torch._foreach_add_(dev_grads, dev_params, alpha=weight_decay)
            else:
                dev_grads = torch._foreach_add(dev_grads, dev_params, alpha=weight_decay)
        if momentum != 0:
            if all(b is not None for b in dev_bufs):
                torch._foreach_mul_(dev_bufs, momentum)
                torch._foreach_add_(dev_bufs, dev_grads, alpha=1 - dampening)
            else:  # v_1 = g_1, as torch.optim.SGD
                for i, (g, buf) in enumerate(zip(dev_grads, dev_bufs)):
                    if buf is None:
                        dev_bufs[i] = momentum_buffers[indices[i]] = g.detach().clone()
                    else:
                        buf.mul_(momentum).add_(g, alpha=1 - dampening)
            if not nesterov:
                dev_grads = dev_bufs
            elif owned:
                torch._foreach_add_(dev_grads, dev_bufs, alpha=momentum)
            else:  # leave the caller's gradients alone (torch.optim adds in place into .grad)
                dev_grads = torch._foreach_add(dev_grads, dev_bufs, alpha=momentum)
        torch._foreach_add_(dev_params, dev_grads, alpha=-lr)


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
