"""adaptim.Adagrad; the algorithm is :mod:`adaptim.algorithms.adagrad`."""

from __future__ import annotations

import torch

from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.algorithms import adagrad
from adaptim.conventions import Default, resolve
from adaptim.optimizers._docs import compose

__all__ = ["Adagrad"]


class Adagrad(AdaptimOptimizer):
    algorithm = adagrad.SPEC

    def __init__(self, params, lr: float | torch.Tensor = Default(1e-2), lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = Default(0.0),
                 eps: float = Default(1e-10), foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False,
                 fused: bool | None = None, state_dtype: torch.dtype | None = None,
                 max_grad_norm: float | None = None, on_nonfinite: str = "propagate",
                 flat: bool = False,
                 eps_in_sqrt: bool | None = None, convention: str = "torch") -> None:
        hp = resolve("adagrad", convention, dict(
            lr=lr, eps=eps, eps_in_sqrt=eps_in_sqrt,
            initial_accumulator_value=initial_accumulator_value))
        defaults = dict(**hp, lr_decay=lr_decay, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused,
                        convention=convention,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite, flat))
        super().__init__(params, defaults)


Adagrad.__doc__ = compose(Adagrad, """
    AdaGrad; drop-in for torch.optim.Adagrad, with Keras's and optax's ε placement.
    """, """
    >>> import torch, adaptim
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = adaptim.Adagrad([w], lr=0.1, convention="keras")
    >>> w.grad = torch.tensor([3.0, -4.0])
    >>> opt.step()
    >>> w
    Parameter containing:
    tensor([ 0.9006, -1.9003], requires_grad=True)
    >>> opt.state[w]["sum"]  # G starts at 0.1 in Keras
    tensor([ 9.1000, 16.1000])
    """)
