"""Recurrent networks: the adding problem (long-range dependency; vanilla RNN vs LSTM vs GRU)
and an RNN whose gradients explode, trained with and without gradient clipping."""

from __future__ import annotations

import torch
from torch import nn

from adaptim.lab.tasks._base import RunOutput, Task, seeded_generator, train

__all__ = ["adding_batch", "adding_task", "exploding_task", "ADDING_BASELINE"]

# Predicting the mean (1.0) of the sum of two U(0, 1) numbers gives MSE = Var = 2/12.
ADDING_BASELINE = 1.0 / 6.0


def adding_batch(batch: int, length: int, generator: torch.Generator, device):
    """The adding problem (Hochreiter & Schmidhuber 1997): a sequence of (value, marker) pairs,
    values U(0, 1), exactly two markers (one in each half); the target is the sum of the two
    marked values, so the network must carry information across the whole sequence."""
    values = torch.rand(batch, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)
    y = (values * markers).sum(dim=1, keepdim=True)
    return x.to(device), y.to(device)


class _SequenceRegressor(nn.Module):
    def __init__(self, cell: str, hidden: int, nonlinearity: str = "tanh"):
        super().__init__()
        if cell == "lstm":
            self.rnn = nn.LSTM(2, hidden, batch_first=True)
        elif cell == "gru":
            self.rnn = nn.GRU(2, hidden, batch_first=True)
        else:
            self.rnn = nn.RNN(2, hidden, batch_first=True, nonlinearity=nonlinearity)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


ADDING_LENGTH = 15
ADDING_HIDDEN = 24
BATCH = 32


def _fit_sequence(model, make_optimizer, seed, steps, device, length, *, clip_norm=None,
                  record_grad_norm=False) -> RunOutput:
    params = list(model.parameters())
    optimizer = make_optimizer(params)
    gen = seeded_generator(seed, salt=2)
    loss_fn = nn.MSELoss()

    def compute_loss(step):
        x, y = adding_batch(BATCH, length, gen, device)
        return loss_fn(model(x), y)

    out = train(params, optimizer, compute_loss, steps, clip_norm=clip_norm,
                record_grad_norm=record_grad_norm, probe_every=max(steps // 20, 1))
    x, y = adding_batch(512, length, seeded_generator(10_000 + seed, salt=3), device)
    with torch.no_grad():
        test_loss = float(loss_fn(model(x), y))
    out.scalars["test_loss"] = test_loss
    out.scalars["selection_loss"] = test_loss if test_loss == test_loss else float("inf")
    return out


def _run_adding(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    model = _SequenceRegressor(variant, ADDING_HIDDEN).to(device)
    return _fit_sequence(model, make_optimizer, seed, steps, device, ADDING_LENGTH)


EXPLODING_LENGTH = 30
EXPLODING_GAIN = 1.3   # recurrent weights = gain × a random orthogonal matrix
CLIP_NORM = 1.0


def _run_exploding(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    model = _SequenceRegressor("rnn", ADDING_HIDDEN, nonlinearity="relu")
    with torch.no_grad():
        # A ReLU RNN whose recurrent matrix has all singular values 1.3: signals and
        # gradients can grow about 1.3× per time step, i.e. up to ~2,600× over 30 steps.
        nn.init.orthogonal_(model.rnn.weight_hh_l0, gain=EXPLODING_GAIN)
    model.to(device)
    clip = CLIP_NORM if variant == "clipped" else None
    out = _fit_sequence(model, make_optimizer, seed, steps, device, EXPLODING_LENGTH,
                        clip_norm=clip, record_grad_norm=True)
    norms = [g for g in out.curves["grad_norm"] if g == g]
    out.scalars["max_grad_norm"] = max(norms) if norms else float("nan")
    return out


adding_task = Task(
    name="adding",
    summary=f"adding problem (T={ADDING_LENGTH}): vanilla RNN vs LSTM vs GRU",
    description=(f"The adding problem with sequences of {ADDING_LENGTH} steps: the target is the "
                 "sum of two marked values, one in each half of the sequence, so the error "
                 f"signal must travel up to {ADDING_LENGTH} steps back. Always answering 1.0 "
                 f"scores MSE {ADDING_BASELINE:.3f} (the baseline line in the plot). A fresh "
                 f"batch of {BATCH} sequences every step; {ADDING_HIDDEN} hidden units; the "
                 "sweep (on the GRU) picks the learning rate by the MSE on 512 held-out "
                 "sequences, and the same rate is used for all three cells."),
    variants=("gru", "lstm", "rnn"),
    run=_run_adding,
    steps=150,
    fast_steps=25,
    target={"lstm": 0.05, "gru": 0.05, "rnn": 0.05},
    optimizers=("adagrad", "rmsprop", "adam"),
    sweep_on_first_variant=True,
    grid_exponents=(0, 1),
    loss_name="MSE",
    test_metric="test_loss",
)

exploding_task = Task(
    name="exploding",
    summary=f"exploding gradients: ReLU RNN (recurrent gain {EXPLODING_GAIN}) with and without clipping",
    description=(f"A ReLU RNN on the adding problem (T={EXPLODING_LENGTH}) whose recurrent "
                 f"matrix is {EXPLODING_GAIN} × an orthogonal matrix, so gradients grow "
                 "geometrically with the sequence length. The learning rate is swept with "
                 f"clipping on (adaptim.clip_grad_norm_, max norm {CLIP_NORM}) and the "
                 "same rate is then used without clipping: the plot shows the gradient norm "
                 "before clipping and the loss. A non-finite loss ends a run (diverged)."),
    variants=("clipped", "unclipped"),
    run=_run_exploding,
    steps=120,
    fast_steps=25,
    target={"clipped": 0.1, "unclipped": 0.1},
    optimizers=("sgd", "adam"),
    sweep_on_first_variant=True,
    lr_scale={"sgd": 0.1, "momentum": 0.1},
    loss_name="MSE",
    test_metric="test_loss",
)
