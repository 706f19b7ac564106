"""``adaptim bench``: time one optimizer step, adaptim vs torch.optim, against the memory floor.

In one process, for every optimizer, on two workloads (GPT-2-small shapes: 124.4M parameters in
148 tensors; and 5,000 tensors of 1,000 parameters), it times ``optimizer.step()`` (best of
``--repeat`` interleaved rounds after one warm-up; medians in the JSON) in every mode of
``MODE_OPTIONS``: torch.optim's for-loop, foreach and fused (where torch has one), and adaptim's
default (``fused=None``), reference (``fused=False``), fused and fused-with-bfloat16-state steps.
Each round also times an in-place bandwidth probe (``a.add_(b)`` on buffers of the workload's
size), and each row reports its times as a percentage of the bandwidth floor: bytes a step must
move / the probe's bandwidth (and, in the JSON and a second column, / the best bandwidth of the
whole run: ``mul_``, ``add_``, ``copy_`` measured at the start and after each workload). Rows
whose probe was implausibly slow or unstable, or whose steps were unstable, show ``?`` instead of
the ratios and say why (:func:`row_doubts`). Bytes per parameter: 12 (read θ, g; write θ) + 8 per
fp32 state tensor (read + write), 4 per bf16 one: SGD 12; SGD-momentum, Adagrad, RMSprop 20;
Adadelta, Adam, AdamW, centered RMSprop 28; AMSGrad 36.
It also measures the first fused step's overhead (compile + load of the C kernels) in a fresh
process with an empty cache and in a later process. ``--json PATH`` writes everything.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import adaptim

__all__ = ["add_parser", "main", "run", "tensor_count_sweep", "tiny_models"]

# GPT-2 small (124M): token and position embeddings, 12 blocks, final layer norm.
_GPT2_BLOCK = [768, 768, 768 * 2304, 2304, 768 * 768, 768, 768, 768, 768 * 3072, 3072,
               3072 * 768, 768]
GPT2_SIZES = [50257 * 768, 1024 * 768] + _GPT2_BLOCK * 12 + [768, 768]

# name -> (adaptim registry name, extra kwargs, torch class name, torch kwargs, state tensors,
#          torch has a fused CPU kernel)
CASES = {
    "sgd": ("sgd", {}, "SGD", dict(lr=1e-3), 0, True),
    "momentum": ("momentum", {}, "SGD", dict(lr=1e-3, momentum=0.9), 1, True),
    "nesterov": ("nesterov", {}, "SGD", dict(lr=1e-3, momentum=0.9, nesterov=True), 1, True),
    "adagrad": ("adagrad", {}, "Adagrad", dict(lr=1e-2), 1, True),
    "rmsprop": ("rmsprop", {}, "RMSprop", dict(lr=1e-2), 1, False),
    "rmsprop-centered": ("rmsprop", dict(centered=True), "RMSprop",
                         dict(lr=1e-2, centered=True), 2, False),
    "adadelta": ("adadelta", {}, "Adadelta", dict(lr=1.0), 2, False),
    "adam": ("adam", {}, "Adam", dict(lr=1e-3), 2, True),
    "adamw": ("adamw", {}, "AdamW", dict(lr=1e-3), 2, True),
    "amsgrad": ("adam", dict(amsgrad=True), "Adam", dict(lr=1e-3, amsgrad=True), 3, True),
}
# mode -> the constructor options that select it. "adaptim" is the library's default
# (fused=None: the library picks), the one a drop-in user gets.
MODE_OPTIONS = {
    "torch-for-loop": dict(foreach=False),
    "torch-foreach": dict(foreach=True),
    "torch-fused": dict(fused=True),
    "adaptim": {},
    "adaptim-reference": dict(fused=False),
    "adaptim-fused": dict(fused=True),
    "adaptim-fused-bf16": dict(fused=True, state_dtype=torch.bfloat16),
}
MODES = tuple(MODE_OPTIONS)


def bytes_per_param(state_tensors: int, state_bytes: int = 4, param_bytes: int = 4) -> int:
    return 3 * param_bytes + 2 * state_bytes * state_tensors


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds(fn, device) -> float:
    """Wall time of one call, the device synchronised."""
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _time(fn, repeat: int, device) -> float:
    """Seconds of the fastest of ``repeat`` calls after one warm-up: the minimum, because on a
    shared machine other processes only ever add time."""
    fn()
    _sync(device)
    return min(_seconds(fn, device) for _ in range(repeat))


def measure_bandwidth(numel: int, repeat: int, device) -> dict:
    """In-place bandwidth in GB/s: a.mul_(s) moves 8 bytes per float32, a.add_(b) 12."""
    a = torch.rand(numel, device=device)
    b = torch.rand(numel, device=device)
    mul = _time(lambda: a.mul_(1.0000001), repeat, device)
    add = _time(lambda: a.add_(b), repeat, device)
    copy = _time(lambda: a.copy_(b), repeat, device)
    out = {"mul_": 8 * numel / mul / 1e9, "add_": 12 * numel / add / 1e9,
           "copy_": 8 * numel / copy / 1e9}
    out["best"] = max(out.values())
    return out


def _make_optimizer(case: str, mode: str, params):
    name, extra, torch_cls, torch_kw, _, _ = CASES[case]
    if mode.startswith("torch"):
        cls = getattr(torch.optim, torch_cls)
        return cls(params, **torch_kw, **MODE_OPTIONS[mode])
    return adaptim.create(name, params, **extra, lr=torch_kw["lr"], **MODE_OPTIONS[mode])


def time_workload(sizes: list[int], cases: list[str], modes: list[str], repeat: int, device,
                  log=print) -> dict:
    """ms per step for every case and mode on parameters of the given sizes, and next to each
    case the in-place bandwidth of a probe (``a.add_(b)`` on buffers of the workload's size).

    The modes of one case and the probe are timed in interleaved rounds (probe, mode 1, mode 2,
    ..., repeated ``repeat`` times, best of each kept): on a shared machine the memory system's
    speed drifts over seconds, and a floor measured minutes away from the step it judges would
    measure the neighbours, not the kernel."""
    params = [torch.zeros(n, device=device).normal_(0, 0.02).requires_grad_() for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p).mul_(1e-3)
    numel = sum(sizes)
    probe_a, probe_b = torch.rand(numel, device=device), torch.rand(numel, device=device)

    def probe():
        probe_a.add_(probe_b)

    results, medians, row_bandwidth, probe_rounds = {}, {}, {}, {}
    for case in cases:
        steps = {"probe": probe}
        row = {}
        for mode in modes:
            if mode == "torch-fused" and not CASES[case][5]:
                continue
            try:
                opt = _make_optimizer(case, mode, params)
                opt.step()  # warm-up: creates the state (and loads the kernel)
                _sync(device)
                steps[mode] = opt.step
            except (RuntimeError, ValueError) as err:  # e.g. a mode torch lacks on this device
                row[mode] = None
                log(f"  {case} / {mode}: {err}")
        times = {name: [] for name in steps}
        for _ in range(repeat):
            for name, fn in steps.items():
                times[name].append(_seconds(fn, device))
        steps = None  # frees the optimizers' state before the next case
        row.update({m: 1e3 * min(t) for m, t in times.items() if m != "probe"})
        results[case] = row
        medians[case] = {m: 1e3 * statistics.median(t) for m, t in times.items() if m != "probe"}
        row_bandwidth[case] = 12 * numel / min(times["probe"]) / 1e9
        probe_rounds[case] = [12 * numel / t / 1e9 for t in times["probe"]]
        log(f"  {case}: " + ", ".join(f"{m} {v:.1f} ms" for m, v in row.items() if v)
            + f"; add_ probe {row_bandwidth[case]:.1f} GB/s")
    return results, medians, row_bandwidth, probe_rounds


# Times the first step only: constructing any torch.optim.Optimizer the first time in a process
# imports torch._dynamo (seconds on a loaded machine), for torch.optim and adaptim alike.
_FIRST_STEP = r"""
import time, torch, adaptim
p = torch.nn.Parameter(torch.randn(1000)); p.grad = torch.randn(1000)
opt = adaptim.RMSprop([p], fused=True)
start = time.perf_counter()
opt.step()
print(time.perf_counter() - start)
"""


def first_step_overhead() -> dict:
    """Seconds of the first fused step in a fresh process: with an empty kernel cache (first time
    on a machine: compiles) and again with the cache filled (a later process: loads)."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, ADAPTIM_CACHE_DIR=cache)
        for label in ("first time (compile + load)", "later process (load)"):
            res = subprocess.run([sys.executable, "-c", _FIRST_STEP], env=env,
                                 capture_output=True, text=True, timeout=600)
            out[label] = float(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else None
    return out


def compile_baseline(sizes: list[int], repeat: int, device) -> dict:
    """torch.compile of RMSprop's arithmetic on one flat buffer (hyperparameters as 0-d tensors
    so lr changes do not recompile): compile seconds and ms per step, for comparison."""
    import torch._dynamo

    n = sum(sizes)
    p, g, v = (torch.randn(n, device=device) for _ in range(3))
    v.abs_()
    lr, alpha, eps = (torch.tensor(x, device=device) for x in (1e-2, 0.99, 1e-8))

    @torch.compile(dynamic=False)
    def rmsprop_flat(p, g, v, lr, alpha, eps):
        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
        p.addcdiv_(g, v.sqrt().add_(eps), value=-lr)

    torch._dynamo.reset()
    start = time.perf_counter()
    rmsprop_flat(p, g, v, lr, alpha, eps)
    _sync(device)
    compile_s = time.perf_counter() - start
    ms = 1e3 * _time(lambda: rmsprop_flat(p, g, v, lr, alpha, eps), repeat, device)
    return {"compile_s": compile_s, "ms_per_step": ms, "numel": n}


def run(params: int | None = None, small: tuple[int, int] = (5000, 1000),
        cases: list[str] | None = None, modes: list[str] | None = None, repeat: int = 3,
        device: str = "cpu", overhead: bool = True, compile_baseline_flag: bool = False,
        log=print) -> dict:
    dev = torch.device(device)
    cases = cases or list(CASES)
    modes = modes or list(MODES)
    sizes = GPT2_SIZES
    if params is not None:
        scale = params / sum(GPT2_SIZES)
        sizes = [max(1, round(n * scale)) for n in GPT2_SIZES]
    workloads = {
        f"GPT-2-small shapes ({sum(sizes) / 1e6:.1f}M params, {len(sizes)} tensors)": sizes,
        f"{small[0]:,} tensors x {small[1]:,} params": [small[1]] * small[0],
    }
    report = {
        "machine": {"platform": platform.platform(), "processor": _cpu_name(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "adaptim": adaptim.__version__,
                    "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name()},
        "repeat": repeat, "workloads": {},
    }
    bw_numel = max(sum(sizes), 2**24)

    def bandwidth(best=None):
        # measured before and after each workload; the best of all is the machine's (on a
        # shared machine a single measurement may fall in a busy moment)
        new = measure_bandwidth(bw_numel, repeat + 2, dev)
        log(f"  in-place bandwidth GB/s: {new}")
        return new if best is None else {k: max(best[k], new[k]) for k in new}

    log(f"measuring in-place bandwidth on {dev} ...")
    bw = bandwidth()
    timed = {}
    for label, wsizes in workloads.items():
        log(f"{label}:")
        timed[label] = time_workload(wsizes, cases, modes, repeat, dev, log)
        bw = bandwidth(bw)
    report["bandwidth_GBps"] = bw
    for label, wsizes in workloads.items():
        times, medians, row_bandwidth, probe_rounds = timed[label]
        n = sum(wsizes)
        rows = {}
        for case, row in times.items():
            k = CASES[case][4]
            gbps = row_bandwidth[case]
            torch_best = min((v for m, v in row.items() if m.startswith("torch") and v),
                             default=None)
            rows[case] = {"ms": row, "ms_median": medians[case], "torch_fastest_ms": torch_best,
                          "bytes_per_param": bytes_per_param(k), "probe_GBps": gbps,
                          "probe_GBps_rounds": probe_rounds[case],
                          # the floor at the bandwidth of the probe timed next to this row ...
                          "floor_ms": 1e3 * bytes_per_param(k) * n / (gbps * 1e9),
                          "floor_bf16_ms": 1e3 * bytes_per_param(k, 2) * n / (gbps * 1e9),
                          # ... and at the best bandwidth any probe reached in the whole run
                          "floor_ms_run_best": 1e3 * bytes_per_param(k) * n / (bw["best"] * 1e9)}
        for row in rows.values():
            row["doubts"] = row_doubts(row, bw["best"], dev.type)
        report["workloads"][label] = {"numel": n, "tensors": len(wsizes), "rows": rows}
    if overhead:
        log("first fused step overhead (fresh processes) ...")
        report["first_step_s"] = first_step_overhead()
        log(f"  {report['first_step_s']}")
    if compile_baseline_flag:
        log("torch.compile baseline (RMSprop, flat buffer) ...")
        report["torch_compile_rmsprop_flat"] = compile_baseline(sizes, repeat, dev)
        log(f"  {report['torch_compile_rmsprop_flat']}")
    return report


# ---------------------------------------------------------------- tensor-count sweep
SWEEP_COUNTS = (1, 10, 100, 1000, 5000)
SWEEP_CASES = ("adam", "rmsprop", "momentum", "adagrad")
# DeepSpeed's CPU optimizers (ZeRO-Offload), per case: (module, class name)
_DEEPSPEED = {"adam": ("deepspeed.ops.adam", "DeepSpeedCPUAdam"),
              "adamw": ("deepspeed.ops.adam", "DeepSpeedCPUAdam"),
              "adagrad": ("deepspeed.ops.adagrad", "DeepSpeedCPUAdagrad")}
SWEEP_MODES = ("adaptim", "adaptim-new-grads", "adaptim-grads-in-place", "torch-fastest",
               "deepspeed")
# Modes whose gradients are written before each timed step, as a backward pass writes them (the
# other modes keep the same gradients, untouched, from step to step): "new-grads" gives each
# parameter a new gradient tensor after zero_grad() (its default, set_to_none=True),
# "grads-in-place" zeroes the gradients in place (set_to_none=False) and adds new values into
# them, as backward accumulates. Mode -> (optimizer mode, gradient writer).
_WRITTEN_GRADS = {"adaptim-new-grads": ("adaptim", "new"),
                  "adaptim-grads-in-place": ("adaptim", "in place")}
_SWEEP_LABELS = {"adaptim": "adaptim, gradients untouched", "adaptim-new-grads":
                 "adaptim, new gradients", "adaptim-grads-in-place": "adaptim, gradients in place"}


def torch_fastest_mode(case: str, device) -> str:
    """torch's fastest step for a case: fused where torch has a fused kernel on CPU (or any
    CUDA device), else foreach."""
    return "torch-fused" if CASES[case][5] or device.type == "cuda" else "torch-foreach"


def _deepspeed_optimizer(case: str, params):
    """DeepSpeed's CPU optimizer for ``case``, or a string saying why there is none."""
    if case not in _DEEPSPEED:
        return "no CPU optimizer"
    module, cls = _DEEPSPEED[case]
    try:
        import importlib
        ds_cls = getattr(importlib.import_module(module), cls)
    except Exception:  # noqa: BLE001 - DeepSpeed fails to import in many ways without its deps
        return "not installed"
    kw = dict(lr=CASES[case][3]["lr"])
    if case == "adam":
        kw["adamw_mode"] = False
    return ds_cls(params, **kw)


def _sweep_optimizer(case: str, mode: str, params, device):
    if mode == "adaptim":  # the library's default (fused=None)
        name, extra, _, torch_kw, _, _ = CASES[case]
        return adaptim.create(name, params, **extra, lr=torch_kw["lr"])
    if mode == "deepspeed":
        return _deepspeed_optimizer(case, params)
    return _make_optimizer(case, torch_fastest_mode(case, device), params)


def _copies_in_turn(grads):
    """A function returning one of two sets of copies of ``grads``, the other set each call."""
    sets = itertools.cycle([[g.clone() for g in grads] for _ in range(2)])
    return lambda: next(sets)


def _new_grads(params, grads):
    """A function giving ``params`` new gradient tensors after ``zero_grad()``: two sets of
    copies of ``grads``, taken in turn, so each step sees other tensors than the last."""
    next_set = _copies_in_turn(grads)

    def prepare(opt):
        opt.zero_grad()
        for p, g in zip(params, next_set()):
            p.grad = g
    return prepare


def _grads_in_place(params, grads):
    """A function writing ``params``' gradients in place before a step, as a backward pass
    after ``zero_grad(set_to_none=False)`` does: zeroed, then two sets of copies of ``grads``
    added in turn (the same tensors every step, new values)."""
    for p, g in zip(params, grads):
        p.grad = g.clone()
    next_set = _copies_in_turn(grads)

    def prepare(opt):
        opt.zero_grad(set_to_none=False)
        torch._foreach_add_([p.grad for p in params], next_set())
    return prepare


def tensor_count_sweep(total: int = 5_000_000, counts=SWEEP_COUNTS, cases=SWEEP_CASES,
                       repeat: int = 5, device="cpu", log=print) -> dict:
    """ms per step for ``total`` float32 parameters split into ``count`` equal tensors (as a user
    builds them: one tensor per parameter, no flattening), for adaptim's default, torch's
    fastest mode and DeepSpeed's CPU optimizer where it imports; the modes of one case and count
    are timed in interleaved rounds, each in another order (best of ``repeat``). Gradients stay
    the same tensors, untouched, from step to step, except in adaptim's default with its
    gradients written before every step (untimed) as a backward pass writes them:
    ``adaptim-new-grads`` (``zero_grad()``, then each ``p.grad`` a new tensor) and
    ``adaptim-grads-in-place`` (``zero_grad(set_to_none=False)``, then new values added). Each
    row is also given relative to the same mode's one-tensor time, and as microseconds per
    tensor above it."""
    dev = torch.device(device)
    out = {"total": total, "counts": list(counts), "repeat": repeat, "cases": {}}
    for case in cases:
        rows = {}
        for count in counts:
            size = total // count
            params = [torch.zeros(size, device=dev).normal_(0, 0.02).requires_grad_()
                      for _ in range(count)]
            for p in params:
                p.grad = torch.randn_like(p).mul_(1e-3)
            steps, prepare, row = {}, {}, {}
            for mode in SWEEP_MODES:
                own = params
                if mode in _WRITTEN_GRADS:
                    own = [p.detach().clone().requires_grad_() for p in params]
                    mode_name, writer = _WRITTEN_GRADS[mode]
                    prepare[mode] = (_new_grads if writer == "new" else _grads_in_place)(
                        own, [p.grad for p in params])
                    mode_params = own
                else:
                    mode_params, mode_name = params, mode
                opt = _sweep_optimizer(case, mode_name, mode_params, dev)
                if isinstance(opt, str):
                    row[mode] = opt
                    continue
                for _ in range(2):  # warm-up: state, kernel load, plan
                    if mode in prepare:
                        prepare[mode](opt)
                    opt.step()
                _sync(dev)
                steps[mode] = opt
            times = {m: [] for m in steps}
            shuffle = random.Random(0).shuffle
            for _ in range(repeat):
                # each round in another order: what one mode's step leaves behind (caches,
                # OpenMP threads still spinning) falls on each mode in turn
                order = list(steps)
                shuffle(order)
                for m in order:
                    opt = steps[m]
                    if m in prepare:
                        prepare[m](opt)
                        _sync(dev)
                    times[m].append(_seconds(opt.step, dev))
            row.update({m: 1e3 * min(t) for m, t in times.items()})
            rows[count] = row
            steps = params = None
            log(f"  {case}, {count} x {size}: " + ", ".join(
                f"{m} {v:.2f} ms" if isinstance(v, float) else f"{m} {v}"
                for m, v in row.items()))
        out["cases"][case] = rows
    return out


def sweep_markdown(sweep: dict) -> str:
    """The sweep as a Markdown table: ms per step, and x the same mode's one-tensor time."""
    counts = sweep["counts"]
    lines = [f"ms per step for {sweep['total']:,} float32 parameters split into N tensors "
             f"(best of {sweep['repeat']} interleaved rounds); in brackets, x the same "
             "optimizer's one-tensor time.", "",
             "| optimizer | mode | " + " | ".join(f"N = {c:,}" for c in counts)
             + " | µs per extra tensor |", "|---" * (len(counts) + 3) + "|"]
    for case, rows in sweep["cases"].items():
        for mode in SWEEP_MODES:
            one = rows[counts[0]].get(mode)
            cells = []
            for c in counts:
                v = rows[c].get(mode)
                if isinstance(v, float):
                    cells.append(f"{v:.2f} ({v / one:.1f}x)" if isinstance(one, float)
                                 else f"{v:.2f}")
                else:
                    cells.append(str(v))
            last = rows[counts[-1]].get(mode)
            per = (f"{1e3 * (last - one) / (counts[-1] - counts[0]):.2f}"
                   if isinstance(last, float) and isinstance(one, float) else "–")
            label = torch_fastest_mode(case, torch.device("cpu")) if mode == "torch-fastest" \
                else _SWEEP_LABELS.get(mode, mode)
            lines.append(f"| {case} | {label} | " + " | ".join(cells) + f" | {per} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- tiny models
def _tiny_models():
    torch.manual_seed(0)
    nn = torch.nn
    yield "1 tensor (1,000)", [nn.Parameter(torch.randn(1000))]
    yield "MLP 16-32-1 (4 tensors)", list(
        nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)).parameters())
    yield "MLP 64-256-256-10 (6 tensors)", list(
        nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                      nn.Linear(256, 10)).parameters())


def tiny_models(cases=("sgd", "momentum", "adam", "rmsprop"), rounds: int = 300,
                log=print) -> dict:
    """µs per step on tiny CPU models, where the per-step Python cost is the whole step:
    adaptim's default (fused=None) against its reference path (fused=False), medians of
    ``rounds`` interleaved steps."""
    out = {}
    for label, params in _tiny_models():
        for p in params:
            p.grad = torch.randn_like(p)
        for case in cases:
            name, extra, _, torch_kw, _, _ = CASES[case]
            steps = {}
            for fused in (None, False):
                copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
                for c, p in zip(copies, params):
                    c.grad = p.grad.clone()
                opt = adaptim.create(name, copies, **extra, lr=torch_kw["lr"] * 1e-3,
                                     fused=fused)
                opt.step()
                opt.step()
                steps[fused] = opt.step
            times = {f: [] for f in steps}
            for _ in range(rounds):
                for f, fn in steps.items():
                    start = time.perf_counter()
                    fn()
                    times[f].append(time.perf_counter() - start)
            row = {"fused=None": 1e6 * statistics.median(times[None]),
                   "fused=False": 1e6 * statistics.median(times[False])}
            out.setdefault(label, {})[case] = row
            log(f"  {label}, {case}: fused=None {row['fused=None']:.1f} µs, fused=False "
                f"{row['fused=False']:.1f} µs")
    return out


def tiny_markdown(tiny: dict) -> str:
    cases = list(next(iter(tiny.values())))
    lines = ["µs per step on tiny CPU models (median of interleaved steps): the default "
             "(fused=None) / the reference path (fused=False).", "",
             "| model | " + " | ".join(cases) + " |", "|---" * (len(cases) + 1) + "|"]
    for label, rows in tiny.items():
        lines.append(f"| {label} | " + " | ".join(
            f"{r['fused=None']:.1f} / {r['fused=False']:.1f}" for r in rows.values()) + " |")
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# When a row's numbers are not to be read as fact. The probe is a plain in-place add_: a machine
# that runs it slower than PLAUSIBLE_GBPS, or far slower in one round than in another, or slower
# than the optimizer step it judges, was busy with something else while the row was timed.
PLAUSIBLE_GBPS = {"cpu": 5.0, "cuda": 100.0}
SPREAD_LIMIT = 1.5        # slowest / fastest probe round; median / best of a step's rounds
LOW_PROBE_FRACTION = 0.5  # a row's probe against the best bandwidth of the whole run
FASTER_THAN_PROBE = 1.5   # floor / fused step: the step "beat" memory, so the probe was slow


def row_doubts(row: dict, run_best_gbps: float, device_type: str) -> dict:
    """Why a row's floor ratios (``"probe"``) or its speedup (``"steps"``) cannot be taken as
    measured fact; empty lists where nothing is in doubt."""
    probe, steps = [], []
    rounds = row.get("probe_GBps_rounds") or [row["probe_GBps"]]
    gbps = row["probe_GBps"]
    floor_gbps = PLAUSIBLE_GBPS.get(device_type, PLAUSIBLE_GBPS["cpu"])
    if gbps < floor_gbps:
        probe.append(f"probe {gbps:.1f} GB/s is implausibly slow for {device_type} "
                     f"(< {floor_gbps:g} GB/s)")
    if max(rounds) > SPREAD_LIMIT * min(rounds):
        probe.append(f"probe unstable: {min(rounds):.1f}-{max(rounds):.1f} GB/s across rounds")
    if gbps < LOW_PROBE_FRACTION * run_best_gbps:
        probe.append(f"probe {gbps:.1f} GB/s is under {LOW_PROBE_FRACTION:.0%} of the run's "
                     f"best {run_best_gbps:.1f} GB/s")
    fused = row["ms"].get("adaptim-fused")
    if fused and row["floor_ms"] > FASTER_THAN_PROBE * fused:
        probe.append(f"the fused step ran {row['floor_ms'] / fused:.1f}x faster than the probe "
                     "allows")
    torch_mode = min((m for m, v in row["ms"].items() if m.startswith("torch") and v),
                     key=lambda m: row["ms"][m], default=None)
    for mode in (torch_mode, "adaptim-fused"):
        best, median = row["ms"].get(mode), row.get("ms_median", {}).get(mode)
        if best and median and median > SPREAD_LIMIT * best:
            steps.append(f"{mode} unstable: median {median:.1f} ms vs best {best:.1f} ms")
    return {"probe": probe, "steps": steps}


def _cells(row: dict, dash: str) -> dict:
    """The derived columns of one row, or '?' where :func:`row_doubts` says they are not fact."""
    ms = row["ms"]
    fused, bf16 = ms.get("adaptim-fused"), ms.get("adaptim-fused-bf16")
    doubts = row.get("doubts") or {"probe": [], "steps": []}

    def pct(floor, step):
        if not step:
            return dash
        return "?" if doubts["probe"] else f"{100 * floor / step:.0f}%"

    speed = dash
    if fused and row["torch_fastest_ms"]:
        speed = "?" if doubts["steps"] else f"{row['torch_fastest_ms'] / fused:.2f}x"
    return {"speedup": speed, "floor/fused": pct(row["floor_ms"], fused),
            "run-best": pct(row["floor_ms_run_best"], fused),
            "bf16": pct(row["floor_ms"], bf16)}


def _modes_run(report: dict) -> list[str]:
    """The modes that have a column: those timed in this run, in MODES order."""
    seen = {m for w in report["workloads"].values() for r in w["rows"].values() for m in r["ms"]}
    return [m for m in MODES if m in seen]


def doubt_lines(report: dict) -> list[str]:
    """One line per row whose ratios are shown as '?', saying why."""
    lines = []
    for label, w in report["workloads"].items():
        for case, row in w["rows"].items():
            doubts = row.get("doubts") or {}
            reasons = doubts.get("probe", []) + doubts.get("steps", [])
            if reasons:
                lines.append(f"{label} / {case}: not measured reliably ({'; '.join(reasons)}); "
                             "rerun on a quieter machine (--threads 1 steadies a loaded one)")
    return lines


def print_report(report: dict) -> None:
    """The tables on the terminal: with rich where it is installed, else as Markdown."""
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        print(markdown(report))
        return

    console = Console(width=max(Console().width, 150))
    modes = _modes_run(report)
    bw = report["bandwidth_GBps"]
    console.print(f"[bold]machine[/]: {escape(str(report['machine']))}")
    console.print("in-place bandwidth: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in bw.items()))
    for label, w in report["workloads"].items():
        table = Table(title=f"{label}: ms per step (best of {report['repeat']}); speedup = "
                            "torch's fastest mode / adaptim-fused; floor = bytes / bandwidth; "
                            "? = not reliable (see below)")
        table.add_column("optimizer", style="bold")
        for m in modes:
            table.add_column(m, justify="right")
        for name in ("speedup", "B/param", "probe GB/s", "floor ms", "floor/fused",
                     "same, run-best bw", "fp32 floor/bf16"):
            table.add_column(name, justify="right")
        for case, r in w["rows"].items():
            ms = r["ms"]
            cells = [f"{ms[m]:.1f}" if ms.get(m) else "-" for m in modes]
            c = _cells(r, "-")
            table.add_row(case, *cells, c["speedup"], str(r["bytes_per_param"]),
                          f"{r['probe_GBps']:.0f}", f"{r['floor_ms']:.1f}", c["floor/fused"],
                          c["run-best"], c["bf16"])
        console.print(table)
    for line in doubt_lines(report):
        console.print(f"[yellow]warning[/]: {escape(line)}")
    if "first_step_s" in report:
        console.print("first fused step: " + ", ".join(
            f"{k}: {v:.2f} s" if v is not None else f"{k}: failed"
            for k, v in report["first_step_s"].items()))
    if "torch_compile_rmsprop_flat" in report:
        c = report["torch_compile_rmsprop_flat"]
        console.print(f"torch.compile RMSprop on one flat buffer: compile {c['compile_s']:.1f} s, "
                      f"{c['ms_per_step']:.1f} ms per step")


def markdown(report: dict) -> str:
    """The report as Markdown tables (for the README)."""
    bw = report["bandwidth_GBps"]
    lines = [f"Machine: {report['machine']['processor']}, {report['machine']['cpu_count']} cores "
             f"({report['machine']['torch_threads']} torch threads), torch "
             f"{report['machine']['torch']}. In-place bandwidth measured in the same run: "
             + ", ".join(f"`{k}` {v:.1f} GB/s" for k, v in bw.items() if k != "best")
             + f" (best {bw['best']:.1f} GB/s). Each row's floor uses the bandwidth of an `add_` "
             "probe timed in the same interleaved rounds as that row's steps (column probe); "
             "\"at run-best\" judges the fused step against the best bandwidth of the whole run "
             "instead.", ""]
    short = {"torch-for-loop": "torch loop", "torch-foreach": "torch foreach",
             "torch-fused": "torch fused", "adaptim": "adaptim default",
             "adaptim-reference": "adaptim reference", "adaptim-fused": "**adaptim fused**",
             "adaptim-fused-bf16": "fused, bf16 state"}
    modes = _modes_run(report)
    for label, w in report["workloads"].items():
        lines += [f"**{label}**, ms per step (best of {report['repeat']}):", "",
                  "| optimizer | " + " | ".join(short[m] for m in modes)
                  + " | speedup vs torch's fastest | probe GB/s | floor ms (B/param) |"
                  " floor / fused | at run-best | fp32 floor / bf16 |",
                  "|---" * (len(modes) + 7) + "|"]
        for case, r in w["rows"].items():
            ms = r["ms"]
            cells = [f"{ms[m]:.1f}" if ms.get(m) else "–" for m in modes]
            if "adaptim-fused" in modes:
                k = modes.index("adaptim-fused")
                cells[k] = f"**{cells[k]}**"
            c = _cells(r, "–")
            lines.append(f"| {case} | " + " | ".join(cells) + f" | {c['speedup']} | "
                         f"{r['probe_GBps']:.0f} | {r['floor_ms']:.1f} ({r['bytes_per_param']}) | "
                         f"{c['floor/fused']} | {c['run-best']} | {c['bf16']} |")
        lines.append("")
    doubts = doubt_lines(report)
    if doubts:
        lines += ["? = not measured reliably:", ""] + [f"- {d}" for d in doubts] + [""]
    if "first_step_s" in report:
        lines.append("First fused step (fresh process, 1,000 parameters): " + "; ".join(
            f"{k}: {v:.2f} s" if v is not None else f"{k}: failed"
            for k, v in report["first_step_s"].items()) + ".")
    if "torch_compile_rmsprop_flat" in report:
        c = report["torch_compile_rmsprop_flat"]
        lines.append(f"torch.compile of RMSprop's arithmetic on one flat buffer of the same size: "
                     f"{c['compile_s']:.1f} s to compile, {c['ms_per_step']:.1f} ms per step.")
    return "\n".join(lines) + "\n"


def _at_least(flag: str, low: int):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer >= {low}, got {text!r}")
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer >= {low}, got {value}")
        return value
    return parse


def _device(text: str) -> str:
    """A torch device this machine has: a usage error (exit 2) naming what is missing."""
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"--device {text!r} is not a torch device "
                                         "(e.g. cpu, cuda, cuda:1)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"--device {text}: CUDA is not available here (torch {torch.__version__}"
                + (", built without CUDA" if torch.version.cuda is None else ", no GPU visible")
                + ")")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"--device {text}: adaptim bench times cpu or cuda")
    return text


def add_parser(subparsers) -> argparse.ArgumentParser:
    from adaptim.cli import add_names_argument

    p = subparsers.add_parser("bench", help="time optimizer steps vs torch.optim and the "
                                            "memory-bandwidth floor")
    p.add_argument("--params", type=_at_least("--params", len(GPT2_SIZES)), default=None,
                   help="total parameters of the large workload (GPT-2-small shapes scaled; "
                        "default 124.4M)")
    p.add_argument("--small", type=_at_least("--small", 1), nargs=2, default=(5000, 1000),
                   metavar=("TENSORS", "PARAMS"), help="the many-small-tensors workload")
    add_names_argument(p, "--optimizers", valid=CASES, help="cases to time (default all)")
    add_names_argument(p, "--modes", valid=MODES, metavar="MODE",
                       help="modes to time (default all): " + ", ".join(MODES) + "; adaptim is "
                            "the library's default (fused=None), adaptim-reference fused=False")
    p.add_argument("--repeat", type=_at_least("--repeat", 1), default=3,
                   help="timed steps per measurement")
    p.add_argument("--device", type=_device,
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=_at_least("--threads", 1), default=None,
                   help="torch.set_num_threads for the whole run (fewer threads are steadier "
                        "on a loaded machine); default: torch's")
    p.add_argument("--no-overhead", action="store_true",
                   help="skip the first-step overhead measurement")
    p.add_argument("--compile-baseline", action="store_true",
                   help="also time torch.compile of RMSprop on a flat buffer")
    p.add_argument("--sweep", action="store_true", help="only the tensor-count sweep (5M "
                   "parameters in 1 ... 5,000 tensors) and the tiny-model rows")
    p.add_argument("--host", action="store_true", help="only host µs per step() on 1 ... "
                   "5,000 tensors of 1,000 parameters, the device idle before each step "
                   "(adaptim.bench.host)")
    p.add_argument("--counts", type=_at_least("--counts", 1), nargs="+", default=None,
                   metavar="N", help="tensor counts of --host (default 1 100 1000 5000)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the report as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="write the tables as Markdown (as in the README)")
    p.set_defaults(func=_cmd)
    return p


def _cmd(args) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.sweep:
        return _cmd_sweep(args)
    if args.host:
        return _cmd_host(args)
    report = run(params=args.params, small=tuple(args.small), cases=args.optimizers,
                 modes=args.modes, repeat=args.repeat, device=args.device,
                 overhead=not args.no_overhead, compile_baseline_flag=args.compile_baseline,
                 log=lambda s: print(s, file=sys.stderr))
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(report))
    return 0


def _cmd_sweep(args) -> int:
    def log(line):
        print(line, file=sys.stderr)

    log("tensor-count sweep ...")
    report = {"sweep": tensor_count_sweep(repeat=args.repeat, device=args.device, log=log)}
    log("tiny models ...")
    report["tiny"] = tiny_models(log=log)
    return _emit(report, sweep_markdown(report["sweep"]) + "\n" + tiny_markdown(report["tiny"]),
                 args)


def _cmd_host(args) -> int:
    from adaptim.bench.host import HOST_COUNTS, host_markdown, host_step_us

    report = host_step_us(counts=args.counts or HOST_COUNTS, device=args.device,
                          log=lambda s: print(s, file=sys.stderr))
    return _emit(report, host_markdown(report), args)


def _emit(report: dict, text: str, args) -> int:
    """Print ``text`` and write the report to ``--json`` and the text to ``--markdown``."""
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaptim bench")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["bench", *(argv or [])])
    return args.func(args)
