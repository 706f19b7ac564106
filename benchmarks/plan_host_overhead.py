"""The host work of the CUDA paths, measured on the CPU: µs per step with and without a plan.

    OMP_NUM_THREADS=1 python benchmarks/plan_host_overhead.py            # 1 ... 5,000 tensors
    OMP_NUM_THREADS=1 python benchmarks/plan_host_overhead.py --counts 5000 --steps 50

Two stand-ins for what a GPU step costs the host, Adam on float32 tensors of 1,000 elements:

- ``triton``: ``fused=True`` with the Triton path routed to CPU tensors (the interpreter's
  switch) and the copy-and-launch replaced by nothing, so a step is exactly the host's part of
  a Triton step: the plan's check (or the gather, the buckets and the table), the step counters,
  the per-tensor scalars, the table;
- ``foreach, host part``: the part of a multi-tensor step that a plan replaces: ``_gather``
  against the plan's check plus reading the gradients (the rule itself, torch's ``_foreach_*``
  ops, is the same either way).

Medians of ``--steps`` steps, planned and unplanned interleaved. ``ADAPTIM_PLAN_CHECK=python``
times the Python check instead of the C++ one. On a shared machine compare ratios, not times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import adaptim
from adaptim import _fused
from adaptim._fused import _triton
from adaptim.bench.host import _unplanned
from adaptim._tensors import GRAD


def _optimizer(count: int, **options):
    params = [torch.zeros(1000).requires_grad_() for _ in range(count)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = adaptim.Adam(params, lr=1e-3, **options)
    opt.step()
    opt.step()
    return opt


def _median_us(fns: dict, steps: int) -> dict:
    times = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: round(1e6 * statistics.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 100, 1000, 5000])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    _fused._TRITON_ON_CPU = True
    _triton._fire = lambda *args: None  # the host's part only: no copy, no launch
    print("| tensors | triton planned | triton no plan | foreach check + grads | foreach gather |")
    print("|---|---|---|---|---|")
    for count in args.counts:
        planned, unplanned = _optimizer(count, fused=True), _optimizer(count, fused=True)
        triton = _median_us({"planned": planned.step, "no plan": _unplanned(unplanned)},
                            args.steps)
        opt = _optimizer(count, foreach=True)
        group = opt.param_groups[0]
        (plan,) = opt._adaptim_plans.values()

        def check():
            if plan.holds(opt, group) is True:
                list(map(GRAD, plan.params))
        foreach = _median_us({"check": check, "gather": lambda: opt._gather(group)},
                             args.steps)
        print(f"| {count:,} | {triton['planned']:,} | {triton['no plan']:,} | "
              f"{foreach['check']:,} | {foreach['gather']:,} |")


if __name__ == "__main__":
    main()
