"""Recurrent networks: the adding problem (long-range dependency; vanilla RNN vs LSTM vs GRU)
and an RNN whose gradients explode, trained with and without gradient clipping."""

from __future__ import annotations

import torch
from torch import nn

from adaptim.lab.tasks._base import Arm, RunOutput, Task, seeded_generator, train

__all__ = [
    "ADDING_BASELINE",
    "SOLVED",
    "adding_batch",
    "adding_gru_task",
    "adding_task",
    "exploding_task",
]

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
            with torch.no_grad():  # forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015)
                self.rnn.bias_ih_l0[hidden:2 * hidden].fill_(1.0)
                self.rnn.bias_hh_l0[hidden:2 * hidden].fill_(0.0)
        elif cell == "gru":
            self.rnn = nn.GRU(2, hidden, batch_first=True)
        else:
            self.rnn = nn.RNN(2, hidden, batch_first=True, nonlinearity=nonlinearity)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


ADDING_HIDDEN = 24
BATCH = 32
SOLVED = 0.01  # held-out MSE below this: the run solved the task (baseline 0.167)


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
    with torch.no_grad():
        x, y = adding_batch(512, length, seeded_generator(10_000 + seed, salt=3), device)
        test_loss = float(loss_fn(model(x), y))
        x, y = adding_batch(512, length, seeded_generator(20_000 + seed, salt=5), device)
        val_loss = float(loss_fn(model(x), y))
    out.scalars["test_loss"] = test_loss if test_loss == test_loss else float("inf")
    out.scalars["solved"] = float(test_loss < SOLVED)
    out.scalars["selection_loss"] = val_loss if val_loss == val_loss else float("inf")
    return out


def _cell_and_length(variant: str) -> tuple[str, int]:
    cell, length = variant.split("-T")
    return cell, int(length)


def _run_adding(variant, make_optimizer, seed, steps, device) -> RunOutput:
    cell, length = _cell_and_length(variant)
    torch.manual_seed(seed)
    model = _SequenceRegressor(cell, ADDING_HIDDEN).to(device)
    return _fit_sequence(model, make_optimizer, seed, steps, device, length)


EXPLODING_LENGTH = 30
EXPLODING_GAIN = 2.0   # recurrent weights = gain × a random orthogonal matrix
CLIP_NORM = 1.0


