"""Plans and runs the suite. Every arm (an optimizer on a task variant, with its settings) is
tuned on its own on a tuning seed that is never an evaluation seed: its grid is swept, extended
while the winner sits on an edge (:func:`adaptim.lab.sweep.extension`), and the winner then
runs on every evaluation seed. Ctrl-C stops cleanly and keeps what finished."""

from __future__ import annotations

import multiprocessing
import signal
import statistics
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import torch

from adaptim.lab.summary import selection_score
from adaptim.lab.sweep import (
    FAST_GRID_EXPONENTS,
    GRID_EXPONENTS,
    STEP,
    extension,
    grid_status,
    hparam_grid,
)
from adaptim.lab.tasks import TASKS, Arm, RunOutput, Task
from adaptim.registry import create, list_optimizers

__all__ = [
    "DEFAULT_SEEDS",
    "TUNE_SEED",
    "RunRecord",
    "SuiteConfig",
    "SuiteResult",
    "plan_runs",
    "run_suite",
    "tuning_seeds",
]

TUNE_SEED = 1000     # the tuning seed; evaluation seeds are 0, 1, ..., n − 1
DEFAULT_SEEDS = 5    # evaluation seeds per arm (a task may ask for more)


@dataclass
class SuiteConfig:
    """What ``adaptim compare`` runs. ``tasks=None``: every task of the tier (``extended``
    adds the tasks marked extended); ``seeds=None``: :data:`DEFAULT_SEEDS` or the task's own minimum
    (2 with ``fast``); ``steps=None``: each task's own; ``lr=None``: per-arm tuning."""

    tasks: list[str] | None = None
    optimizers: list[str] = field(default_factory=list_optimizers)
    seeds: int | None = None
    steps: int | None = None
    lr: float | None = None
    fast: bool = False
    extended: bool = False
    device: str = "cpu"
    threads: int = 1
    jobs: int = 1

    def __post_init__(self):
        if self.tasks is None:
            self.tasks = [n for n, t in TASKS.items()
                          if t.tier == "default" or self.extended]

    @property
    def tier(self) -> str:
        return "fast" if self.fast else "extended" if self.extended else "default"

    def steps_for(self, task: Task, variant: str | None = None) -> int:
        if self.steps is not None:
            return self.steps
        return task.steps_for(variant or task.variants[0], self.fast)

    def seeds_for(self, task: Task) -> int:
        n = self.seeds if self.seeds is not None else \
            2 if self.fast else max(DEFAULT_SEEDS, task.eval_seeds)
        return min(n, task.max_seeds) if task.max_seeds else n

    def to_dict(self) -> dict:
        return dict(tasks=self.tasks, optimizers=self.optimizers, seeds=self.seeds,
                    steps=self.steps, lr=self.lr, fast=self.fast, extended=self.extended,
                    tier=self.tier, device=self.device, threads=self.threads, jobs=self.jobs,
                    tune_seed=TUNE_SEED)


@dataclass
class RunRecord:
    """One finished training run. ``sweep``: a tuning run (tuning seed); ``final``: an
    evaluation run of the arm's chosen setting."""

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
    arm: str = ""

    def __post_init__(self):
        self.arm = self.arm or self.optimizer


@dataclass
class SuiteResult:
    config: SuiteConfig
    records: list[RunRecord]
    planned_runs: int
    interrupted: bool = False
    wall_seconds: float = 0.0
    grids: dict = field(default_factory=dict)   # (task, variant, arm) -> sweep status


@dataclass
class _Group:
    """One arm of one task: its starting grid and its evaluation seeds."""

    task: Task
    arm: Arm
    grid: list[dict]
    seeds: list[int]
    steps: int

    @property
    def optimizer(self) -> str:
        return self.arm.optimizer

    def n_runs(self, n_seeds: int | None = None) -> int:
        """Runs before any grid extension."""
        n = len(self.seeds) if n_seeds is None else n_seeds
        return n + (len(self.grid) * len(tuning_seeds(self.task)) if len(self.grid) > 1 else 0)

    def follow(self, hparams: dict) -> dict:
        """This arm's setting when it follows another arm's tuned ``hparams``."""
        return {**hparams, **self.arm.fixed,
                "lr": float(f"{hparams['lr'] * STEP ** self.arm.lr_shift:.3g}")}


