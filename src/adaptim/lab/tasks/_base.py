"""What every lab task shares: the task description, the output of one run and the training loop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from adaptim.clip import clip_grad_norm_, total_grad_norm
from adaptim.lab.probes import effective_lr, state_bytes

__all__ = ["Arm", "RunOutput", "Task", "seeded_generator", "train"]


@dataclass
class RunOutput:
    """Everything one training run produced.

    ``curves`` maps a name to per-step values (``loss`` always, one value per step);
    ``sparse`` maps a name to ``(steps, values)`` recorded every few steps (validation loss,
    effective learning rate, per-layer gradient norms); ``scalars`` holds end-of-run numbers
    (``test_accuracy``, ``selection_loss``, ...).
    """

    curves: dict[str, list[float]] = field(default_factory=dict)
    sparse: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)  # wall time after each step
    state_bytes: int = 0
    n_params: int = 0
    diverged: bool = False


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: an optimizer on one variant of a task, tuned on its own.

    - ``name``: how reports and claims refer to it (default: the optimizer's name);
    - ``fixed``: hyperparameters that are not swept (``bias_correction=False``, a default lr);
    - ``tune``: False runs ``fixed`` as given (its ``lr`` or the optimizer's default);
    - ``centre``: centre of the learning-rate grid (default: the optimizer's typical rate times
      the task's ``lr_scale``); ``exponents``: the grid's half-decades around it;
    - ``extra_grid``: further swept hyperparameters (weight decay), crossed with the rates;
    - ``lr_of``/``lr_shift``: not tuned; runs at the tuned setting of the arm named ``lr_of``
      (same task) with its learning rate moved by ``lr_shift`` half-decades.
    """

    optimizer: str
    variant: str
    name: str = ""
    fixed: dict = field(default_factory=dict)
    tune: bool = True
    centre: float | None = None
    exponents: tuple[int, ...] | None = None
    extra_grid: dict = field(default_factory=dict)
    lr_of: str = ""
    lr_shift: int = 0

    @property
    def label(self) -> str:
        return self.name or self.optimizer


@dataclass(frozen=True)
class Task:
    """One experiment of the suite.

    - ``variants``: the things compared besides the optimizer (surfaces, cells, activations,
      clipping on/off).
    - ``arms``: the (variant, optimizer, settings) combinations this task runs, each tuned on
      its own; ``None``: every variant with every optimizer in ``optimizers`` (``None``: all).
    - ``lr_scale``: multiplies every optimizer's centre learning rate (see :mod:`adaptim.lab.sweep`)
      for tasks whose gradients are much larger or smaller than a small network's.
    - ``target``: the loss a run must reach for the time-to-target numbers (AlgoPerf style),
      per variant; ``steps``/``fast_steps``: an int or a per-variant dict.
    - ``grid_exponents``: the default learning-rate grid of this task's arms.
    - ``tier``: ``default`` (in every run) or ``extended`` (only with ``--extended``).
    - ``tune_seeds``: how many tuning seeds every sweep point runs on (the sweep compares
      their mean score); more than one for tasks whose single runs are noisy (reinforcement
      learning), where one seed would pick a learning rate by luck.
    - ``eval_seeds``: the least number of evaluation seeds this task's claims need;
      ``max_seeds``: the most a task that decides no claim (an illustration) runs.
    - ``figures``: which figures the report draws for it (``loss``, ``sweep``, ``paths``,
      ``efflr``, ``layers``, ``gradnorm``); ``baseline``: a reference loss line in the plots.
    """

    name: str
    summary: str
    description: str
    variants: tuple[str, ...]
    run: Callable[..., RunOutput]
    steps: int | dict
    fast_steps: int | dict
    target: dict[str, float]
    optimizers: tuple[str, ...] | None = None
    arms: tuple[Arm, ...] | None = None
    lr_scale: dict[str, float] = field(default_factory=dict)
    extra_grid: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    grid_exponents: tuple[int, ...] | None = None  # None: adaptim.lab.sweep.GRID_EXPONENTS
    loss_name: str = "training loss"
    test_metric: str | None = None  # name of the scalar that measures generalization
    log_loss: bool = True
    stochastic: bool = True  # mini-batches / noise: plots show the EMA-smoothed loss
    tier: str = "default"
    tune_seeds: int = 1
    eval_seeds: int = 0
    max_seeds: int = 0
    figures: tuple[str, ...] = ("loss", "sweep")
    baseline: float | None = None

    def all_arms(self) -> list[Arm]:
        if self.arms is not None:
            return list(self.arms)
        from adaptim.registry import list_optimizers

        opts = self.optimizers or tuple(list_optimizers())
        return [Arm(opt, v) for v in self.variants for opt in opts]

    def steps_for(self, variant: str, fast: bool = False) -> int:
        steps = self.fast_steps if fast else self.steps
        return steps[variant] if isinstance(steps, dict) else steps


