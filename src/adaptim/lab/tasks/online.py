"""Online learning on a stream whose target switches midway: how fast each optimizer
recovers, and what its effective learning rate does over the stream."""

from __future__ import annotations

import math

import torch
from torch import nn

from adaptim.lab.stats import decay_ratio
from adaptim.lab.summary import smoothed
from adaptim.lab.tasks._base import Arm, RunOutput, Task, seeded_generator, train

__all__ = ["RECOVERED", "WARMUP", "online_task"]

DIM = 10
BATCH = 8
NOISE = 0.1
WARMUP = 20      # probes before this step are left out of the decay ratio
RECOVERED = 0.05  # "recovered": smoothed prequential MSE back below this (5 × the noise floor)


def _run(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    gen = seeded_generator(seed, salt=4)
    # Two unrelated target weight vectors of norm 2: w₁ for the first half, w₂ after.
    w1, w2 = (2.0 * w / w.norm() for w in torch.randn(2, DIM, generator=gen))
    switch = steps // 2
    model = nn.Linear(DIM, 1).to(device)
    params = list(model.parameters())
    optimizer = make_optimizer(params)

    def compute_loss(step):
        w_true = (w1 if step < switch else w2).to(device)
        x = torch.randn(BATCH, DIM, generator=gen).to(device)
        y = x @ w_true + NOISE * torch.randn(BATCH, generator=gen).to(device)
        # Prequential: the loss is measured on the new batch before the model learns from it.
        return nn.functional.mse_loss(model(x).squeeze(1), y)

    out = train(params, optimizer, compute_loss, steps, probe_every=max(steps // 100, 1))
    losses = out.curves["loss"]
    after = losses[switch:]
    finite = all(math.isfinite(x) for x in losses)
    out.scalars["tracking_loss"] = sum(after) / len(after) if finite and after else math.inf
    out.scalars["selection_loss"] = sum(losses) / len(losses) if finite else math.inf
    recovery = float(len(after) + 1)  # not recovered within the run: one past its end
    if finite:
        for k, value in enumerate(smoothed(after), start=1):
            if value <= RECOVERED:
                recovery = float(k)
                break
    out.scalars["recovery_steps"] = recovery
    probe_steps, lrs = out.sparse["effective_lr"]
    ratio = decay_ratio(probe_steps, lrs, start=WARMUP)
    out.scalars["efflr_log10_ratio"] = math.log10(ratio) if ratio > 0 else math.nan
    return out


_OPTS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam")

_CENTRES = {"momentum": 0.00999, "adagrad": 0.999, "adadelta": 31.6}

online_task = Task(
    name="online",
    summary="online regression whose target switches midway (non-stationary stream)",
    description=(f"A stream of batches of {BATCH} from y = w·x + noise (σ = {NOISE}), x in "
                 f"R^{DIM}; w jumps to an unrelated vector halfway through. The loss is "
                 "measured on each new batch before the update (prequential). Recovery: steps "
                 f"after the switch until the smoothed loss is back below {RECOVERED}. The "
                 "effective learning rate (median over entries of the factor multiplying the "
                 f"gradient) is probed every 1 % of the run; its decay ratio compares the last "
                 f"fifth of the probes with the first fifth after step {WARMUP}."),
    variants=("switch",),
    run=_run,
    steps=600,
    fast_steps=60,
    target={"switch": 0.05},
    # Grids of the arms no claim reads the sweep of are centred where their sweeps settle
    # (Adam's and SGD's sweeps feed the learning-rate-window row and keep the typical rates).
    arms=tuple(Arm(o, "switch", centre=_CENTRES.get(o)) for o in _OPTS),
    loss_name="prequential MSE",
    lr_scale={"adagrad": 10.0, "rmsprop": 10.0, "adam": 10.0},
    figures=("loss", "efflr", "sweep"),
)