def _arm_grid(config: SuiteConfig, task: Task, arm: Arm) -> list[dict]:
    if arm.lr_of:
        return []  # set when the arm it follows has been tuned
    if not arm.tune:  # --lr overrides an untuned arm's rate too
        return [dict(arm.fixed)] if config.lr is None else [{**arm.fixed, "lr": config.lr}]
    exponents = (FAST_GRID_EXPONENTS if config.fast else
                 arm.exponents or task.grid_exponents or GRID_EXPONENTS)
    extra = arm.extra_grid or task.extra_grid.get(arm.optimizer)
    # An arm's own centre is the grid's centre; the task's lr_scale moves the typical rates.
    scale = 1.0 if arm.centre is not None else task.lr_scale.get(arm.optimizer, 1.0)
    grid = hparam_grid(arm.optimizer, lr=config.lr, lr_scale=scale, exponents=exponents,
                       extra=extra, centre=arm.centre)
    if config.fast:  # the smoke run keeps one setting
        grid = grid[:1]
    return [{**arm.fixed, **h} for h in grid]


def plan_runs(config: SuiteConfig) -> list[_Group]:
    groups = []
    for name in config.tasks:
        task = TASKS[name]
        seeds = list(range(config.seeds_for(task)))
        for arm in task.all_arms():
            if arm.optimizer not in config.optimizers:
                continue
            groups.append(_Group(task, arm, _arm_grid(config, task, arm), seeds,
                                 config.steps_for(task, arm.variant)))
    return groups


@dataclass(frozen=True)
class _Request:
    """One run to do; ``order`` sorts finished records into plan order (so the output does not
    depend on which worker finished first)."""

    group: int
    task: str
    variant: str
    optimizer: str
    arm: str
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
                     time.perf_counter() - start, request.arm)


class _GroupState:
    """The tune-then-evaluate plan of one arm: which runs can start now, and which become
    possible when a run finishes (grid extensions, then the evaluation seeds)."""

    def __init__(self, index: int, group: _Group):
        self.index, self.group = index, group
        self.trials: list[tuple[dict, float]] = []   # (setting, mean score over tuning seeds)
        self.scores: dict[tuple, dict[int, float]] = {}  # setting -> tuning seed -> score
        self.added: dict = {}
        self.pending = 0
        self.status = "single point"
        self.planned = group.n_runs()
        self.followers: list[_GroupState] = []
        self.chosen: dict | None = None

    def _request(self, hp, seed, sweep, order):
        g = self.group
        return _Request(self.index, g.task.name, g.arm.variant, g.arm.optimizer, g.arm.label,
                        tuple(hp.items()), seed, g.steps, sweep, not sweep, order)

    def _evaluate(self, hp):
        return [self._request(hp, seed, False, (1, seed)) for seed in self.group.seeds]

    def _tune(self, points):
        seeds = tuning_seeds(self.group.task)
        start = len(self.trials) * len(seeds) + self.pending
        self.pending += len(points) * len(seeds)
        return [self._request(hp, seed, True, (0, start + k * len(seeds) + j))
                for k, hp in enumerate(points) for j, seed in enumerate(seeds)]

    def _chosen(self, hp) -> list[_Request]:
        self.chosen = hp
        follow = self._evaluate(hp)
        for other in self.followers:
            other.chosen = other.group.follow(hp)
            follow += other._evaluate(other.chosen)
        return follow

    def initial(self) -> list[_Request]:
        if self.group.arm.lr_of:
            return []
        if len(self.group.grid) == 1:
            return self._chosen(self.group.grid[0])
        return self._tune(self.group.grid)

    def done(self, record: RunRecord) -> list[_Request]:
        if not record.sweep:
            return []
        key = tuple(record.hparams.items())
        self.scores.setdefault(key, {})[record.seed] = selection_score(record.output)
        self.pending -= 1
        if self.pending:
            return []
        # Trials in grid order, so ties go to the earlier point whatever finished first; a
        # setting scores the mean over its tuning seeds (+inf if any of them diverged).
        order = {tuple(h.items()): k for k, h in enumerate(self.group.grid)}
        self.trials = [(dict(k), statistics.fmean(v[s] for s in sorted(v)))
                       for k, v in sorted(self.scores.items(),
                                          key=lambda kv: order.get(kv[0], len(order)))]
        more = extension(self.trials, added=self.added)
        if more:
            self.group.grid.extend(more)
            self.planned += len(more) * len(tuning_seeds(self.group.task))
            return self._tune(more)
        self.status = grid_status(self.trials, added=self.added)
        best = min(self.trials, key=lambda t: t[1])[0]
        return self._chosen(best)


