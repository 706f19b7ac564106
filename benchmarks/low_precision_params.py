"""bfloat16 parameters on CPU: adaptim's C kernel vs its reference path vs torch's fastest mode.

20 tensors x 1M bfloat16 parameters (GPT-2-sized matrices) with bfloat16 gradients. For each
optimizer, in interleaved rounds in one process (one step of every mode per round, so drift of
a shared machine hits all modes alike):

- adaptim default (``fused=None``: the C kernel, bf16 state, float32 arithmetic, rounded once),
- adaptim kernel with ``state_dtype=torch.float32``,
- adaptim ``fused=False`` (the reference path, torch.optim's bits),
- torch.optim's fastest CPU mode for bf16 (``fused=True`` where torch has it, else foreach),
- DeepSpeed's ``DeepSpeedCPUAdam`` (float32 state) where it imports,
- and, for scale, adaptim's kernel on the same shapes in float32.

Prints ms per step (median, min and max over rounds) and ``uptime``; writes
``benchmarks/low_precision_<dtype>_latest.json``. Run:
``PYTHONPATH=src python benchmarks/low_precision_params.py [--rounds 15] [--numel 1000000]
[--dtype float16]``
(torch's default thread count, as ``adaptim bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

import adaptim

# optimizer -> (adaptim name, torch.optim class, kwargs, torch has a CPU fused kernel)
DT = {torch.bfloat16: "bf16", torch.float16: "fp16"}
CASES = {
    "adam": ("adam", "Adam", dict(lr=1e-3), True),
    "momentum": ("momentum", "SGD", dict(lr=1e-2, momentum=0.9), True),
    "rmsprop": ("rmsprop", "RMSprop", dict(lr=1e-3), False),
    "adagrad": ("adagrad", "Adagrad", dict(lr=1e-2), True),
}


def _deepspeed_adam(params):
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
    except Exception:  # noqa: BLE001 - DeepSpeed fails to import in many ways
        return None
    try:
        return DeepSpeedCPUAdam(params, lr=1e-3, adamw_mode=False)
    except Exception:  # noqa: BLE001 - its CPU op may fail to build
        return None


def _params(count, numel, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(numel, generator=gen).mul_(0.02).to(dtype).requires_grad_()
              for _ in range(count)]
    for p in params:
        p.grad = torch.randn(numel, generator=gen).mul_(1e-3).to(dtype)
    return params


def modes_for(case: str, count: int, numel: int, dtype=torch.bfloat16) -> dict:
    name, torch_cls, kw, torch_fused = CASES[case]
    modes = {
        f"adaptim default (kernel, {DT[dtype]} state)": adaptim.create(
            name, _params(count, numel, dtype), **kw),
        "adaptim kernel, fp32 state": adaptim.create(
            name, _params(count, numel, dtype), **kw, state_dtype=torch.float32),
        "adaptim fused=False (reference)": adaptim.create(
            name, _params(count, numel, dtype), **kw, fused=False),
        f"torch {'fused' if torch_fused else 'foreach'}": getattr(torch.optim, torch_cls)(
            _params(count, numel, dtype), **kw,
            **({"fused": True} if torch_fused else {"foreach": True})),
        "adaptim kernel, float32 params": adaptim.create(
            name, _params(count, numel, torch.float32), **kw),
    }
    if case == "adam":
        ds = _deepspeed_adam(_params(count, numel, dtype))
        if ds is not None:
            modes["DeepSpeedCPUAdam (fp32 state)"] = ds
    return modes


def run(count: int, numel: int, rounds: int, dtype=torch.bfloat16) -> dict:
    out = {}
    for case in CASES:
        modes = modes_for(case, count, numel, dtype)
        for opt in modes.values():  # warm-up: state made, libraries built
            opt.step()
        times = {m: [] for m in modes}
        for _ in range(rounds):
            for m, opt in modes.items():
                start = time.perf_counter()
                opt.step()
                times[m].append((time.perf_counter() - start) * 1e3)
        out[case] = {m: {"median": statistics.median(t), "min": min(t), "max": max(t)}
                     for m, t in times.items()}
        print(f"\n{case}: {count} x {numel:,} {DT[dtype]} params, ms per step "
              f"(median [min-max] of {rounds} interleaved rounds)")
        for m, s in out[case].items():
            print(f"  {m:38s} {s['median']:8.2f}  [{s['min']:.2f}-{s['max']:.2f}]")
        del modes
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--numel", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    args = ap.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; uptime: {uptime}")
    results = run(args.count, args.numel, args.rounds, getattr(torch, args.dtype))
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime after: {uptime_after}")
    report = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "uptime_before": uptime,
                          "uptime_after": uptime_after},
              "dtype": args.dtype, "count": args.count, "numel": args.numel, "rounds": args.rounds,
              "results": results}
    path = Path(__file__).with_name(f"low_precision_{args.dtype}_latest.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
