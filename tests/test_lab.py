"""The lab end to end in a tiny configuration: every task of the default tier runs, the report
and metrics hold the numbers they should, each arm is tuned on its own on the tuning seed and
its grid grows past an edge winner, reruns are identical."""

from __future__ import annotations

import csv
import json
import math
from html import escape as html_escape

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from adaptim.lab.report import write_report
from adaptim.lab.runner import TUNE_SEED, SuiteConfig, plan_runs, run_suite
from adaptim.lab.summary import final_loss, selection_score, smoothed, steps_to_target
from adaptim.lab.sweep import MAX_EXTENSIONS
from adaptim.lab.tasks import TASKS
from adaptim.lab.tasks.deep import DEPTH
from adaptim.registry import list_optimizers

STEPS = 6
SEEDS = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Every default-tier task and arm, 6 steps, 2 seeds, no sweep (fast grid)."""
    config = SuiteConfig(steps=STEPS, seeds=SEEDS, fast=True)
    result = run_suite(config)
    out = tmp_path_factory.mktemp("report")
    write_report(result, out, command="adaptim compare --steps 6 --seeds 2 --fast")
    metrics = json.loads((out / "metrics.json").read_text())
    return result, out, metrics


def test_every_task_and_optimizer_ran(tiny):
    result, _, metrics = tiny
    assert not result.interrupted
    assert metrics["finished_runs"] == metrics["planned_runs"] == len(result.records)
    default = [t for t in TASKS.values() if t.tier == "default"]
    expected = sum(len(t.all_arms()) * SEEDS for t in default)
    assert len(result.records) == expected
    assert {r["task"] for r in metrics["runs"]} == {t.name for t in default}
    assert {r["optimizer"] for r in metrics["runs"]} == set(list_optimizers())
    for run in metrics["runs"]:
        assert run["steps"] == STEPS
        assert len(run["curves"]["loss"]) == STEPS
        assert run["final"] and not run["sweep"]
        first = run["curves"]["loss"][0]
        assert first is not None and first > 0 or run["task"] == "surfaces"


def test_metrics_numbers_match_the_curves(tiny):
    _, _, metrics = tiny
    for run in metrics["runs"]:
        loss = [math.nan if v is None else v for v in run["curves"]["loss"]]
        fl = final_loss(loss)
        if run["final_loss"] is None:
            assert run["diverged"] or math.isnan(fl)
        else:
            assert run["final_loss"] == pytest.approx(fl, rel=1e-6, abs=1e-9)
        assert run["steps_to_target"] == steps_to_target(loss, run["target_loss"])


def test_optimizer_state_memory_is_measured(tiny):
    _, _, metrics = tiny
    per_opt = {}
    for run in metrics["runs"]:
        if run["task"] == "digits-mlp":
            per_opt[run["optimizer"]] = run
    # 64-64-10 MLP: 4 tensors, 4810 float32 parameters. State = per-parameter buffers plus a
    # 4-byte step counter per tensor where the optimizer keeps one (SGD does not).
    n = 64 * 64 + 64 + 64 * 10 + 10
    assert per_opt["sgd"]["n_params"] == n
    assert per_opt["sgd"]["state_bytes"] == 0
    assert per_opt["momentum"]["state_bytes"] == 4 * n
    assert per_opt["adagrad"]["state_bytes"] == 4 * n + 4 * 4
    assert per_opt["rmsprop"]["state_bytes"] == 4 * n + 4 * 4
    assert per_opt["adam"]["state_bytes"] == 8 * n + 4 * 4
    assert per_opt["adadelta"]["state_bytes"] == 8 * n + 4 * 4
    summaries = {(s["task"], s["optimizer"]): s for s in metrics["summaries"]}
    assert summaries[("digits-mlp", "adam")]["state_bytes_per_param"] == pytest.approx(8 + 16 / n)


def test_summaries_have_mean_and_spread_over_seeds(tiny):
    result, _, metrics = tiny
    for s in metrics["summaries"]:
        assert s["seeds"] == list(range(SEEDS))
        runs = [r for r in metrics["runs"] if (r["task"], r["variant"], r["arm"])
                == (s["task"], s["variant"], s["arm"]) and r["final"]]
        finals = [r["final_loss"] for r in runs if r["final_loss"] is not None]
        if len(finals) == 2:
            assert s["final_loss"]["mean"] == pytest.approx(sum(finals) / 2, rel=1e-6)
            spread = abs(finals[0] - finals[1]) / math.sqrt(2)
            assert s["final_loss"]["std"] == pytest.approx(spread, rel=1e-3, abs=1e-9)
            assert s["final_loss"]["min"] == pytest.approx(min(finals), rel=1e-6)


def test_task_specific_measurements(tiny):
    _, _, metrics = tiny
    runs = metrics["runs"]
    surf = [r for r in runs if r["task"] == "surfaces"]
    assert all(len(r["curves"]["x"]) == STEPS == len(r["curves"]["y"]) for r in surf)
    seed0 = next(r for r in surf if r["variant"] == "rosenbrock" and r["seed"] == 0)
    assert (seed0["scalars"]["start_x"], seed0["scalars"]["start_y"]) == (-1.2, 1.0)
    deep = [r for r in runs if r["task"] == "deep"]
    for r in deep:
        layers = [k for k in r["sparse"] if k.startswith("grad_norm/layer")]
        assert len(layers) == DEPTH + 1
    sig = next(r for r in deep if r["variant"] == "sigmoid" and r["seed"] == 0)
    relu = next(r for r in deep if r["variant"] == "relu+he" and r["seed"] == 0)
    # The textbook picture: through 10 sigmoid layers the first layer's gradient is tiny.
    assert sig["scalars"]["first_to_last_grad_ratio"] < 1e-3
    assert relu["scalars"]["first_to_last_grad_ratio"] > 0.1
    exploding = [r for r in runs if r["task"] == "exploding"]
    for r in exploding:
        assert len(r["curves"]["grad_norm"]) == STEPS
    online = [r for r in runs if r["task"] == "online"]
    assert all(len(r["sparse"]["effective_lr"]["values"]) >= 2 for r in online)
    sgd = next(r for r in online if r["optimizer"] == "sgd")
    assert sgd["sparse"]["effective_lr"]["values"][0] == pytest.approx(sgd["hparams"]["lr"])
    wd = [r for r in runs if r["task"] == "weight-decay"]
    assert {r["optimizer"] for r in wd} == {"adam", "adamw"}
    assert all("weight_decay" in r["hparams"] for r in wd)
    for r in runs:
        if r["task"] in ("digits-mlp", "digits-cnn", "weight-decay", "deep"):
            assert 0.0 <= r["scalars"]["test_accuracy"] <= 1.0


def test_report_html_and_csv(tiny):
    result, out, metrics = tiny
    html = (out / "report.html").read_text()
    assert html.index("Verdicts on the tutorials' claims") < html.index("id='overview'")
    for name in result.config.tasks:
        assert f"id='task-{name}'" in html
    assert "id='protocol'" in html and "How this was measured" in html
    from adaptim.lab.report import tiers_text

    assert html_escape(tiers_text()) in html and "dqn" in tiers_text()  # read from the tiers
    assert "dqn, 2 seeds" in html  # tasks tuned on several seeds are named
    for fig in ("fig-surfaces-paths", "fig-deep-layers", "fig-exploding-gradnorm",
                "fig-online-efflr", "fig-adding-loss"):
        assert f"id='{fig}'" in html
    assert html.count("data:image/png;base64,") >= 12
    assert "http://" not in html and "https://" not in html  # opens offline
    for v in metrics["verdicts"]:
        assert v["status"] in ("holds", "does not hold", "inconclusive", "needs --extended")
        assert html_escape(v["claim"]) in html and html_escape(v["quote"]) in html
        if v["link"]:
            assert v["link"].startswith("#") and f"id='{v['link'][1:]}'" in html
    with open(out / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(metrics["runs"])
    assert {r["task"] for r in rows} == set(result.config.tasks)
    assert all(r["lr"] for r in rows)
    with open(out / "curves.csv") as fh:
        header = fh.readline().strip()
        first = fh.readline().strip().split(",")
    assert header == "run_id,curve,step,value" and first[1] == "loss" and first[2] == "1"
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"adding-loss.png", "adding-gru-loss.png", "deep-layers.png"} <= plots


def test_every_claim_gets_a_row_and_none_is_untested(tiny):
    from adaptim.lab.claims import CLAIMS

    _, _, metrics = tiny
    assert [v["id"] for v in metrics["verdicts"]] == [c.id for c in CLAIMS]
    for v in metrics["verdicts"]:
        if v["status"] == "needs --extended":
            assert v["effect"] is None
        elif "learning-rate sweeps" in v["reason"]:  # read from sweeps: none with --fast
            assert v["status"] == "inconclusive" and v["effect"] is None
        elif all(TASKS.get(t) is not None and TASKS[t].tier == "default" for t in v["tasks"]):
            assert v["effect"]["n"] >= SEEDS, v["id"]  # every default-tier row was measured


def test_each_arm_is_tuned_on_its_own_seed_and_grid():
    config = SuiteConfig(tasks=["surfaces"], optimizers=["adam", "sgd"], steps=15, seeds=2)
    groups = plan_runs(config)
    assert [len(g.grid) for g in groups] == [3] * 6
    result = run_suite(config)
    assert len(result.records) == result.planned_runs >= 6 * (3 + 2)
    for variant in TASKS["surfaces"].variants:
        for opt in ("adam", "sgd"):
            sweep = [r for r in result.records
                     if r.sweep and r.variant == variant and r.optimizer == opt]
            assert {r.seed for r in sweep} == {TUNE_SEED} and not any(r.final for r in sweep)
            scores = {r.hparams["lr"]: selection_score(r.output) for r in sweep}
            best = min(scores, key=scores.get)
            finals = [r for r in result.records if r.final and r.variant == variant
                      and r.optimizer == opt]
            assert sorted(r.seed for r in finals) == [0, 1]
            assert {r.hparams["lr"] for r in finals} == {best}
            status = result.grids[("surfaces", variant, opt)]["status"]
            lrs = sorted(scores)
            if best in (lrs[0], lrs[-1]):  # an edge winner only where the cap stopped it
                assert status.startswith("edge") and len(lrs) == 3 + MAX_EXTENSIONS
            else:
                assert status == "interior"
            assert len(lrs) == 3 + sum(result.grids[("surfaces", variant, opt)]["extensions"]
                                       .values())


def test_an_arms_centre_is_its_grids_centre_and_lr_scale_moves_the_others():
    # online: AdaGrad's arm is centred at 0.999; RMSProp's has no centre, so its grid is the
    # typical 0.00316 times the task's lr_scale of 10.
    grids = {g.arm.label: [h["lr"] for h in g.grid]
             for g in plan_runs(SuiteConfig(tasks=["online"], optimizers=["adagrad", "rmsprop"]))}
    assert grids == {"adagrad": [0.316, 0.999, 3.16], "rmsprop": [0.00999, 0.0316, 0.0999]}


def test_arms_are_tuned_separately_and_a_follower_uses_its_leaders_rate():
    config = SuiteConfig(tasks=["exploding"], optimizers=["sgd"], steps=5, seeds=2)
    result = run_suite(config)
    swept = {r.arm + "/" + r.variant for r in result.records if r.sweep}
    assert swept == {"sgd/clipped", "sgd/unclipped", "sgd+L2/unclipped"}
    rates = {(r.arm, r.variant): r.hparams["lr"] for r in result.records if r.final}
    assert rates[("sgd lr×10", "unclipped")] == pytest.approx(10 * rates[("sgd", "unclipped")],
                                                               rel=0.01)
    assert all("weight_decay" in r.hparams for r in result.records if r.arm == "sgd+L2")


def test_same_seed_same_numbers_and_other_seed_differs():
    config = SuiteConfig(tasks=["digits-mlp", "adding"], optimizers=["adam", "rmsprop"],
                         steps=8, seeds=1, lr=0.01)
    a = run_suite(config)
    b = run_suite(config)
    # digits-mlp: adam, rmsprop, adam without bias correction, adam at its default rate;
    # adding: adam on four cells, rmsprop on one
    assert len(a.records) == len(b.records) == 4 + 5
    for ra, rb in zip(a.records, b.records):
        assert ra.output.curves["loss"] == rb.output.curves["loss"]
        assert ra.output.scalars.keys() == rb.output.scalars.keys()
        for key, value in ra.output.scalars.items():  # NaN (never matched) equals NaN here
            assert np.array_equal([value], [rb.output.scalars[key]], equal_nan=True), key
    shifted = run_suite(SuiteConfig(tasks=["digits-mlp"], optimizers=["adam"], steps=8, seeds=2,
                                    lr=0.01))
    adam0 = next(r for r in a.records if r.task == "digits-mlp" and r.arm == "adam")
    seeds = {r.seed: r for r in shifted.records if r.arm == "adam"}
    assert seeds[0].output.curves["loss"] == adam0.output.curves["loss"]
    assert seeds[1].output.curves["loss"] != adam0.output.curves["loss"]


def test_summary_helpers():
    assert final_loss([5.0] * 9 + [1.0]) == 1.0
    assert final_loss(list(range(20, 0, -1))) == pytest.approx(1.5)
    assert math.isnan(final_loss([1.0, math.nan]))
    assert smoothed([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    # bias-corrected EMA(0.9): after 5 ones and k zeros it is 0.9^k (1 − 0.9^5) / (1 − 0.9^(5+k)),
    # 0.57 at k = 3 and 0.44 at k = 4
    assert steps_to_target([1.0] * 5 + [0.0] * 50, 0.5) == 5 + 4
    assert steps_to_target([1.0] * 10, 0.5) is None


def test_worker_processes_give_the_same_numbers_as_one_process():
    base = dict(tasks=["surfaces", "exploding"], optimizers=["sgd", "adam"], steps=6, seeds=2)
    serial = run_suite(SuiteConfig(**base, jobs=1))
    parallel = run_suite(SuiteConfig(**base, jobs=2))
    assert len(serial.records) == len(parallel.records) == serial.planned_runs
    for a, b in zip(serial.records, parallel.records):
        assert (a.task, a.variant, a.optimizer, a.seed, a.sweep, a.final, a.hparams) == \
            (b.task, b.variant, b.optimizer, b.seed, b.sweep, b.final, b.hparams)
        # bit-identical, NaN after a divergence included
        assert np.array_equal(a.output.curves["loss"], b.output.curves["loss"], equal_nan=True)


def test_a_noisy_task_tunes_on_several_seeds_and_jobs_do_not_change_it():
    """DQN sweeps every learning rate on two tuning seeds (neither an evaluation seed) and
    picks the best mean score; one or two worker processes give the same runs."""
    from adaptim.lab.runner import tuning_seeds

    assert tuning_seeds(TASKS["dqn"]) == [TUNE_SEED, TUNE_SEED + 1]
    assert tuning_seeds(TASKS["surfaces"]) == [TUNE_SEED]
    base = dict(tasks=["dqn"], optimizers=["sgd"], steps=6, seeds=2)
    serial = run_suite(SuiteConfig(**base, jobs=1))
    parallel = run_suite(SuiteConfig(**base, jobs=2))
    assert len(serial.records) == len(parallel.records) == serial.planned_runs
    for a, b in zip(serial.records, parallel.records):
        assert (a.seed, a.sweep, a.hparams) == (b.seed, b.sweep, b.hparams)
        assert a.output.curves["loss"] == b.output.curves["loss"]
        assert a.output.scalars == b.output.scalars
    sweep = [r for r in serial.records if r.sweep]
    by_lr: dict[float, dict[int, float]] = {}
    for r in sweep:
        by_lr.setdefault(r.hparams["lr"], {})[r.seed] = selection_score(r.output)
    assert all(set(seeds) == {TUNE_SEED, TUNE_SEED + 1} for seeds in by_lr.values())
    assert len(sweep) == 2 * len(by_lr) >= 6
    mean = {lr: (s[TUNE_SEED] + s[TUNE_SEED + 1]) / 2 for lr, s in by_lr.items()}
    finals = [r for r in serial.records if r.final]
    assert sorted(r.seed for r in finals) == [0, 1]
    assert {r.hparams["lr"] for r in finals} == {min(mean, key=mean.get)}
    assert serial.grids[("dqn", "cartpole", "sgd")]["points"] == len(by_lr)