def tuning_seeds(task: Task) -> list[int]:
    """The seeds every sweep point of ``task`` runs on: :data:`TUNE_SEED` and, for a task
    whose single runs are noisy (``task.tune_seeds`` > 1), the seeds after it. None of them
    is an evaluation seed."""
    return [TUNE_SEED + j for j in range(max(task.tune_seeds, 1))]


def _worker_init(threads: int) -> None:
    # Only the parent handles Ctrl-C; it stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def run_suite(config: SuiteConfig,
              on_run_done: Callable[[RunRecord, int, int], None] | None = None,
              on_run_start: Callable[[str], None] | None = None) -> SuiteResult:
    """Run everything ``config`` asks for, serially (``jobs=1``) or on ``jobs`` worker
    processes with ``threads`` torch threads each; every run seeds itself and every decision
    waits for all the runs it reads, so the numbers do not depend on ``jobs``.
    ``on_run_done(record, done, planned)`` is called after each run (progress bars, logs); the
    planned count grows when a grid is extended. A KeyboardInterrupt stops the suite and returns
    what finished with ``interrupted=True``; records come back in plan order."""
    torch.set_num_threads(config.threads)
    states = [_GroupState(i, g) for i, g in enumerate(plan_runs(config))]
    by_arm = {(s.group.task.name, s.group.arm.label): s for s in states}
    for s in states:
        if s.group.arm.lr_of:
            leader = by_arm.get((s.group.task.name, s.group.arm.lr_of))
            if leader is None:
                s.planned = 0  # its leader is not in this run (filtered by --optimizers)
            else:
                leader.followers.append(s)
    result = SuiteResult(config, [], sum(s.planned for s in states))
    start = time.perf_counter()
    orders: dict[int, tuple] = {}

    def finished(request: _Request, record: RunRecord) -> list[_Request]:
        orders[id(record)] = (request.group, *request.order)
        result.records.append(record)
        follow = states[request.group].done(record)
        result.planned_runs = sum(s.planned for s in states)
        if on_run_done is not None:
            on_run_done(record, len(result.records), result.planned_runs)
        return follow

    def label(request: _Request) -> str:
        return (f"{request.task} · {request.variant} · {request.arm} · "
                f"lr={dict(request.hparams).get('lr', float('nan')):.3g} · seed {request.seed}")

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
    for s in states:
        g = s.group
        result.grids[(g.task.name, g.arm.variant, g.arm.label)] = dict(
            status=s.status if s.trials else "single point",
            extensions={f"{axis}{'+' if side > 0 else '-'}": n
                        for (axis, side), n in s.added.items()},
            points=len(s.trials))
    return result


def _run_parallel(config, states, finished, on_run_start, label) -> None:
    # torch.optim's first optimizer imports torch._dynamo (seconds); importing it here, before
    # the fork, lets every worker inherit it instead of importing it again.
    import torch._dynamo  # noqa: F401

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
