"""adaptim.SGD: gradient descent, Momentum and Nesterov; math in adaptim.functional.sgd."""

from __future__ import annotations

import math

import torch

from adaptim import _validation as V
from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.functional.sgd import sgd

__all__ = ["SGD"]


class SGD(AdaptimOptimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum; drop-in for torch.optim.SGD.

    ``v ← μ v + (1 − τ) g ;  θ ← θ − η (g + μ v if nesterov else v)`` (see
    :mod:`adaptim.functional.sgd`; Sutskever et al. 2013). Same arguments, defaults and state
    (``momentum_buffer``) as torch.optim.SGD; invalid values raise ValueError.

    Example::

        >>> opt = adaptim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    """

    name = "sgd"
    supports_sparse_grads = True
    state_tensor_keys = ("momentum_buffer",)
    views_complex_as_real = False  # no squares: complex tensors update as they are, as in torch

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float | torch.Tensor = 0,
                 nesterov: bool = False, *, maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None, on_nonfinite: str = "propagate") -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite))
        super().__init__(params, defaults)

    def _validate_group(self, group: dict) -> None:
        V.check_finite_nonneg("momentum", group["momentum"])
        dampening = V.as_real("dampening", group["dampening"])
        if not math.isfinite(dampening):
            raise ValueError(f"Invalid dampening: {dampening!r} (must be finite)")
        V.check_bool("nesterov", group["nesterov"])
        if group["nesterov"] and (V.to_float(group["momentum"]) <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")

    def _required_state(self, group: dict) -> set[str]:
        # a parameter with state under momentum has its buffer (made on its first step)
        return {"momentum_buffer"} if V.to_float(group["momentum"]) != 0 else set()

    def _stateless(self, group: dict) -> bool:
        return V.to_float(group["momentum"]) == 0

    def _init_state(self, param, state, group) -> None:
        pass  # the momentum buffer is made from the first gradient, as in torch.optim.SGD

    def _update(self, group, params, grads, states) -> None:
        momentum = V.to_float(group["momentum"])
        bufs = [s.get("momentum_buffer") for s in states]
        h = lambda key: self._hyper(group, group[key])
        sgd(params, grads, bufs, lr=h("lr"), momentum=momentum,
            dampening=V.to_float(group["dampening"]), weight_decay=h("weight_decay"),
            nesterov=group["nesterov"], maximize=group["maximize"])
        if momentum != 0:
            for state, buf in zip(states, bufs):
                state["momentum_buffer"] = buf
