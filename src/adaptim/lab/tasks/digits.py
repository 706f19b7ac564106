"""Classification of scikit-learn's bundled 8×8 digits (1,797 images; nothing is downloaded):
an MLP, a small CNN, and AdamW vs Adam+L2 on a small training set."""

from __future__ import annotations

import functools

import torch
from torch import nn

from adaptim.lab.tasks._base import Arm, RunOutput, Task, seeded_generator, train

__all__ = [
    "digits_cnn_task",
    "digits_mlp_task",
    "fit_classifier",
    "load_digits_split",
    "weight_decay_task",
]

SPLIT_SEED = 20240601  # the train/val/test split is fixed; run seeds change init and batches


@functools.lru_cache(maxsize=4)
def _digits_cpu():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return x[order], y[order]


def load_digits_split(device, n_train: int = 1000, n_val: int = 397):
    """(x_train, y_train, x_val, y_val, x_test, y_test) on ``device``; features scaled to [0, 1].
    The remaining images after train and validation are the test set (400 by default)."""
    x, y = _digits_cpu()
    parts = (slice(0, n_train), slice(n_train, n_train + n_val), slice(1397, None))
    out = []
    for part in parts:
        out += [x[part].to(device), y[part].to(device)]
    return tuple(out)


@torch.no_grad()
def _evaluate(model, x, y) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    model.train()
    loss = nn.functional.cross_entropy(logits, y)
    return float(loss), float((logits.argmax(1) == y).float().mean())


MATCH_ACCURACY = 0.97  # training accuracy at which generalization is compared
EARLY_STEPS = 30


def fit_classifier(model, make_optimizer, seed, steps, device, *, batch_size=64,
                   n_train=1000, after_backward=None, after_step=None, probe_every=0,
                   match_every=0, cosine=False) -> RunOutput:
    """Mini-batch cross-entropy training on the digits; records validation loss every few
    steps and test accuracy at the end. ``selection_loss`` (for the sweep) is the final
    validation loss; ``early_loss`` the mean training loss of the first steps.
    ``match_every``: every so many steps, check the training accuracy; the first time it
    reaches ``MATCH_ACCURACY`` the test accuracy is kept as ``matched_test_accuracy`` (NaN if
    it never does). ``cosine``: the learning rate follows a cosine from its value to 0."""
    x_tr, y_tr, x_val, y_val, x_te, y_te = load_digits_split(device, n_train=n_train)
    params = [p for p in model.parameters()]
    optimizer = make_optimizer(params)
    gen = seeded_generator(seed, salt=1)
    full_batch = batch_size >= len(y_tr)
    val_every = max(steps // 5, 1)  # a full validation pass costs ~6 training steps
    val_steps, val_losses = [], []

    def compute_loss(step):
        if step % val_every == 0:
            val_steps.append(step)
            val_losses.append(_evaluate(model, x_val, y_val)[0])
        if full_batch:
            xb, yb = x_tr, y_tr
        else:
            idx = torch.randint(len(y_tr), (batch_size,), generator=gen).to(device)
            xb, yb = x_tr[idx], y_tr[idx]
        return nn.functional.cross_entropy(model(xb), yb)

    matched = []
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
                if cosine else None)

    extra_after_step = after_step

    def after_step(step):
        if extra_after_step is not None:
            extra_after_step(step)
        if schedule is not None:
            schedule.step()
        if match_every and not matched and (step + 1) % match_every == 0:
            if _evaluate(model, x_tr, y_tr)[1] >= MATCH_ACCURACY:
                matched.append(_evaluate(model, x_te, y_te)[1])

    out = train(params, optimizer, compute_loss, steps, after_backward=after_backward,
                after_step=after_step, probe_every=probe_every)
    val_loss, val_acc = _evaluate(model, x_val, y_val)
    test_loss, test_acc = _evaluate(model, x_te, y_te)
    train_loss, train_acc = _evaluate(model, x_tr, y_tr)
    val_steps.append(steps)
    val_losses.append(val_loss)
    out.sparse["val_loss"] = (val_steps, val_losses)
    out.scalars.update(val_loss=val_loss, val_accuracy=val_acc, test_loss=test_loss,
                       test_accuracy=test_acc, train_accuracy=train_acc,
                       selection_loss=val_loss if val_loss == val_loss else float("inf"))
    early = out.curves["loss"][:EARLY_STEPS]
    out.scalars["early_loss"] = sum(early) / len(early)
    if match_every:
        out.scalars["matched_test_accuracy"] = matched[0] if matched else float("nan")
    return out


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


class _SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 8×4×4
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16×2×2
        )
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, 8, 8)).flatten(1))