def seeded_generator(seed: int, device: torch.device | str = "cpu",
                     salt: int = 0) -> torch.Generator:
    """A private random stream for data, so that runs of different optimizers see the same data."""
    gen = torch.Generator(device=device)
    gen.manual_seed(1_000_003 * seed + salt)
    return gen


def train(params: list[Tensor], optimizer: torch.optim.Optimizer,
          compute_loss: Callable[[int], Tensor], steps: int, *,
          clip_norm: float | None = None,
          probe_every: int = 0,
          probes: dict[str, Callable[[], float]] | None = None,
          after_backward: Callable[[int], None] | None = None,
          after_step: Callable[[int], None] | None = None,
          record_grad_norm: bool = False) -> RunOutput:
    """The loop every task uses: ``loss = compute_loss(step)``, backward, optional clipping
    (``adaptim.clip_grad_norm_``, identical to torch.nn.utils'), ``optimizer.step()``.

    Records the loss every step and the wall time; stops early when the loss becomes
    non-finite (``diverged``; the rest of the curve is NaN). ``probes`` are read every
    ``probe_every`` steps after the update (e.g. the effective learning rate); the learning
    rate probe ``effective_lr`` is added automatically when ``probe_every`` > 0.
    ``after_backward(step)`` sees the gradients, ``after_step(step)`` runs after the update
    (a learning-rate schedule, update-size probes).
    """
    out = RunOutput(n_params=sum(p.numel() for p in params))
    losses: list[float] = []
    grad_norms: list[float] = []
    probes = dict(probes or {})
    if probe_every:
        probes.setdefault("effective_lr", lambda: effective_lr(optimizer))
    probe_steps: list[int] = []
    probe_values: dict[str, list[float]] = {k: [] for k in probes}
    start = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = compute_loss(step)
        value = float(loss.detach())
        if not math.isfinite(value):
            out.diverged = True
            losses.extend([math.nan] * (steps - step))
            grad_norms.extend([math.nan] * (steps - step))
            out.seconds.extend([out.seconds[-1] if out.seconds else 0.0] * (steps - step))
            break
        loss.backward()
        if after_backward is not None:
            after_backward(step)
        if clip_norm is not None:
            norm = clip_grad_norm_(params, clip_norm)
        elif record_grad_norm:
            norm = total_grad_norm([p.grad for p in params if p.grad is not None], 2.0)
        else:
            norm = None
        if norm is not None:
            grad_norms.append(float(norm))
        optimizer.step()
        if after_step is not None:
            after_step(step)
        losses.append(value)
        out.seconds.append(time.perf_counter() - start)
        if probe_every and (step % probe_every == 0 or step == steps - 1):
            probe_steps.append(step)
            for key, probe in probes.items():
                probe_values[key].append(float(probe()))
    out.curves["loss"] = losses
    if grad_norms:
        out.curves["grad_norm"] = grad_norms
    for key, values in probe_values.items():
        out.sparse[key] = (list(probe_steps), values)
    out.state_bytes = state_bytes(optimizer)
    return out
