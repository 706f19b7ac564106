"""adaptim.SGD: gradient descent, Momentum and Nesterov; the algorithm is
:mod:`adaptim.algorithms.sgd`."""

from __future__ import annotations

import torch

from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.algorithms import sgd
from adaptim.optimizers._docs import compose

__all__ = ["SGD"]


class SGD(AdaptimOptimizer):
    algorithm = sgd.SPEC

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float | torch.Tensor = 0,
                 nesterov: bool = False, *, maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None,
                 on_nonfinite: str = "propagate", flat: bool = False) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite, flat))
        super().__init__(params, defaults)


SGD.__doc__ = compose(SGD, """
    Stochastic gradient descent with optional (Nesterov) momentum; drop-in for torch.optim.SGD.
    """, """
    >>> import torch, adaptim
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = adaptim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([1.0, 1.0])
    ...     opt.step()
    >>> w  # v = g, then μ v + g; each step θ ← θ − η (g + μ v)
    Parameter containing:
    tensor([ 0.5390, -2.4610], requires_grad=True)
    """)
