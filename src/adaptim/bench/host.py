"""``adaptim bench --host``: host microseconds per ``optimizer.step()`` on many small tensors.

On a GPU the host's work (Python, the plan's check, building and copying the launch table,
launching) bounds the step of a model of many small tensors, not the kernels. This times
``step()`` on the host without waiting for the device: the device is synchronised before each
timed step (untimed), so the queue is empty and only the host's own time is measured. On the
CPU every step is synchronous, so there the number is the whole step.

Rows: adaptim ``fused=True`` (Triton on CUDA, the C kernel on CPU), adaptim's default
(``fused=None``: the multi-tensor rule on CUDA, the C kernel on CPU), adaptim ``foreach=True``
(the multi-tensor rule anywhere), each with its cached plan and without one ("no plan": each
group gathered tensor by tensor and stepped without building a plan, as ``step()`` does when a
plan does not hold), then torch.optim's fused and foreach steps. Columns: tensor counts, every
tensor of ``size`` float32 elements.
"""

from __future__ import annotations

import statistics
import time

import torch

import adaptim
from adaptim import _fused

__all__ = ["HOST_COUNTS", "HOST_MODES", "host_step_us", "host_markdown"]

HOST_COUNTS = (1, 100, 1000, 5000)
# mode -> (library, constructor options, plans dropped before each step)
HOST_MODES = {
    "adaptim fused=True": ("adaptim", dict(fused=True), False),
    "adaptim fused=True, no plan": ("adaptim", dict(fused=True), True),
    "adaptim default": ("adaptim", {}, False),
    "adaptim default, no plan": ("adaptim", {}, True),
    "adaptim foreach=True": ("adaptim", dict(foreach=True), False),
    "adaptim foreach=True, no plan": ("adaptim", dict(foreach=True), True),
    "torch fused": ("torch", dict(fused=True), False),
    "torch foreach": ("torch", dict(foreach=True), False),
}
# case -> (adaptim registry name, torch.optim class name, lr)
_CASES = {"adam": ("adam", "Adam", 1e-3), "sgd-momentum": ("momentum", "SGD", 1e-3)}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _optimizer(case: str, mode: str, params):
    library, options, _ = HOST_MODES[mode]
    name, torch_cls, lr = _CASES[case]
    if library == "torch":
        extra = dict(momentum=0.9) if torch_cls == "SGD" else {}
        return getattr(torch.optim, torch_cls)(params, lr=lr, **extra, **options)
    return adaptim.create(name, params, lr=lr, **options)


def _unplanned(opt):
    """``opt.step()`` as it runs where no plan holds: every group gathered tensor by tensor,
    and no plan built (``adaptim._fused.planning`` off for the step)."""
    _fused.forget_plans(opt)

    def step():
        _fused.planning = False
        try:
            opt.step()
        finally:
            _fused.planning = True
    return step


def host_step_us(counts=HOST_COUNTS, size: int = 1000, steps: int = 20, case: str = "adam",
                 modes=None, device="cpu", log=print) -> dict:
    """Median host µs per ``step()`` for ``count`` float32 tensors of ``size`` elements, for
    every mode of :data:`HOST_MODES` (or ``modes``), after two warm-up steps (state, kernel
    compile and load, plan); the modes of one count take turns step by step. A mode that
    cannot run (torch fused where torch has no such kernel) reports why instead."""
    dev = torch.device(device)
    modes = list(modes or HOST_MODES)
    out = {"device": str(dev), "case": case, "size": size, "steps": steps,
           "counts": list(counts), "rows": {m: {} for m in modes}}
    for count in counts:
        live = {}
        for mode in modes:
            params = [torch.zeros(size, device=dev).normal_(0, 0.02).requires_grad_()
                      for _ in range(count)]
            for p in params:
                p.grad = torch.randn_like(p).mul_(1e-3)
            try:
                opt = _optimizer(case, mode, params)
                for _ in range(2):
                    opt.step()
            except (RuntimeError, ValueError) as err:  # no such kernel for this device
                out["rows"][mode][count] = f"unavailable: {str(err).splitlines()[0][:80]}"
                continue
            live[mode] = opt
        times = {m: [] for m in live}
        for _ in range(steps):
            for mode, opt in live.items():
                step = _unplanned(opt) if HOST_MODES[mode][2] else opt.step
                _sync(dev)
                start = time.perf_counter()
                step()
                times[mode].append(time.perf_counter() - start)
        _sync(dev)
        for mode, t in times.items():
            out["rows"][mode][count] = 1e6 * statistics.median(t)
        log(f"  {count} x {size}: " + ", ".join(
            f"{m} {v:.0f} µs" if isinstance(v, float) else f"{m} {v}"
            for m in modes for v in [out["rows"][m].get(count)]))
    return out


def host_markdown(report: dict) -> str:
    """The measurement as a Markdown table: µs per step for each mode and tensor count."""
    counts = report["counts"]
    lines = [f"Host µs per step() ({report['case']}, {report['device']}, float32 tensors of "
             f"{report['size']:,} elements; median of {report['steps']} steps, the device "
             "idle before each).", "",
             "| mode | " + " | ".join(f"N = {c:,}" for c in counts) + " |",
             "|---" * (len(counts) + 1) + "|"]
    for mode, row in report["rows"].items():
        cells = [f"{v:,.0f}" if isinstance(v, float) else "–" for v in map(row.get, counts)]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
