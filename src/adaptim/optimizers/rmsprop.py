"""adaptim.RMSprop; the algorithm is :mod:`adaptim.algorithms.rmsprop`."""

from __future__ import annotations

import torch

from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.algorithms import rmsprop
from adaptim.conventions import Default, resolve
from adaptim.optimizers._docs import compose

__all__ = ["RMSprop"]


class RMSprop(AdaptimOptimizer):
    algorithm = rmsprop.SPEC

    def __init__(self, params, lr: float | torch.Tensor = Default(1e-2),
                 alpha: float = Default(0.99), eps: float = Default(1e-8),
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False, *, eps_in_sqrt: bool | None = None,
                 initial_accumulator_value: float = Default(0.0),
                 lr_in_momentum: bool | None = None, convention: str = "torch",
                 fused: bool | None = None, state_dtype: torch.dtype | None = None,
                 max_grad_norm: float | None = None, on_nonfinite: str = "propagate",
                 flat: bool = False) -> None:
        hp = resolve("rmsprop", convention, dict(
            lr=lr, alpha=alpha, eps=eps, eps_in_sqrt=eps_in_sqrt,
            initial_accumulator_value=initial_accumulator_value, lr_in_momentum=lr_in_momentum))
        defaults = dict(**hp, weight_decay=weight_decay, momentum=momentum, centered=centered,
                        capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, convention=convention, fused=fused,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite, flat))
        super().__init__(params, defaults)


RMSprop.__doc__ = compose(RMSprop, """
    RMSProp; drop-in for torch.optim.RMSprop, and with ``convention`` an exact TF1, Keras or
    optax RMSProp.
    """, """
    >>> import torch, adaptim
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = adaptim.RMSprop([w], lr=0.01)
    >>> w.grad = torch.tensor([0.5, -0.5])
    >>> opt.step()
    >>> w  # first step: η g / √((1 − α) g²) = η / √0.01 = 10 η per coordinate
    Parameter containing:
    tensor([ 0.9000, -1.9000], requires_grad=True)
    >>> keras = adaptim.RMSprop([w], convention="keras")
    >>> keras.defaults["alpha"], keras.defaults["eps"], keras.defaults["eps_in_sqrt"]
    (0.9, 1e-07, True)
    """)
