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
