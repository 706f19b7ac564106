"""Plans and runs the suite: for every task and optimizer, a learning-rate sweep on the first
seed, then the chosen setting on every seed. Ctrl-C stops cleanly and keeps what finished."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from adaptim.lab.summary import selection_score
from adaptim.lab.sweep import FAST_GRID_EXPONENTS, GRID_EXPONENTS, hparam_grid
from adaptim.lab.tasks import TASKS, RunOutput, Task
from adaptim.registry import create, list_optimizers

__all__ = ["SuiteConfig", "RunRecord", "SuiteResult", "plan_runs", "run_suite"]


@dataclass
class SuiteConfig:
    """What ``adaptim compare`` runs. ``steps=None``: each task's own default (or its fast
    default with ``fast``); ``lr=None``: per-optimizer sweep."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    optimizers: list[str] = field(default_factory=list_optimizers)
    seeds: int = 3
    steps: int | None = None
    lr: float | None = None
    fast: bool = False
    device: str = "cpu"
    threads: int = 1

    def steps_for(self, task: Task) -> int:
        if self.steps is not None:
            return self.steps
        return task.fast_steps if self.fast else task.steps

    def to_dict(self) -> dict:
        return dict(tasks=self.tasks, optimizers=self.optimizers, seeds=self.seeds,
                    steps=self.steps, lr=self.lr, fast=self.fast, device=self.device,
                    threads=self.threads)


@dataclass
class RunRecord:
    """One finished training run. ``sweep``: part of the learning-rate sweep; ``final``: counts
    towards the reported results (the chosen setting, every seed)."""

    task: str
    variant: str
    optimizer: str
    hparams: dict
    seed: int
    steps: int
    sweep: bool
    final: bool
    output: RunOutput
    wall_seconds: float


@dataclass
class SuiteResult:
    config: SuiteConfig
    records: list[RunRecord]
    planned_runs: int
    interrupted: bool = False
    wall_seconds: float = 0.0


@dataclass
class _Group:
    """One (task, optimizer): the sweep grid and which variants it is swept on."""

    task: Task
    optimizer: str
    grid: list[dict]
    sweep_variants: tuple[str, ...]

    def n_runs(self, n_seeds: int) -> int:
        variants = self.task.variants
        if len(self.grid) == 1:
            return len(variants) * n_seeds
        # the best sweep run is reused as the first seed's final run
        return len(self.sweep_variants) * (len(self.grid) + n_seeds - 1) + \
            (len(variants) - len(self.sweep_variants)) * n_seeds


def plan_runs(config: SuiteConfig) -> list[_Group]:
    groups = []
    exponents = FAST_GRID_EXPONENTS if config.fast else GRID_EXPONENTS
    for name in config.tasks:
        task = TASKS[name]
        allowed = task.optimizers or list_optimizers()
        for opt in config.optimizers:
            if opt not in allowed:
                continue
            grid = hparam_grid(opt, lr=config.lr, lr_scale=task.lr_scale.get(opt, 1.0),
                               exponents=exponents if config.fast or task.grid_exponents is None
                               else task.grid_exponents, extra=task.extra_grid.get(opt))
            if config.fast:  # the smoke run keeps one extra setting at most
                grid = grid[:1]
            sweep_variants = task.variants[:1] if task.sweep_on_first_variant else task.variants
            groups.append(_Group(task, opt, grid, sweep_variants))
    return groups


def _execute(task: Task, variant: str, optimizer: str, hparams: dict, seed: int, steps: int,
             device: torch.device, *, sweep: bool, final: bool) -> RunRecord:
    def make_optimizer(params):
        return create(optimizer, params, **hparams)

    start = time.perf_counter()
    output = task.run(variant, make_optimizer, seed, steps, device)
    return RunRecord(task.name, variant, optimizer, dict(hparams), seed, steps, sweep, final,
                     output, time.perf_counter() - start)


def run_suite(config: SuiteConfig,
              on_run_done: Callable[[RunRecord, int, int], None] | None = None,
              on_run_start: Callable[[str], None] | None = None) -> SuiteResult:
    """Run everything ``config`` asks for. ``on_run_done(record, done, planned)`` is called after
    each run (progress bars, logs). A KeyboardInterrupt stops the suite and returns what
    finished with ``interrupted=True``."""
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    groups = plan_runs(config)
    seeds = list(range(config.seeds))
    planned = sum(g.n_runs(len(seeds)) for g in groups)
    result = SuiteResult(config, [], planned)
    start = time.perf_counter()

    def execute(task, variant, opt, hp, seed, sweep, final):
        if on_run_start is not None:
            on_run_start(f"{task.name} · {variant} · {opt} · lr={hp['lr']:.3g} · seed {seed}")
        record = _execute(task, variant, opt, hp, seed, config.steps_for(task), device,
                          sweep=sweep, final=final)
        result.records.append(record)
        if on_run_done is not None:
            on_run_done(record, len(result.records), planned)
        return record

    try:
        for group in groups:
            task, opt = group.task, group.optimizer
            chosen: dict[str, dict] = {}
            reusable: dict[str, RunRecord] = {}
            for variant in group.sweep_variants:
                if len(group.grid) == 1:
                    chosen[variant] = group.grid[0]
                    continue
                trials = [execute(task, variant, opt, hp, seeds[0], True, False)
                          for hp in group.grid]
                best = min(trials, key=lambda r: selection_score(r.output))
                best.final = True
                chosen[variant] = best.hparams
                reusable[variant] = best
            for variant in task.variants:
                hp = chosen.get(variant, chosen[group.sweep_variants[0]])
                for seed in seeds:
                    if seed == seeds[0] and variant in reusable:
                        continue
                    execute(task, variant, opt, hp, seed, False, True)
    except KeyboardInterrupt:
        result.interrupted = True
    result.wall_seconds = time.perf_counter() - start
    return result

