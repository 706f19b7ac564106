"""Plans and runs the suite: for every task and optimizer, a learning-rate sweep on the first
seed, then the chosen setting on every seed. Ctrl-C stops cleanly and keeps what finished."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import torch

from adaptim.lab.summary import selection_score
from adaptim.lab.sweep import FAST_GRID_EXPONENTS, GRID_EXPONENTS, hparam_grid
from adaptim.lab.tasks import TASKS, RunOutput, Task  # noqa: F401
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
    jobs: int = 1

    def steps_for(self, task: Task) -> int:
        if self.steps is not None:
            return self.steps
        return task.fast_steps if self.fast else task.steps

    def to_dict(self) -> dict:
        return dict(tasks=self.tasks, optimizers=self.optimizers, seeds=self.seeds,
                    steps=self.steps, lr=self.lr, fast=self.fast, device=self.device,
                    threads=self.threads, jobs=self.jobs)


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


@dataclass(frozen=True)
class _Request:
    """One run to do; ``order`` sorts finished records into plan order (so the output does not
    depend on which worker finished first)."""

    group: int
    task: str
    variant: str
    optimizer: str
    hparams: tuple
    seed: int
    steps: int
    sweep: bool
    final: bool
    order: tuple


def _execute(request: _Request, device: str) -> RunRecord:
    task = TASKS[request.task]
    hparams = dict(request.hparams)

    def make_optimizer(params):
        return create(request.optimizer, params, **hparams)

    start = time.perf_counter()
    output = task.run(request.variant, make_optimizer, request.seed, request.steps,
                      torch.device(device))
    return RunRecord(task.name, request.variant, request.optimizer, hparams, request.seed,
                     request.steps, request.sweep, request.final, output,
                     time.perf_counter() - start)


class _GroupState:
    """The sweep-then-seeds plan of one (task, optimizer): which runs can start now, and which
    become possible when a run finishes (the seeds wait for the sweep's winner)."""

    def __init__(self, index: int, group: _Group, seeds: list[int], steps: int):
        self.index, self.group, self.seeds, self.steps = index, group, seeds, steps
        self.trials: dict[str, list[RunRecord]] = {v: [] for v in group.sweep_variants}

    def _request(self, variant, hp, seed, sweep, final, order):
        return _Request(self.index, self.group.task.name, variant, self.group.optimizer,
                        tuple(hp.items()), seed, self.steps, sweep, final, order)

    def _seed_runs(self, variant, hp, seeds):
        v = self.group.task.variants.index(variant)
        return [self._request(variant, hp, seed, False, True, (1, v, seed)) for seed in seeds]

    def initial(self) -> list[_Request]:
        g = self.group
        if len(g.grid) == 1:
            return [r for variant in g.task.variants
                    for r in self._seed_runs(variant, g.grid[0], self.seeds)]
        return [self._request(variant, hp, self.seeds[0], True, False,
                              (0, g.task.variants.index(variant), k))
                for variant in g.sweep_variants for k, hp in enumerate(g.grid)]

    def done(self, record: RunRecord) -> list[_Request]:
        if not record.sweep:
            return []
        trials = self.trials[record.variant]
        trials.append(record)
        if len(trials) < len(self.group.grid):
            return []
        # Ties go to the earlier grid point, whatever order the runs finished in.
        best = min(trials, key=lambda r: (selection_score(r.output),
                                          self.group.grid.index(r.hparams)))
        best.final = True  # the winner doubles as the first seed's run
        follow = self._seed_runs(record.variant, best.hparams, self.seeds[1:])
        if self.group.task.sweep_on_first_variant:
            for variant in self.group.task.variants[1:]:
                follow += self._seed_runs(variant, best.hparams, self.seeds)
        return follow


def _worker_init(threads: int) -> None:
    # Only the parent handles Ctrl-C; it stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def run_suite(config: SuiteConfig,
              on_run_done: Callable[[RunRecord, int, int], None] | None = None,
              on_run_start: Callable[[str], None] | None = None) -> SuiteResult:
    """Run everything ``config`` asks for, serially (``jobs=1``) or on ``jobs`` worker
    processes with ``threads`` torch threads each; every run seeds itself, so the numbers do not
    depend on ``jobs``. ``on_run_done(record, done, planned)`` is called after each run
    (progress bars, logs). A KeyboardInterrupt stops the suite and returns what finished with
    ``interrupted=True``; records come back in plan order."""
    torch.set_num_threads(config.threads)
    seeds = list(range(config.seeds))
    states = [_GroupState(i, g, seeds, config.steps_for(g.task))
              for i, g in enumerate(plan_runs(config))]
    planned = sum(s.group.n_runs(len(seeds)) for s in states)
    result = SuiteResult(config, [], planned)
    start = time.perf_counter()
    orders: dict[int, tuple] = {}

    def finished(request: _Request, record: RunRecord) -> list[_Request]:
        record.final = record.final or request.final
        orders[id(record)] = (request.group, *request.order)
        result.records.append(record)
        follow = states[request.group].done(record)
        if on_run_done is not None:
            on_run_done(record, len(result.records), planned)
        return follow

    def label(request: _Request) -> str:
        return (f"{request.task} · {request.variant} · {request.optimizer} · "
                f"lr={dict(request.hparams)['lr']:.3g} · seed {request.seed}")

    try:
        if config.jobs <= 1:
            for state in states:
                queue = state.initial()
                while queue:
                    request = queue.pop(0)
                    if on_run_start is not None:
                        on_run_start(label(request))
                    queue += finished(request, _execute(request, config.device))
        else:
            _run_parallel(config, states, finished, on_run_start, label)
    except KeyboardInterrupt:
        result.interrupted = True
    result.records.sort(key=lambda r: orders[id(r)])
    result.wall_seconds = time.perf_counter() - start
    return result


def _run_parallel(config, states, finished, on_run_start, label) -> None:
    context = (multiprocessing.get_context("fork")
               if "fork" in multiprocessing.get_all_start_methods() else None)
    pool = ProcessPoolExecutor(max_workers=config.jobs, mp_context=context,
                               initializer=_worker_init, initargs=(config.threads,))
    pending = {}

    def submit(request):
        pending[pool.submit(_execute, request, config.device)] = request

    try:
        for state in states:
            for request in state.initial():
                submit(request)
        while pending:
            # A timeout keeps the main thread waking up, so Ctrl-C is handled promptly.
            done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in done:
                request = pending.pop(future)
                record = future.result()
                if on_run_start is not None:
                    on_run_start(label(request))
                for follow in finished(request, record):
                    submit(follow)
    except BaseException:
        # Ctrl-C (or a failed run): drop what has not started; the workers ignore SIGINT and
        # finish their current run, which is kept, then exit cleanly.
        pool.shutdown(wait=True, cancel_futures=True)
        for future, request in pending.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                finished(request, future.result())  # its follow-up runs are not started
        raise
    pool.shutdown(wait=True)
