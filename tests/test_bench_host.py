"""adaptim bench --host (adaptim.bench.host): host µs per step() on CPU, at a size that runs in a
second. No timing is asserted: the table's shape, positive numbers, plans used where planned."""

from __future__ import annotations

from adaptim import _fused
from adaptim.bench import host, step


def test_host_table_has_every_mode_and_count():
    hits, builds = _fused._debug.plan_hits, _fused._debug.plan_builds
    report = host.host_step_us(counts=(1, 3), size=10, steps=3, log=lambda _: None)
    assert report["counts"] == [1, 3] and list(report["rows"]) == list(host.HOST_MODES)
    for mode, row in report["rows"].items():
        assert list(row) == [1, 3]
        assert all(isinstance(v, float) and v > 0 for v in row.values()), (mode, row)
    # the planned adaptim modes ran their plans: 3 modes x 2 counts x 3 timed steps (at least;
    # the warm-up's second step hits too), built once each
    assert _fused._debug.plan_hits - hits >= 3 * 2 * 3
    assert _fused.planning  # switched back on after each unplanned step
    text = host.host_markdown(report)
    lines = text.strip().splitlines()
    assert len(lines) == 4 + len(host.HOST_MODES)
    assert lines[2] == "| mode | N = 1 | N = 3 |"
    assert "| adaptim foreach=True, no plan | " in text and "| torch fused | " in text
    assert _fused._debug.plan_builds - builds >= 3 * 2


def test_unplanned_steps_build_no_plan():
    import torch

    import adaptim

    params = [torch.zeros(4, requires_grad=True) for _ in range(3)]
    for p in params:
        p.grad = torch.ones(4)
    opt = adaptim.Adam(params, foreach=True)
    unplanned = host._unplanned(opt)
    builds, hits = _fused._debug.plan_builds, _fused._debug.plan_hits
    for _ in range(3):
        unplanned()
    assert (_fused._debug.plan_builds, _fused._debug.plan_hits) == (builds, hits)
    assert not opt.__dict__.get("_adaptim_plans") and _fused.planning
    assert float(opt.state[params[0]]["step"]) == 3


def test_bench_cli_runs_the_host_table(tmp_path, capsys):
    out = tmp_path / "host.md"
    assert step.main(["--host", "--device", "cpu", "--counts", "2", "--markdown", str(out)]) == 0
    assert "| adaptim default | " in capsys.readouterr().out
    assert "N = 2" in out.read_text()
