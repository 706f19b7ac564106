"""Scale benchmark: optimizer step time and peak memory from 1M to 300M parameters.

    python benchmarks/scale.py                                  # 1M .. 100M, rmsprop + adam
    python benchmarks/scale.py --sizes 1e6,1e7,1e8,3e8 --repeats 3 --markdown

Every configuration (size × optimizer × implementation) runs in a fresh Python process, so that
its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, a high-water mark) is
its own. The process

1. allocates the parameters (``--tensors`` equal fp32 tensors, ``size`` elements in all) and
   their gradients, touching every page, and reads the baseline peak RSS;
2. builds the optimizer and runs one warm-up step (this creates the state);
3. times ``--repeats`` steps (median reported) and reads the peak RSS again.

``step peak - baseline`` is what the optimizer added at its worst moment: its state plus any
temporaries alive at once. The algorithm *needs* only its state (``state`` column: the nbytes of
every state tensor), so ``extra`` = peak - baseline - state is the implementation's temporary
memory; shown also in units of one parameter tensor (``extra / tensor``): a per-tensor loop keeps
O(1) tensor-sized temporaries alive, a multi-tensor (foreach) implementation O(#tensors), i.e.
full-model-sized copies.

Implementations, all in the same run: ``adaptim`` (fused=False, the reference path: a
per-tensor loop over the functional rule), ``torch-forloop`` (torch.optim, foreach=False),
``torch-foreach`` (foreach=True, torch's CPU default is the for-loop, so this is opt-in) and
``torch-fused`` (fused=True, where torch has it on CPU: SGD, Adagrad, Adam, AdamW).
``adaptim-fused`` is listed when adaptim's fused steps exist.

Timings on a shared machine are noisy: compare ratios within one run. This is a benchmark, not
a test; it is not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# Bytes one fp32 parameter moves per step (reads + writes of p, g and the state), from
# shared/docs/performance-notes.md: the floor any implementation is bound by.
BYTES_PER_PARAM = {"sgd": 12, "momentum": 20, "nesterov": 20, "adagrad": 20, "rmsprop": 20,
                   "adadelta": 28, "adam": 28, "adamw": 28}
TORCH_FUSED_ON_CPU = {"sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"}
IMPLS = ("adaptim", "adaptim-fused", "torch-forloop", "torch-foreach", "torch-fused")


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def make_optimizer(name: str, impl: str, params):
    import torch

    import adaptim
    spec = adaptim.get_spec(name)
    if impl == "adaptim":
        return spec.create(params, fused=False)  # the reference path (the default is fused)
    if impl == "adaptim-fused":
        return spec.create(params, fused=True)
    torch_cls = getattr(torch.optim, spec.cls.__name__)
    flags = {"torch-forloop": {"foreach": False}, "torch-foreach": {"foreach": True},
             "torch-fused": {"fused": True}}[impl]
    defaults = spec.create([torch.zeros(1, requires_grad=True)]).defaults
    lr = float(defaults["lr"])
    return torch_cls(params, lr=lr, **spec.settings, **flags)


def worker(size: int, name: str, impl: str, repeats: int, tensors: int, threads: int) -> dict:
    import torch
    if threads:
        torch.set_num_threads(threads)
    # Warm up the code path on a tiny tensor first, so that imports, thread pools and
    # allocator arenas are part of the baseline, not of the measured step.
    tiny = torch.zeros(8, requires_grad=True)
    tiny.grad = torch.ones(8)
    make_optimizer(name, impl, [tiny]).step()
    torch.manual_seed(0)
    per_tensor = size // tensors
    params = [torch.rand(per_tensor).requires_grad_() for _ in range(tensors)]
    for p in params:
        p.grad = torch.rand(per_tensor).sub_(0.5)
    baseline = peak_rss_bytes()
    optimizer = make_optimizer(name, impl, params)
    optimizer.step()  # warm-up: creates the state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    peak = peak_rss_bytes()
    state_bytes = sum(v.nbytes for s in optimizer.state.values() for v in s.values()
                      if torch.is_tensor(v) and v.dim() > 0)
    tensor_bytes = per_tensor * 4
    median = statistics.median(times)
    params_total = per_tensor * tensors
    return dict(size=params_total, optimizer=name, impl=impl, tensors=tensors,
                threads=torch.get_num_threads(), repeats=repeats,
                step_ms=median * 1e3, step_ms_min=min(times) * 1e3,
                ns_per_param=median * 1e9 / params_total,
                gb_per_s=BYTES_PER_PARAM[name] * params_total / median / 1e9,
                baseline_mb=baseline / 2**20, added_mb=(peak - baseline) / 2**20,
                state_mb=state_bytes / 2**20,
                extra_mb=(peak - baseline - state_bytes) / 2**20,
                extra_tensors=(peak - baseline - state_bytes) / tensor_bytes)


def adaptim_has_fused() -> bool:
    import torch

    import adaptim
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    try:
        adaptim.RMSprop([p], fused=True).step()
    except NotImplementedError:
        return False
    return True


def run_all(args) -> list[dict]:
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    names = args.optimizers.split(",")
    impls = args.impls.split(",")
    for impl in impls:
        if impl not in IMPLS:
            raise SystemExit(f"unknown implementation {impl!r}; valid: {', '.join(IMPLS)}")
    if "adaptim-fused" in impls and not adaptim_has_fused():
        print("adaptim fused steps are not available in this build: skipping adaptim-fused",
              file=sys.stderr)
        impls = [i for i in impls if i != "adaptim-fused"]
    results = []
    for size in sizes:
        for name in names:
            for impl in impls:
                if impl == "torch-fused" and name not in TORCH_FUSED_ON_CPU:
                    continue
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--size", str(size),
                       "--optimizers", name, "--impls", impl, "--repeats", str(args.repeats),
                       "--tensors", str(args.tensors), "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"{size} {name} {impl} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                results.append(row)
                print(f"{row['size'] / 1e6:7.0f}M {name:9s} {impl:14s} "
                      f"{row['step_ms']:9.1f} ms (min {row['step_ms_min']:9.1f})  "
                      f"{row['ns_per_param']:6.2f} ns/param  "
                      f"{row['gb_per_s']:5.1f} GB/s  added {row['added_mb']:8.0f} MB "
                      f"(state {row['state_mb']:8.0f}, extra {row['extra_mb']:7.0f} MB = "
                      f"{row['extra_tensors']:5.1f} tensors)", flush=True)
    return results


def markdown(results: list[dict]) -> str:
    """One row per (size, optimizer): step time (median, and min in brackets) of each
    implementation, the state the algorithm needs, and each implementation's extra peak memory
    (temporaries) in MB."""
    impls = [i for i in IMPLS if any(r["impl"] == i for r in results)]
    rows: dict[tuple, dict] = {}
    for r in results:
        rows.setdefault((r["size"], r["optimizer"]), {})[r["impl"]] = r
    head = " | ".join(f"{i} ms" for i in impls)
    extra = " / ".join(impls)
    lines = [f"| params | optimizer | {head} | adaptim ns/param | state MB | extra MB ({extra}) |",
             "|---:|---|" + "---:|" * len(impls) + "---:|---:|---:|"]
    for (size, name), by_impl in rows.items():
        times = " | ".join(
            f"{by_impl[i]['step_ms']:.1f} ({by_impl[i]['step_ms_min']:.1f})" if i in by_impl
            else "–" for i in impls)
        extras = " / ".join(f"{max(by_impl[i]['extra_mb'], 0):.0f}" if i in by_impl else "–"
                            for i in impls)
        any_row = next(iter(by_impl.values()))
        ns = f"{by_impl['adaptim']['ns_per_param']:.2f}" if "adaptim" in by_impl else "–"
        lines.append(f"| {size / 1e6:.0f}M | {name} | {times} | {ns} | "
                     f"{any_row['state_mb']:.0f} | {extras} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7,3e7,1e8",
                        help="total parameter counts, comma-separated (e.g. 1e6,1e7,1e8,3e8)")
    parser.add_argument("--optimizers", default="rmsprop,adam", help="registry names")
    parser.add_argument("--impls", default="adaptim,adaptim-fused,torch-forloop,torch-foreach,"
                                           "torch-fused")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (median reported)")
    parser.add_argument("--tensors", type=int, default=16,
                        help="number of equal parameter tensors the size is split into")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch's default); 1 by default because on a "
                             "shared machine a descheduled worker thread stalls a whole op")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--from-json", metavar="PATH",
                        help="print the Markdown table of results saved with --out; run nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in (("--repeats", args.repeats), ("--tensors", args.tensors)):
        if value < 1:
            parser.error(f"{name} must be >= 1")
    if args.from_json:
        with open(args.from_json) as f:
            print(markdown(json.load(f)))
        return
    if args.worker:
        print(json.dumps(worker(args.size, args.optimizers, args.impls, args.repeats,
                                args.tensors, args.threads)))
        return
    import platform

    import torch
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}",
          flush=True)
    results = run_all(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if args.markdown:
        print(markdown(results))


if __name__ == "__main__":
    main()