def _run_exploding(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    model = _SequenceRegressor("rnn", ADDING_HIDDEN, nonlinearity="relu")
    with torch.no_grad():
        # A ReLU RNN whose recurrent matrix has all singular values 2: signals and gradients
        # can grow about √2 × per step even after the ReLU halves them, ~30,000× over 30 steps.
        nn.init.orthogonal_(model.rnn.weight_hh_l0, gain=EXPLODING_GAIN)
    model.to(device)
    clip = CLIP_NORM if variant == "clipped" else None
    out = _fit_sequence(model, make_optimizer, seed, steps, device, EXPLODING_LENGTH,
                        clip_norm=clip, record_grad_norm=True)
    norms = [g for g in out.curves["grad_norm"] if g == g]
    out.scalars["max_grad_norm"] = max(norms) if norms else float("nan")
    out.scalars["first_grad_norm"] = norms[0] if norms else float("nan")
    return out


_ADDING_VARIANTS = ("lstm-T10", "rnn-T10", "lstm-T30", "rnn-T30")
# The GRU costs about 3× the LSTM per step on the CPU (torch runs the LSTM through oneDNN) and
# solves T = 30 within ~200 steps: it trains 400, the tanh RNN it is compared with 600.
_ADDING_STEPS = {"lstm-T10": 400, "rnn-T10": 400, "lstm-T30": 600, "rnn-T30": 600,
                 "gru-T30": 400}

adding_task = Task(
    name="adding",
    summary="adding problem at T = 10 and T = 30: tanh RNN vs LSTM, and optimizers on the LSTM",
    description=("The adding problem (Hochreiter & Schmidhuber 1997): a sequence of (value, "
                 "marker) pairs, the target is the sum of the two marked values, one in each "
                 "half, so the error signal must travel up to T steps back. Always answering "
                 f"1.0 scores MSE {ADDING_BASELINE:.3f} (the baseline line in the plot); a run "
                 f"with held-out MSE below {SOLVED} solved it. A fresh batch of {BATCH} "
                 f"sequences every step, {ADDING_HIDDEN} hidden units, the LSTM's forget-gate "
                 "bias set to 1; 400 steps at T = 10, 600 at T = 30. Every cell is tuned on "
                 "its own (validation sequences); the held-out MSE is on 512 other sequences. "
                 "RMSProp, AdaGrad and SGD with momentum also train the T = 10 LSTM."),
    variants=_ADDING_VARIANTS,
    run=_run_adding,
    steps={v: _ADDING_STEPS[v] for v in _ADDING_VARIANTS},
    fast_steps=25,
    target={v: 0.05 for v in _ADDING_VARIANTS},
    # Each grid is centred on the rate its sweep settles on, so it needs no extension (the
    # extension rule still moves a sweep whose winner lands on an edge).
    arms=(Arm("adam", "lstm-T10", centre=0.03), Arm("adam", "rnn-T10", centre=0.00948),
          Arm("adam", "lstm-T30", centre=0.03), Arm("adam", "rnn-T30", centre=0.003),
          Arm("rmsprop", "lstm-T10", centre=0.00948), Arm("adagrad", "lstm-T10", centre=0.0999),
          Arm("momentum", "lstm-T10", centre=0.316)),
    grid_exponents=(-1, 0, 1),
    loss_name="MSE",
    test_metric="test_loss",
    baseline=ADDING_BASELINE,
)

adding_gru_task = Task(
    name="adding-gru",
    summary="adding problem at T = 30 with a GRU, paired with the adding task's tanh RNN",
    description=("The adding problem of the adding task at T = 30 with a GRU, tuned on its "
                 "own; paired by seed with the tanh RNN at T = 30. The GRU trains 400 steps "
                 "(it solves the task within about 200), the RNN 600."),
    variants=("gru-T30",),
    run=_run_adding,
    steps={"gru-T30": _ADDING_STEPS["gru-T30"]},
    fast_steps=25,
    target={"gru-T30": 0.05},
    arms=(Arm("adam", "gru-T30", centre=0.0949),),
    grid_exponents=(-1, 0, 1),
    loss_name="MSE",
    test_metric="test_loss",
    baseline=ADDING_BASELINE,
)

exploding_task = Task(
    name="exploding",
    summary=f"exploding gradients: ReLU RNN (recurrent gain {EXPLODING_GAIN}), remedies as arms",
    description=(f"A ReLU RNN on the adding problem (T={EXPLODING_LENGTH}) whose recurrent "
                 f"matrix is {EXPLODING_GAIN} × an orthogonal matrix, so gradients grow "
                 "geometrically with the sequence length. Arms, each tuned on its own: "
                 f"clipping (adaptim.clip_grad_norm_, max norm {CLIP_NORM}), none, an L2 "
                 "penalty (lr × weight decay swept), and no clipping at 10× the tuned rate "
                 "(the 'lower learning rate' remedy seen from above). The plot shows the "
                 "gradient norm before clipping. A non-finite loss ends a run (diverged)."),
    variants=("clipped", "unclipped"),
    run=_run_exploding,
    steps=300,
    fast_steps=25,
    target={"clipped": 0.1, "unclipped": 0.1},
    # Grids centred where the sweeps settle (the unclipped RNN only trains at tiny rates).
    arms=(Arm("sgd", "clipped", centre=0.316), Arm("sgd", "unclipped", centre=3.16e-7),
          Arm("sgd", "unclipped", "sgd+L2", centre=0.0316,
              extra_grid={"weight_decay": (1e-4, 1e-3, 1e-2)}),
          Arm("sgd", "unclipped", "sgd lr×10", lr_of="sgd", lr_shift=2)),
    grid_exponents=(-1, 0, 1),
    loss_name="MSE",
    test_metric="test_loss",
    baseline=ADDING_BASELINE,
    figures=("loss", "gradnorm", "sweep"),
    eval_seeds=10,  # one bad seed moves a log-MSE mean a lot; the runs are cheap
)
