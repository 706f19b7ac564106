"""Numbers from runs: final loss, time to target, and per-(task, variant, optimizer) summaries
over seeds (mean and spread)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

__all__ = [
    "SMOOTHING",
    "GroupSummary",
    "final_loss",
    "selection_score",
    "smoothed",
    "steps_to_target",
    "summarize",
]

SMOOTHING = 0.9  # EMA factor for noisy mini-batch losses before the target test


def final_loss(curve: list[float]) -> float:
    """Mean of the last 10 % of the loss curve (at least one value); NaN if the run diverged."""
    if not curve:
        return math.nan
    tail = curve[-max(len(curve) // 10, 1):]
    if any(not math.isfinite(x) for x in tail):
        return math.nan
    return sum(tail) / len(tail)


def smoothed(curve: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average (as Adam's m̂), so step 1 is the raw loss."""
    avg, out = 0.0, []
    for t, x in enumerate(curve, start=1):
        avg = beta * avg + (1 - beta) * x
        out.append(avg / (1 - beta ** t))
    return out


def steps_to_target(curve: list[float], target: float) -> int | None:
    """First step (1-based) at which the smoothed loss is at or below ``target``; None if never."""
    for step, value in enumerate(smoothed(curve), start=1):
        if not math.isfinite(value):
            return None
        if value <= target:
            return step
    return None


def selection_score(output) -> float:
    """What the sweep minimises: the task's ``selection_loss`` (validation/held-out loss) or
    else the final training loss; a diverged run scores +inf."""
    score = output.scalars.get("selection_loss")
    if score is None:
        score = final_loss(output.curves["loss"])
    return score if score is not None and math.isfinite(score) else math.inf


def _stats(values: list[float]) -> dict:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return dict(mean=math.nan, std=math.nan, min=math.nan, max=math.nan, n=0)
    return dict(mean=statistics.fmean(finite),
                std=statistics.stdev(finite) if len(finite) > 1 else 0.0,
                min=min(finite), max=max(finite), n=len(finite))


@dataclass
class GroupSummary:
    """The reported numbers of one arm (task, variant, arm) over its evaluation seeds.
    ``values`` keeps every per-seed number (``final_loss``, ``steps_to_target`` and every
    scalar) in seed order, for the paired comparisons."""

    task: str
    variant: str
    optimizer: str
    hparams: dict
    seeds: list[int]
    final_loss: dict
    steps_to_target: list[int | None]
    seconds_to_target: list[float | None]
    target: float
    state_bytes_per_param: float
    diverged: int
    n_params: int = 0
    scalars: dict = field(default_factory=dict)      # name -> stats over seeds
    sweep: list[tuple[dict, float]] = field(default_factory=list)  # (hparams, score)
    arm: str = ""
    steps: int = 0
    values: dict = field(default_factory=dict)       # name -> per-seed values
    sweep_reached: list[bool] = field(default_factory=list)  # per sweep point: target reached
    grid: dict = field(default_factory=dict)          # where the sweep stopped

    def __post_init__(self):
        self.arm = self.arm or self.optimizer

    @property
    def reached(self) -> int:
        return sum(s is not None for s in self.steps_to_target)

    @property
    def mean_steps_to_target(self) -> float:
        """Mean over seeds that reached the target; NaN if none did."""
        hits = [s for s in self.steps_to_target if s is not None]
        return statistics.fmean(hits) if hits else math.nan

    @property
    def mean_seconds_to_target(self) -> float:
        hits = [s for s in self.seconds_to_target if s is not None]
        return statistics.fmean(hits) if hits else math.nan

    def to_dict(self) -> dict:
        return dict(task=self.task, variant=self.variant, arm=self.arm, optimizer=self.optimizer,
                    hparams=self.hparams, seeds=self.seeds, final_loss=self.final_loss,
                    target_loss=self.target, steps_to_target=self.steps_to_target,
                    seconds_to_target=self.seconds_to_target, reached_target=self.reached,
                    mean_steps_to_target=self.mean_steps_to_target,
                    mean_seconds_to_target=self.mean_seconds_to_target,
                    state_bytes_per_param=self.state_bytes_per_param, n_params=self.n_params,
                    diverged=self.diverged, steps=self.steps,
                    scalars=self.scalars, values=self.values, grid=self.grid,
                    sweep=[dict(hparams=h, score=s, reached=r) for (h, s), r
                           in zip(self.sweep, self.sweep_reached or [None] * len(self.sweep))])


def summarize(records, tasks, grids: dict | None = None) -> list[GroupSummary]:
    """One summary per arm (task, variant, arm) that has at least one evaluation run, in run
    order. ``grids``: where each arm's sweep stopped (from the runner)."""
    keys: list[tuple[str, str, str]] = []
    for r in records:
        key = (r.task, r.variant, r.arm)
        if r.final and key not in keys:
            keys.append(key)
    summaries = []
    for key in keys:
        task = tasks[key[0]]
        finals = sorted((r for r in records if (r.task, r.variant, r.arm) == key and r.final),
                        key=lambda r: r.seed)
        sweeps = [r for r in records if r.sweep and (r.task, r.variant, r.arm) == key]
        target = task.target[key[1]]
        steps_hit, secs_hit = [], []
        for r in finals:
            hit = steps_to_target(r.output.curves["loss"], target)
            steps_hit.append(hit)
            secs_hit.append(r.output.seconds[hit - 1] if hit else None)
        scalar_names = sorted({k for r in finals for k in r.output.scalars})
        losses = [final_loss(r.output.curves["loss"]) for r in finals]
        values = {"final_loss": losses, "steps_to_target": steps_hit,
                  "diverged": [float(r.output.diverged) for r in finals]}
        for k in scalar_names:
            values[k] = [r.output.scalars.get(k, math.nan) for r in finals]
        summaries.append(GroupSummary(
            task=key[0], variant=key[1], optimizer=finals[0].optimizer, arm=key[2],
            hparams=finals[0].hparams, seeds=[r.seed for r in finals],
            final_loss=_stats(losses),
            steps_to_target=steps_hit, seconds_to_target=secs_hit, target=target,
            state_bytes_per_param=finals[0].output.state_bytes / max(finals[0].output.n_params, 1),
            diverged=sum(r.output.diverged for r in finals),
            n_params=finals[0].output.n_params, steps=finals[0].steps,
            scalars={k: _stats(v) for k, v in values.items()
                     if k not in ("final_loss", "steps_to_target", "diverged")},
            sweep=[(r.hparams, selection_score(r.output)) for r in sweeps],
            sweep_reached=[steps_to_target(r.output.curves["loss"], target) is not None
                           for r in sweeps],
            values=values,
            grid=(grids or {}).get(key, {}),
        ))
    return summaries
