"""`make gpu-check` (.ci/gpu_check.py): what can be checked without a GPU."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_says_so_and_exits_2(tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ, GPU_CHECK_OUT=str(out))
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
    result = (out / "result.md").read_text()  # the env var chose the directory
    assert "no CUDA device" in result and f"torch: {torch.__version__}" in result


def test_out_argument_wins_over_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CHECK_OUT", str(tmp_path / "env"))
    gpu_check = _load()
    assert gpu_check._parser().parse_args([]).out == str(tmp_path / "env")
    assert gpu_check._parser().parse_args(["--out", "x"]).out == "x"
    monkeypatch.delenv("GPU_CHECK_OUT")
    assert gpu_check._parser().parse_args([]).out == "gpu-check"


def test_bad_arguments_exit_2(tmp_path, capsys):
    gpu_check = _load()
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--out", str(tmp_path), "--bench-timeout", "0"])
    assert exc.value.code == 2 and "--bench-timeout must be >= 1" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert gpu_check.main(["--out", str(blocker / "sub")]) == 2
    assert "cannot create --out" in capsys.readouterr().err


def test_summary_keeps_failures_and_the_final_line():
    gpu_check = _load()
    text = ("....F..s\n=========== short test summary info ===========\n"
            "FAILED tests/test_fused.py::test_x - AssertionError\n"
            "1 failed, 6 passed, 1 skipped in 3.2s\n")
    assert gpu_check._summary(text) == ["FAILED tests/test_fused.py::test_x - AssertionError",
                                        "1 failed, 6 passed, 1 skipped in 3.2s"]


def test_the_timeouts_fit_in_ten_minutes():
    args = _load()._parser().parse_args([])
    assert args.tests_timeout + args.cuda_tests_timeout + args.bench_timeout \
        + args.host_timeout <= 600 - 20


def test_a_collection_error_is_not_a_failed_test():
    gpu_check = _load()
    assert not gpu_check._failed_tests("ERROR tests/test_fuzz.py - ModuleNotFoundError\n"
                                       "1 skipped, 1 error in 2.0s\n")
    assert gpu_check._failed_tests("FAILED tests/test_x.py::test_cuda_y - AssertionError\n")


@pytest.mark.slow
def test_the_whole_check_on_cpu_writes_every_section(tmp_path, monkeypatch):
    """The orchestration, with CPU stand-ins for the GPU parts: one small test file, a tiny
    CPU bench, and a machine description that claims a GPU."""
    gpu_check = _load()
    monkeypatch.setattr(gpu_check, "CUDA_FILES", ["tests/test_registry.py"])
    monkeypatch.setattr(gpu_check, "BENCH_ARGS", ["--device", "cpu", "--repeat", "1",
                                                  "--no-overhead", "--small", "5", "10",
                                                  "--optimizers", "sgd"])
    monkeypatch.setattr(gpu_check, "HOST_ARGS", ["--host", "--device", "cpu", "--counts", "1",
                                                 "3"])
    versions = gpu_check._versions()
    monkeypatch.setattr(gpu_check, "_versions", lambda: {**versions, "GPU": "(cpu stand-in)"})
    code = gpu_check.main(["--out", str(tmp_path), "--bench-params", "2000"])
    result = (tmp_path / "result.md").read_text()
    assert code == 0, result
    assert "## Tests: tests/test_registry.py" in result and " passed" in result
    assert "## Tests named cuda elsewhere" in result
    assert "| sgd |" in result  # the bench table
    assert "## Host µs per step" in result and "| adaptim fused=True | " in result
    for name in ("pytest-files.log", "pytest-cuda.log", "bench.log", "bench.json", "bench.md",
                 "host.log", "host.json", "host.md"):
        assert (tmp_path / name).exists(), name
