"""The command line as a person uses it: subprocesses, exit codes, messages, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from adaptim.registry import list_optimizers

pytest.importorskip("matplotlib")

from adaptim.lab.tasks import list_tasks  # noqa: E402

ENV = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")


def _adaptim(*args, timeout=60, cwd=None):
    return subprocess.run([sys.executable, "-m", "adaptim", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=cwd)


def test_list_shows_optimizers_and_tasks():
    proc = _adaptim("list")
    assert proc.returncode == 0, proc.stderr
    for name in list_optimizers() + list_tasks():
        assert name in proc.stdout


@pytest.mark.parametrize("args, must_say", [
    (["--task", "nope"], ["unknown task 'nope'", *list_tasks()]),
    (["--optimizers", "adam,adamx"], ["Unknown optimizer 'adamx'", *list_optimizers()]),
    (["--steps", "-5"], ["--steps must be a positive integer, got -5"]),
    (["--lr", "-0.1"], ["--lr must be a positive finite number, got -0.1"]),
])
def test_bad_input_exits_2_with_a_clear_message(args, must_say, tmp_path):
    proc = _adaptim("compare", "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for text in must_say:
        assert text in proc.stderr
    assert not (tmp_path / "r" / "metrics.json").exists()


@pytest.mark.parametrize("args, must_say", [
    (["--task", "surface"], "did you mean 'surfaces'"),
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--steps", "ten"], "--steps must be a positive integer, got 'ten'"),
    (["--lr", "nan"], "--lr must be a positive finite number"),
    (["--lr", "0"], "--lr must be a positive finite number"),
    (["--seeds", "0"], "--seeds must be a positive integer"),
    (["--jobs", "-1"], "--jobs must be a positive integer"),
    (["--device", "cuda:7" if not torch.cuda.is_available() else "nodevice"], "--device"),
])
def test_more_bad_input_in_process(args, must_say, tmp_path, capsys):
    from adaptim.cli import main

    try:
        code = main(["compare", "--out", str(tmp_path / "r"), *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert must_say in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_unwritable_out_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    start = time.perf_counter()
    proc = _adaptim("compare", "--task", "digits-mlp", "--out", str(blocker / "report"))
    assert proc.returncode == 2
    assert "is not writable" in proc.stderr and "Traceback" not in proc.stderr
    assert "[1/" not in proc.stdout  # no run started
    assert time.perf_counter() - start < 30


def test_ctrl_c_keeps_what_finished(tmp_path):
    out = tmp_path / "partial"
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptim", "compare", "--task", "digits-mlp", "--steps", "150",
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    finished = 0
    try:
        for line in proc.stdout:
            if line.startswith("["):
                finished += 1
            if finished == 2:
                break
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True
    # 9 tuned arms × (3 grid points + 5 seeds) + 2 untuned arms × 5 seeds, before extensions
    assert 2 <= metrics["finished_runs"] < 82 <= metrics["planned_runs"]
    assert len(metrics["runs"]) == metrics["finished_runs"]
    assert all(len(r["curves"]["loss"]) == 150 for r in metrics["runs"])
    html = (out / "report.html").read_text()
    assert "Interrupted" in html and f"{metrics['finished_runs']} runs that finished" in html


def test_compare_writes_the_report(tmp_path):
    out = tmp_path / "rep"
    proc = _adaptim("compare", "--task", "online,digits-mlp", "--optimizers", "sgd,adam",
                    "--steps", "10", "--seeds", "2", "--lr", "0.01", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Verdicts" in proc.stderr and "report.html" in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.01 and metrics["config"]["seeds"] == 2
    assert {r["hparams"]["lr"] for r in metrics["runs"]} == {0.01}
    # online: sgd, adam; digits-mlp: sgd, adam, adam without bias correction, adam default
    assert len(metrics["runs"]) == (2 + 4) * 2
    assert all(len(r["curves"]["loss"]) == 10 for r in metrics["runs"])
    assert metrics["command"].startswith("adaptim compare --task online,digits-mlp")


@pytest.mark.parametrize("form", [["sgd,adam"], ["sgd", "adam"], ["sgd,", "adam", "sgd"]])
def test_optimizers_take_commas_and_spaces_in_compare_and_bench(form):
    from adaptim.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["compare", "--optimizers", *form]).optimizers == ["sgd", "adam"]
    assert parser.parse_args(["bench", "--optimizers", *form]).optimizers == ["sgd", "adam"]


def test_bench_modes_have_no_spaces_and_say_what_they_run():
    from adaptim.bench.step import MODE_OPTIONS, MODES, _make_optimizer

    assert all(" " not in m for m in MODES)
    p = torch.nn.Parameter(torch.zeros(3))
    assert "fused" not in MODE_OPTIONS["adaptim"]  # the library's default
    assert _make_optimizer("adam", "adaptim", [p]).defaults["fused"] is None
    assert _make_optimizer("adam", "adaptim-reference", [p]).defaults["fused"] is False
    assert _make_optimizer("adam", "adaptim-fused", [p]).defaults["fused"] is True
    assert _make_optimizer("adam", "torch-foreach", [p]).defaults["foreach"] is True


@pytest.mark.parametrize("args, must_say", [
    (["--params", "0"], "--params must be an integer >= 148, got 0"),
    (["--repeat", "0"], "--repeat must be an integer >= 1, got 0"),
    (["--threads", "x"], "--threads must be an integer >= 1, got 'x'"),
    (["--modes", "adaptim fused"], "invalid choice: 'adaptim fused'"),
    (["--optimizers", "adam,adamx"], "invalid choice: 'adamx'"),
    (["--device", "nodevice"], "--device 'nodevice' is not a torch device"),
    (["--device", "cuda:9" if torch.cuda.is_available() else "cuda"],
     "CUDA device(s)" if torch.cuda.is_available() else "CUDA is not available here"),
])
def test_bench_bad_input_is_a_usage_error(args, must_say, capsys):
    from adaptim.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert must_say in err and "Traceback" not in err


def test_bench_device_error_from_the_command_line_has_no_traceback():
    proc = _adaptim("bench", "--device", "cuda:9")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("adaptim bench: error: argument --device")


def _row(ms_fused=10.0, ms_torch=20.0, probe=50.0, rounds=(50.0, 48.0), median_scale=1.0):
    from adaptim.bench.step import bytes_per_param

    floor = 1e3 * bytes_per_param(1) * 1e6 / (probe * 1e9)
    return {"ms": {"torch-fused": ms_torch, "adaptim-fused": ms_fused},
            "ms_median": {"torch-fused": ms_torch * median_scale,
                          "adaptim-fused": ms_fused * median_scale},
            "torch_fastest_ms": ms_torch, "probe_GBps": probe, "probe_GBps_rounds": list(rounds),
            "floor_ms": floor, "floor_ms_run_best": floor, "bytes_per_param": 20}


def test_bench_doubts_a_slow_or_unstable_probe_and_unstable_steps():
    from adaptim.bench.step import _cells, row_doubts

    steady = _row(ms_fused=0.5)
    assert row_doubts(steady, 55.0, "cpu") == {"probe": [], "steps": []}
    steady["doubts"] = row_doubts(steady, 55.0, "cpu")
    assert _cells(steady, "-")["speedup"] == "40.00x"
    # a probe at 2 GB/s under load: its floor ratios are not printed as fact
    slow = _row(probe=2.0, rounds=(2.0, 1.9))
    doubts = row_doubts(slow, 60.0, "cpu")
    assert any("implausibly slow" in d for d in doubts["probe"])
    assert any("under 50% of the run's best" in d for d in doubts["probe"])
    slow["doubts"] = doubts
    assert _cells(slow, "-")["floor/fused"] == "?"
    unstable = _row(rounds=(50.0, 20.0))
    assert any("unstable" in d for d in row_doubts(unstable, 50.0, "cpu")["probe"])
    # steps whose median is far above their best: the speedup is shown as "?"
    noisy = _row(median_scale=3.0)
    noisy["doubts"] = row_doubts(noisy, 50.0, "cpu")
    assert noisy["doubts"]["steps"] and _cells(noisy, "-")["speedup"] == "?"


# runs the command line with the rich package unimportable
_NO_RICH = ("import sys; sys.modules['rich'] = None\n"
            "from adaptim.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")


def test_missing_rich_gives_one_line_saying_what_to_install():
    import adaptim

    proc = subprocess.run([sys.executable, "-c", _NO_RICH, "list"], capture_output=True,
                          text=True, timeout=60, env=ENV)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "pip install 'adaptim[cli]'" in proc.stderr
    version = subprocess.run([sys.executable, "-c", _NO_RICH, "--version"],
                             capture_output=True, text=True, timeout=60, env=ENV)
    assert version.returncode == 0
    assert version.stdout.strip() == f"adaptim {adaptim.__version__}"


def test_core_import_needs_no_rich():
    code = "import sys; sys.modules['rich'] = None; import adaptim; print(adaptim.__version__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr


def test_bench_end_to_end_without_rich_prints_markdown(tmp_path, capsys):
    proc = subprocess.run([sys.executable, "-c", _NO_RICH, "bench", "--params", "20000",
                           "--small", "20", "100", "--optimizers", "sgd", "adam", "--modes",
                           "torch-for-loop,adaptim", "adaptim-fused", "--repeat", "2",
                           "--no-overhead", "--json", str(tmp_path / "b.json")],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "| torch loop | adaptim default | **adaptim fused** |" in proc.stdout
    assert "| sgd |" in proc.stdout and "| adam |" in proc.stdout
    report = json.loads((tmp_path / "b.json").read_text())
    for workload in report["workloads"].values():
        assert set(workload["rows"]) == {"sgd", "adam"}
        for row in workload["rows"].values():
            assert set(row["ms"]) == {"torch-for-loop", "adaptim", "adaptim-fused"}
            assert len(row["probe_GBps_rounds"]) == 2
            assert set(row["doubts"]) == {"probe", "steps"}
    flagged = [r for w in report["workloads"].values() for r in w["rows"].values()
               if r["doubts"]["probe"] or r["doubts"]["steps"]]
    assert ("not measured reliably" in proc.stdout) == bool(flagged)
    # the same report through rich
    from adaptim.bench.step import print_report

    print_report(report)
    out = capsys.readouterr().out
    assert "adaptim-fused" in out and ("warning" in out) == bool(flagged)
