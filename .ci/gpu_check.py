"""`make gpu-check`: the CUDA tests, `adaptim bench --device cuda` and host µs per step in under
ten minutes.

Runs with the machine's own interpreter and ``PYTHONPATH=src`` (no virtual environment, no
network: torch, triton and pytest must be installed) and writes into the output directory
(``--out``, else ``$GPU_CHECK_OUT``, else ``gpu-check/``):

- ``result.md``: versions (Python, torch, triton, CUDA, GPU), the pytest summary lines, the
  bench tables, the host µs per ``step()`` table (``adaptim bench --host``: 1 to 5,000 tensors,
  adaptim's Triton and multi-tensor steps with and without their cached plans, torch's fused
  and foreach steps), the time each part took;
- ``pytest-files.log``, ``pytest-cuda.log``, ``bench.log``, ``bench.json``, ``bench.md``,
  ``host.log``, ``host.json``, ``host.md``.

Exit status: 0 all passed, 1 a test failed or a part ran out of time, 2 no CUDA device (then
``result.md`` says only that).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Every test of these files (their CPU half runs Triton's interpreter), then the tests named
# "cuda" anywhere else in the suite.
CUDA_FILES = ["tests/test_fused_triton.py", "tests/test_fused.py"]
BENCH_ARGS = ["--device", "cuda", "--repeat", "3", "--no-overhead"]
HOST_ARGS = ["--host", "--device", "cuda"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("GPU_CHECK_OUT") or "gpu-check",
                   help="output directory (default $GPU_CHECK_OUT, else gpu-check/)")
    p.add_argument("--tests-timeout", type=int, default=300, metavar="S",
                   help="seconds for the CUDA test files (default 300)")
    p.add_argument("--cuda-tests-timeout", type=int, default=80, metavar="S",
                   help="seconds for the other tests named cuda (default 80)")
    p.add_argument("--bench-timeout", type=int, default=130, metavar="S",
                   help="seconds for adaptim bench (default 130)")
    p.add_argument("--host-timeout", type=int, default=60, metavar="S",
                   help="seconds for adaptim bench --host (default 60)")
    p.add_argument("--bench-params", type=int, default=None, metavar="N",
                   help="parameters of bench's large workload (default GPT-2 small, 124.4M)")
    return p


def _versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch
    except ImportError as exc:
        out["torch"] = f"not importable: {exc}"
        return out
    out["torch"] = torch.__version__
    out["torch CUDA"] = str(torch.version.cuda)
    try:
        import triton
        out["triton"] = triton.__version__
    except ImportError as exc:
        out["triton"] = f"not importable: {exc}"
    if torch.cuda.is_available():
        out["GPU"] = ", ".join(torch.cuda.get_device_name(i)
                               for i in range(torch.cuda.device_count()))
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        if smi.returncode == 0:
            out["driver, memory"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _run(cmd: list[str], log: Path, timeout: int) -> tuple[int | None, float, str]:
    """(exit status or None on timeout, seconds, output) of ``cmd``; output also in ``log``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        code, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        def as_text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        code, text = None, as_text(exc.stdout) + as_text(exc.stderr)
        text += f"\n[gpu_check] stopped after {timeout} s\n"
    log.write_text(text)
    return code, time.perf_counter() - start, text


def _summary(text: str) -> list[str]:
    """pytest's short summary (FAILED/ERROR lines) and its final line."""
    lines = text.strip().splitlines()
    keep = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:20]
    final = [ln for ln in lines if ln.strip().startswith("=") or " passed" in ln
             or " failed" in ln or " error" in ln or "no tests ran" in ln]
    return keep + final[-1:]


def _failed_tests(text: str) -> bool:
    return any(ln.startswith("FAILED") for ln in text.splitlines())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("tests_timeout", "cuda_tests_timeout", "bench_timeout", "host_timeout"):
        if getattr(args, name) < 1:
            _parser().error(f"--{name.replace('_', '-')} must be >= 1")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"gpu_check: error: cannot create --out {str(out)!r}: {exc}", file=sys.stderr)
        return 2
    versions = _versions()
    header = ["# adaptim GPU check", "", time.strftime("%Y-%m-%d %H:%M:%S %Z"), ""]
    header += [f"- {k}: {v}" for k, v in versions.items()] + [""]
    if "GPU" not in versions:
        message = ("no CUDA device: torch.cuda.is_available() is False "
                   f"(torch {versions.get('torch')}, CUDA {versions.get('torch CUDA')}); "
                   "the GPU check needs a machine with an NVIDIA GPU")
        (out / "result.md").write_text("\n".join(header + [message, ""]))
        print(f"gpu_check: {message}", file=sys.stderr)
        return 2

    py = sys.executable
    report, failed = list(header), False
    code, secs, text = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_FILES],
                            out / "pytest-files.log", args.tests_timeout)
    failed |= code != 0
    report += [f"## Tests: {' '.join(CUDA_FILES)} ({secs:.0f} s)", "", "```",
               *_summary(text), "```", ""]
    others = [str(f.relative_to(ROOT)) for f in sorted((ROOT / "tests").glob("test_*.py"))
              if str(f.relative_to(ROOT)) not in CUDA_FILES and "cuda" in f.read_text()]
    code, secs, text = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                             "--continue-on-collection-errors", *others],
                            out / "pytest-cuda.log", args.cuda_tests_timeout)
    # 5: no test selected. A file that cannot be collected here (a test extra missing on the
    # GPU machine) is listed in the summary without failing the check; a failed test fails it.
    failed |= code is None or (code not in (0, 5) and _failed_tests(text))
    report += [f"## Tests named cuda elsewhere in tests/ ({secs:.0f} s)", "", "```",
               *_summary(text), "```", ""]
    bench = [*BENCH_ARGS, "--json", str(out / "bench.json"), "--markdown", str(out / "bench.md")]
    if args.bench_params:
        bench += ["--params", str(args.bench_params)]
    code, secs, text = _run([py, "-m", "adaptim", "bench", *bench], out / "bench.log",
                            args.bench_timeout)
    failed |= code != 0
    report += [f"## adaptim bench {' '.join(BENCH_ARGS)} ({secs:.0f} s)", ""]
    if code == 0 and (out / "bench.md").exists():
        report += [(out / "bench.md").read_text()]
    else:
        status = "stopped at the time limit" if code is None else f"exit status {code}"
        report += [f"bench {status}; last lines of bench.log:", "", "```",
                   *text.strip().splitlines()[-15:], "```", ""]
    host = [*HOST_ARGS, "--json", str(out / "host.json"), "--markdown", str(out / "host.md")]
    code, secs, text = _run([py, "-m", "adaptim", "bench", *host], out / "host.log",
                            args.host_timeout)
    failed |= code != 0
    report += [f"## Host µs per step: adaptim bench {' '.join(HOST_ARGS)} ({secs:.0f} s)", ""]
    if code == 0 and (out / "host.md").exists():
        report += [(out / "host.md").read_text()]
    else:
        status = "stopped at the time limit" if code is None else f"exit status {code}"
        report += [f"bench --host {status}; last lines of host.log:", "", "```",
                   *text.strip().splitlines()[-15:], "```", ""]
    (out / "result.md").write_text("\n".join(report))
    print(f"gpu_check: {'FAILED' if failed else 'passed'}; results in {out / 'result.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
