"""Logistic regression on sparse features with Zipf-distributed frequencies: most features
are rare, and a rare feature's weight gets a gradient only when it occurs."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from adaptim.lab.tasks._base import Arm, RunOutput, Task, seeded_generator, train

__all__ = ["sparse_batch", "sparse_task"]

FEATURES = 1000
ACTIVE = 10      # features present per example
ZIPF = 1.1       # P(feature k) ∝ 1 / k^ZIPF
BATCH = 32


@functools.lru_cache(maxsize=1)
def _zipf_probs():
    ranks = torch.arange(1, FEATURES + 1, dtype=torch.float64)
    p = ranks ** -ZIPF
    return (p / p.sum()).float()


def sparse_batch(n: int, w_true: torch.Tensor, gen: torch.Generator):
    """``n`` examples with up to ``ACTIVE`` features each (draws by Zipf frequency, repeats
    collapse); labels from a logistic model with weights ``w_true``."""
    idx = torch.multinomial(_zipf_probs(), n * ACTIVE, replacement=True,
                            generator=gen).view(n, ACTIVE)
    x = torch.zeros(n, FEATURES)
    x.scatter_(1, idx, 1.0)
    p = torch.sigmoid(x @ w_true)
    y = (torch.rand(n, generator=gen) < p).float()
    return x, y


def _run(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    gen = seeded_generator(seed, salt=11)
    w_true = 1.5 * torch.randn(FEATURES, generator=gen)
    x_val, y_val = sparse_batch(2000, w_true, gen)
    x_test, y_test = sparse_batch(2000, w_true, gen)
    model = nn.Linear(FEATURES, 1).to(device)
    nn.init.zeros_(model.weight)
    params = list(model.parameters())
    optimizer = make_optimizer(params)
    loss_fn = nn.BCEWithLogitsLoss()

    def compute_loss(step):
        x, y = sparse_batch(BATCH, w_true, gen)
        return loss_fn(model(x.to(device)).squeeze(1), y.to(device))

    out = train(params, optimizer, compute_loss, steps)
    with torch.no_grad():
        val = float(loss_fn(model(x_val.to(device)).squeeze(1), y_val.to(device)))
        test = float(loss_fn(model(x_test.to(device)).squeeze(1), y_test.to(device)))
    out.scalars["selection_loss"] = val if math.isfinite(val) else math.inf
    out.scalars["test_loss"] = test
    return out


_OPTS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam")

_CENTRES = {"momentum": 0.999, "nesterov": 0.999, "adagrad": 0.999, "adadelta": 31.6}

sparse_task = Task(
    name="sparse",
    summary=(f"logistic regression on sparse Zipf features ({FEATURES} features, {ACTIVE} per "
             "example)"),
    description=(f"Each example has up to {ACTIVE} of {FEATURES} binary features, drawn with "
                 f"probability ∝ 1/rank^{ZIPF}, so most features are rare; the label follows a "
                 "logistic model with random weights. A linear model (zero init) sees a fresh "
                 f"batch of {BATCH} every step; the sweep picks on 2,000 validation examples, "
                 "the held-out loss is on 2,000 others. AdaDelta and Adam also run untuned at "
                 "their default learning rates (1.0 and 0.001)."),
    variants=("zipf",),
    run=_run,
    steps=400,
    fast_steps=60,
    target={"zipf": 0.6},
    # Grids of the arms no claim reads the sweep of are centred where their sweeps settle
    # (Adam's and SGD's sweeps feed the learning-rate-window row and keep the typical rates).
    arms=tuple(Arm(o, "zipf", centre=_CENTRES.get(o)) for o in _OPTS)
    + (Arm("adadelta", "zipf", "adadelta default", fixed={"lr": 1.0}, tune=False),
       Arm("adam", "zipf", "adam default", fixed={"lr": 1e-3}, tune=False)),
    lr_scale={"sgd": 10.0, "momentum": 10.0, "nesterov": 10.0, "adagrad": 10.0,
              "rmsprop": 10.0, "adam": 10.0},
    loss_name="log loss",
)
