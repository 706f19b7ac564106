"""The reference rule of RMSProp: the update, per tensor, with torch operations. The math, the
state and the options are in :mod:`adaptim.algorithms.rmsprop`."""

from __future__ import annotations

from torch import Tensor

__all__ = ["rmsprop", "rmsprop_tensor"]


def rmsprop_tensor(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor | None,
    momentum_buffer: Tensor | None,
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    eps_in_sqrt: bool,
    lr_in_momentum: bool,
    differentiable: bool = False,
) -> None:
    """One RMSProp step on one real tensor, in place."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    if centered:
        grad_avg.lerp_(grad, 1 - alpha)
        # E[g²] − E[g]² ≥ 0 exactly (Cauchy–Schwarz), but rounding (a fused multiply-add) can
        # make it slightly negative when the two nearly cancel (α → 0): √ of that is NaN, as in
        # torch.optim. Clamping changes nothing where the value is ≥ 0.
        s = square_avg.addcmul(grad_avg, grad_avg, value=-1).clamp_min_(0)
        avg = s.add_(eps).sqrt_() if eps_in_sqrt else s.sqrt_()
    else:
        avg = square_avg.add(eps).sqrt_() if eps_in_sqrt else square_avg.sqrt()
    if not eps_in_sqrt:
        # differentiable: sqrt's result is saved for backward, so ε is added out of place
        avg = avg.add(eps) if differentiable else avg.add_(eps)
    if momentum > 0:
        if lr_in_momentum:
            momentum_buffer.mul_(momentum).addcdiv_(grad, avg, value=lr)
            param.sub_(momentum_buffer)
        else:
            momentum_buffer.mul_(momentum).addcdiv_(grad, avg)
            param.add_(momentum_buffer, alpha=-lr)
    else:
        param.addcdiv_(grad, avg, value=-lr)


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor | None],
    momentum_buffers: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    lr: float,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    lr_in_momentum: bool = False,
    differentiable: bool = False,
) -> None:
    """Functional RMSProp over lists of real tensors; increments each ``state_steps`` tensor.

    Example::

        >>> p, g, v = torch.ones(2), torch.tensor([1.0, -2.0]), torch.zeros(2)
        >>> rmsprop([p], [g], [v], [None], [None], [torch.tensor(0.)], lr=0.01, alpha=0.9,
        ...         eps_in_sqrt=True)
    """
    for i, param in enumerate(params):
        state_steps[i] += 1
        rmsprop_tensor(param, grads[i], square_avgs[i], grad_avgs[i], momentum_buffers[i], lr=lr,
                       alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                       centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt,
                       lr_in_momentum=lr_in_momentum, differentiable=differentiable)
