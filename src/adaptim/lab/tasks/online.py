"""Online learning with a drifting target: the best weights move while the model learns."""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptim.lab.tasks._base import RunOutput, Task, seeded_generator, train

__all__ = ["online_task"]

DIM = 10
BATCH = 8
NOISE = 0.1
PERIOD = 300   # steps for the true weight vector to turn a full circle


def _run(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    gen = seeded_generator(seed, salt=4)
    # The target weights rotate in the plane of two random orthonormal directions:
    # w*(t) = 2 (u cos ωt + v sin ωt); the loss never stays solved.
    basis, _ = torch.linalg.qr(torch.randn(DIM, 2, generator=gen))
    u, v = basis[:, 0] * 2.0, basis[:, 1] * 2.0
    model = nn.Linear(DIM, 1).to(device)
    params = list(model.parameters())
    optimizer = make_optimizer(params)

    def compute_loss(step):
        angle = 2 * math.pi * step / PERIOD
        w_true = (u * math.cos(angle) + v * math.sin(angle)).to(device)
        x = torch.randn(BATCH, DIM, generator=gen).to(device)
        y = x @ w_true + NOISE * torch.randn(BATCH, generator=gen).to(device)
        # Prequential: the loss is measured on the new batch before the model learns from it.
        return nn.functional.mse_loss(model(x).squeeze(1), y)

    out = train(params, optimizer, compute_loss, steps, probe_every=max(steps // 40, 1))
    losses = out.curves["loss"]
    tail = losses[len(losses) // 2:]
    tracking = sum(tail) / len(tail) if all(math.isfinite(x) for x in tail) else float("inf")
    out.scalars["tracking_loss"] = tracking
    out.scalars["selection_loss"] = tracking
    return out


online_task = Task(
    name="online",
    summary="online linear regression whose true weights keep rotating (non-stationary)",
    description=(f"A stream of batches of {BATCH} from y = w*(t)·x + noise (σ = {NOISE}), "
                 f"x in R^{DIM}, where w*(t) turns a full circle every {PERIOD} steps. The loss "
                 "is measured on each new batch before the update (prequential). The "
                 "tracking loss is the mean loss over the second half of the run; an "
                 "optimizer whose step size decays cannot keep up. The effective learning "
                 "rate (median over entries of the factor multiplying the gradient) is "
                 f"plotted for every optimizer. Noise floor: MSE {NOISE ** 2:.2g}."),
    variants=("drift",),
    run=_run,
    steps=400,
    fast_steps=60,
    target={"drift": 0.1},
    loss_name="prequential MSE",
    # Tracking a moving target needs larger steps than fitting a network.
    lr_scale={"adagrad": 10.0, "rmsprop": 10.0, "adam": 10.0, "adamw": 10.0},
)