def _run_mlp(variant, make_optimizer, seed, steps, device) -> RunOutput:
    return fit_classifier(_mlp(seed).to(device), make_optimizer, seed, steps, device,
                          probe_every=max(steps // 20, 1), match_every=10)


def _run_cnn(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    return fit_classifier(_SmallCNN().to(device), make_optimizer, seed, steps, device,
                          probe_every=max(steps // 20, 1))


def _run_small_train(variant, make_optimizer, seed, steps, device) -> RunOutput:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10)).to(device)
    return fit_classifier(model, make_optimizer, seed, steps, device, batch_size=10_000,
                          n_train=SMALL_TRAIN, cosine=True)


SMALL_TRAIN = 200
_OPTS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw")

# Where the sweeps of the arms no claim reads the sweep of settle (their grids' centres).
_MLP_CENTRES = {"adagrad": 0.0999, "rmsprop": 0.00999, "adadelta": 9.99, "adamw": 0.0316}
_CNN_CENTRES = {"momentum": 0.0999, "nesterov": 0.0999, "rmsprop": 0.00999}

digits_mlp_task = Task(
    name="digits-mlp",
    summary="digits (sklearn, 8×8) with an MLP 64-64-10, mini-batches of 64",
    description=("Handwritten digits bundled with scikit-learn: 1,000 training, 397 validation "
                 "and 400 test images. A 64-64-10 ReLU MLP trained with cross-entropy on "
                 "mini-batches of 64. The sweep picks the learning rate with the lowest final "
                 "validation loss; test accuracy is reported beside the loss, and the test "
                 f"accuracy at the first check (every 10 steps) where the training accuracy "
                 f"reaches {MATCH_ACCURACY:.0%} (matched training accuracy). Adam also runs "
                 "without bias correction (tuned), and AdaDelta and Adam untuned at their "
                 "default learning rates."),
    variants=("mlp",),
    run=_run_mlp,
    steps=300,
    fast_steps=30,
    target={"mlp": 0.15},
    test_metric="test_accuracy",
    # Grids of the arms no claim reads the sweep of are centred where their sweeps settle
    # (Adam's and SGD's sweeps feed the learning-rate-window row and keep the typical rates).
    arms=tuple(Arm(o, "mlp", centre=_MLP_CENTRES.get(o)) for o in _OPTS)
    + (Arm("adam", "mlp", "adam no bias correction", fixed={"bias_correction": False}),
       Arm("adadelta", "mlp", "adadelta default", fixed={"lr": 1.0}, tune=False),
       Arm("adam", "mlp", "adam default", fixed={"lr": 1e-3}, tune=False)),
)

digits_cnn_task = Task(
    name="digits-cnn",
    summary="digits with a small CNN (2 conv layers, 8 and 16 channels)",
    description=("The same digits split with a small convolutional network: conv 3×3 (8) → "
                 "max-pool → conv 3×3 (16) → max-pool → linear, mini-batches of 64."),
    variants=("cnn",),
    run=_run_cnn,
    steps=120,
    fast_steps=25,
    target={"cnn": 0.25},
    test_metric="test_accuracy",
    arms=tuple(Arm(o, "cnn", centre=_CNN_CENTRES.get(o))
               for o in ("sgd", "momentum", "nesterov", "rmsprop", "adam")),
)

weight_decay_task = Task(
    name="weight-decay",
    summary=f"AdamW vs Adam+L2 on a small training set ({SMALL_TRAIN} digits), cosine schedule",
    description=(f"Only {SMALL_TRAIN} training digits, a 64-128-128-10 MLP trained full-batch "
                 "with a cosine learning-rate schedule to zero, so the network overfits and "
                 "regularization decides the test accuracy. Adam's weight_decay is an L2 "
                 "penalty added to the gradient (and so rescaled by the adaptive denominator); "
                 "AdamW decays the weights directly (Loshchilov & Hutter 2019). Each arm "
                 "sweeps learning rate × weight decay on the validation loss (the decay grids "
                 "differ because AdamW's decay is multiplied by the learning rate); 8 paired "
                 "evaluation seeds."),
    variants=("small-train",),
    run=_run_small_train,
    steps=300,
    fast_steps=30,
    target={"small-train": 0.05},
    arms=(Arm("adam", "small-train", extra_grid={"weight_decay": (1e-4, 1e-3, 1e-2)}),
          Arm("adamw", "small-train", extra_grid={"weight_decay": (1e-2, 1e-1, 1.0)})),
    grid_exponents=(-1, 0, 1),
    loss_name="training loss (full batch)",
    stochastic=False,
    test_metric="test_accuracy",
    eval_seeds=8,
)
