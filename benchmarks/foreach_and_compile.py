"""Multi-tensor (foreach) and compiled steps on CPU, interleaved in one process.

1. ``adaptim.Adam(..., foreach=True)`` vs ``torch.optim.Adam(foreach=True)`` (and the adaptim
   default, the C kernel, for reference) on three workloads; the ratio adaptim/torch is the
   number to read (both run the same ``_foreach_*`` ops).
2. ``opt.step()`` eager vs inside ``torch.compile``, adaptim (the default C-kernel step),
   torch.optim.Adam (foreach, and fused: one opaque aten operator, like adaptim's) on a small
   model under a LambdaLR float-lr schedule, and on 200 tensors x 1,000 adaptim and torch's
   fused step (torch's default compiled step takes minutes to compile there). "no-op
   operator": an operator with ``adaptim::step``'s signature that does nothing, called on the
   same tensors eagerly and compiled: the difference is what torch.compile costs around one
   opaque operator that updates those tensors in place, whatever the operator does.

Times are medians over interleaved rounds of this process's CPU time (microseconds per step). Writes
``benchmarks/foreach_compile_latest.json``. Run:
``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/foreach_and_compile.py``
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

import adaptim

WORKLOADS = {
    "small MLP (4 tensors, 2.6k params)": [(64, 32), (64,), (8, 64), (8,)],
    "200 tensors x 1,000": [(1000,)] * 200,
    "20 tensors x 100,000": [(100_000,)] * 20,
}


def _params(shapes):
    gen = torch.Generator().manual_seed(0)
    ps = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
    return ps


def _interleave(fns: dict, rounds: int, steps: int) -> dict:
    """Median CPU time of this process per call (microseconds): other processes on the machine
    slow the wall clock, not this count (one thread)."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.process_time()
            for _ in range(steps):
                fn()
            times[k].append((time.process_time() - t) / steps * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def foreach_rows(rounds: int = 9) -> dict:
    out = {}
    for name, shapes in WORKLOADS.items():
        opts = {
            "torch foreach": torch.optim.Adam(_params(shapes), lr=1e-3, foreach=True),
            "adaptim foreach": adaptim.Adam(_params(shapes), lr=1e-3, foreach=True),
            "adaptim default (C kernel)": adaptim.Adam(_params(shapes), lr=1e-3),
        }
        numel = sum(p.numel() for p in opts["torch foreach"].param_groups[0]["params"])
        us = _interleave({k: o.step for k, o in opts.items()}, rounds,
                         max(5, min(200, 2_000_000 // numel)))
        out[name] = {"us": us, "adaptim foreach / torch foreach":
                     us["adaptim foreach"] / us["torch foreach"]}
    return out


# An operator that does nothing, with adaptim::step's signature: what torch.compile costs for
# one opaque operator that updates these tensors in place, whatever the operator does.
_LIB = torch.library.Library("adaptim_bench", "DEF")
_LIB.define("noop(int optimizer_id, int[] positions, Tensor(a!)[] params, Tensor(b!)[] grads)"
            " -> ()")
_LIB.impl("noop", lambda optimizer_id, positions, params, grads: None, "CompositeExplicitAutograd")
torch.library.register_fake("adaptim_bench::noop", lambda *args: None, lib=_LIB)


def _noop_rows(params) -> dict:
    grads = [p.grad for p in params]

    def call():
        with torch.no_grad():  # as an optimizer step runs
            torch.ops.adaptim_bench.noop(0, [], params, grads)
    return {"no-op operator eager": call, "no-op operator compiled": torch.compile(call)}


def compile_rows(rounds: int = 15) -> dict:
    def make(lib, **kw):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                    torch.nn.Linear(64, 8))
        model(torch.randn(16, 32)).sum().backward()
        opt = lib.Adam(model.parameters(), lr=1e-3, **kw)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + 0.01 * s))
        return opt, sched

    fns = {}
    for label, lib, kw, compiled in [
            ("adaptim eager", adaptim, {}, False), ("adaptim compiled", adaptim, {}, True),
            ("torch foreach eager", torch.optim, {"foreach": True}, False),
            ("torch compiled", torch.optim, {}, True),
            ("torch fused eager", torch.optim, {"fused": True}, False),
            ("torch fused compiled", torch.optim, {"fused": True}, True)]:
        opt, sched = make(lib, **kw)
        step = torch.compile(lambda opt=opt: opt.step()) if compiled else opt.step

        def run(step=step, sched=sched):
            step()
            sched.step()
        fns[label] = run
    opt, _ = make(adaptim)
    fns.update(_noop_rows([p for g in opt.param_groups for p in g["params"]]))
    us = _interleave(fns, rounds, 200)
    big = {}
    for label, lib, kw, compiled in [
            ("adaptim eager", adaptim, {}, False), ("adaptim compiled", adaptim, {}, True),
            ("torch fused eager", torch.optim, {"fused": True}, False),
            ("torch fused compiled", torch.optim, {"fused": True}, True)]:
        opt = lib.Adam(_params(WORKLOADS["200 tensors x 1,000"]), lr=1e-3, **kw)
        big[label] = torch.compile(lambda opt=opt: opt.step()) if compiled else opt.step
    big.update(_noop_rows(_params(WORKLOADS["200 tensors x 1,000"])))
    us_big = _interleave(big, rounds, 20)
    return {"small MLP, us (step + LambdaLR step)": us,
            "adaptim compiled / eager": us["adaptim compiled"] / us["adaptim eager"],
            "torch compiled / torch foreach eager":
                us["torch compiled"] / us["torch foreach eager"],
            "torch fused compiled / eager":
                us["torch fused compiled"] / us["torch fused eager"],
            "200 tensors x 1,000, us (step)": us_big,
            "200 tensors: adaptim compiled / eager":
                us_big["adaptim compiled"] / us_big["adaptim eager"],
            "200 tensors: torch fused compiled / eager":
                us_big["torch fused compiled"] / us_big["torch fused eager"]}


def main() -> None:
    torch.set_num_threads(1)
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()},
              "foreach": foreach_rows(), "compile": compile_rows()}
    path = Path(__file__).with_name("foreach_compile_latest.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
