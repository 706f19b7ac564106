"""The reference rule of AdaGrad: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.adagrad`."""

from __future__ import annotations

from torch import Tensor

__all__ = ["adagrad", "adagrad_tensor"]


def adagrad_tensor(
    param: Tensor,
    grad: Tensor,
    state_sum: Tensor,
    step: int,
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    eps_in_sqrt: bool,
) -> None:
    """One AdaGrad step on one real tensor, in place; ``step`` is the 1-based count after this step."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum.addcmul_(grad, grad, value=1)
    std = state_sum.add(eps).sqrt_() if eps_in_sqrt else state_sum.sqrt().add_(eps)
    param.addcdiv_(grad, std, value=-clr)


def adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
) -> None:
    """Functional AdaGrad over lists of real tensors; increments each ``state_steps`` tensor."""
    for i, param in enumerate(params):
        state_steps[i] += 1
        adagrad_tensor(param, grads[i], state_sums[i], int(state_steps[i].item()), lr=lr,
                       lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, maximize=maximize,
                       eps_in_sqrt=eps_in_sqrt)
