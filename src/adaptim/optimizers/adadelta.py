"""adaptim.Adadelta; the algorithm is :mod:`adaptim.algorithms.adadelta`."""

from __future__ import annotations

import torch

from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.algorithms import adadelta
from adaptim.conventions import Default, resolve
from adaptim.optimizers._docs import compose

__all__ = ["Adadelta"]


class Adadelta(AdaptimOptimizer):
    algorithm = adadelta.SPEC

    def __init__(self, params, lr: float | torch.Tensor = Default(1.0),
                 rho: float = Default(0.9), eps: float = Default(1e-6), weight_decay: float = 0,
                 foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False,
                 convention: str = "torch", fused: bool | None = None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None,
                 on_nonfinite: str = "propagate", flat: bool = False) -> None:
        hp = resolve("adadelta", convention, dict(lr=lr, rho=rho, eps=eps))
        defaults = dict(**hp, weight_decay=weight_decay, foreach=foreach, capturable=capturable,
                        maximize=maximize, differentiable=differentiable, convention=convention,
                        fused=fused,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite, flat))
        super().__init__(params, defaults)


Adadelta.__doc__ = compose(Adadelta, """
    AdaDelta; drop-in for torch.optim.Adadelta (no learning rate to tune).
    """, """
    >>> import torch, adaptim
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = adaptim.Adadelta([w])
    >>> w.grad = torch.tensor([1.0, -1.0])
    >>> opt.step()
    >>> w  # Δ = √ε / √((1 − ρ) g² + ε) · g ≈ 0.0032 on the first step
    Parameter containing:
    tensor([ 0.9968, -1.9968], requires_grad=True)
    """)
