"""adaptim.Adam and adaptim.AdamW; the algorithm is :mod:`adaptim.algorithms.adam`."""

from __future__ import annotations

import torch

from adaptim._base import AdaptimOptimizer, common_defaults
from adaptim.algorithms import adam
from adaptim.conventions import Default, resolve
from adaptim.optimizers._docs import compose

__all__ = ["Adam", "AdamW"]


class Adam(AdaptimOptimizer):
    algorithm = adam.SPEC

    def __init__(self, params, lr: float | torch.Tensor = Default(1e-3),
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = Default(1e-8),
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False, state_dtype: torch.dtype | None = None,
                 max_grad_norm: float | None = None, on_nonfinite: str = "propagate",
                 eps_in_sqrt: bool | None = None, eps_hat: bool | None = None,
                 bias_correction: bool = True, convention: str = "torch",
                 flat: bool = False) -> None:
        if eps_in_sqrt is True and eps_hat is None:
            eps_hat = False  # an explicit ε placement wins over the convention's (ε̂ in tf1/keras)
        hp = resolve("adam", convention, dict(lr=lr, eps=eps, eps_in_sqrt=eps_in_sqrt,
                                              eps_hat=eps_hat))
        defaults = dict(**hp, betas=betas, weight_decay=weight_decay, amsgrad=amsgrad,
                        foreach=foreach, maximize=maximize, capturable=capturable,
                        differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay,
                        bias_correction=bias_correction, convention=convention,
                        **common_defaults(state_dtype, max_grad_norm, on_nonfinite, flat))
        super().__init__(params, defaults)


class AdamW(Adam):
    def __init__(self, params, lr: float | torch.Tensor = Default(1e-3),
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = Default(1e-8),
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None,
                 on_nonfinite: str = "propagate", eps_in_sqrt: bool | None = None,
                 eps_hat: bool | None = None, bias_correction: bool = True,
                 convention: str = "torch", flat: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         state_dtype=state_dtype, max_grad_norm=max_grad_norm,
                         on_nonfinite=on_nonfinite, decoupled_weight_decay=True,
                         eps_in_sqrt=eps_in_sqrt, eps_hat=eps_hat,
                         bias_correction=bias_correction, convention=convention,
                         flat=flat)


Adam.__doc__ = compose(Adam, """
    Adam with AMSGrad and decoupled weight decay; drop-in for torch.optim.Adam, and with
    ``convention`` an exact TF1 or Keras Adam.
    """, """
    >>> import torch, adaptim
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = adaptim.Adam([w], lr=0.1)
    >>> w.grad = torch.tensor([0.5, -0.5])
    >>> opt.step()
    >>> w  # the first step moves every coordinate by η (m̂ / √v̂ = ±1)
    Parameter containing:
    tensor([ 0.9000, -1.9000], requires_grad=True)
    >>> opt.state[w]["step"], opt.state[w]["exp_avg"]
    (tensor(1.), tensor([ 0.0500, -0.0500]))
    """)

AdamW.__doc__ = compose(AdamW, """
    AdamW (Loshchilov & Hutter 2019): Adam with weight decay decoupled from the adaptive step,
    θ ← θ (1 − η λ) before the Adam update; drop-in for torch.optim.AdamW (λ = 0.01).
    """, """
    >>> import torch, adaptim
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = adaptim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> w.grad = torch.tensor([0.0, 0.0])
    >>> opt.step()
    >>> w  # no gradient: only the decay θ (1 − η λ) = 0.95 θ
    Parameter containing:
    tensor([ 0.9500, -1.9000], requires_grad=True)
    """)
