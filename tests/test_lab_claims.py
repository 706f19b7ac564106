"""The judge on hand-made per-arm summaries: a claim row holds, does not hold or is
inconclusive by the paired numbers; rows whose tasks did not run say what would run them; the
claims table quotes the tutorials."""

from __future__ import annotations

import math

import pytest

from adaptim.lab.claims import (
    CLAIMS,
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    NOT_RUN,
    TUTORIALS,
    evaluate_claims,
    judge,
)
from adaptim.lab.summary import GroupSummary


def _summary(task, variant, arm, values: dict, *, optimizer=None, hparams=None, state=8.0,
             steps=100, sweep=(), reached=()):
    seeds = list(range(len(next(iter(values.values())))))
    return GroupSummary(task=task, variant=variant, optimizer=optimizer or arm.split()[0],
                        hparams=hparams or {"lr": 0.01}, seeds=seeds,
                        final_loss=dict(mean=1.0, std=0.0, min=1.0, max=1.0, n=len(seeds)),
                        steps_to_target=values.get("steps_to_target", [None] * len(seeds)),
                        seconds_to_target=[None] * len(seeds), target=0.1,
                        state_bytes_per_param=state, diverged=0, arm=arm, steps=steps,
                        values=values, sweep=list(sweep), sweep_reached=list(reached))


def _verdict(summaries, claim_id, **kw):
    return next(v for v in evaluate_claims(summaries, **kw) if v.claim.id == claim_id)


ADAMW = [0.92, 0.93, 0.91, 0.94, 0.92, 0.93, 0.92, 0.93]


@pytest.mark.parametrize("adam_acc, expected", [
    ([a - 0.03 for a in ADAMW], HOLDS),                  # AdamW 3 points better on every seed
    ([a + 0.03 for a in ADAMW], NOT_HOLD),               # Adam+L2 better
    ([a + d for a, d in zip(ADAMW, (0.001, -0.002, 0.0, 0.001, -0.001, 0.002, 0.0, -0.001))],
     NOT_HOLD),                                          # equivalent within ±1 point
    ([a + d for a, d in zip(ADAMW, (0.04, -0.05, 0.03, -0.04, 0.05, -0.02, 0.01, -0.03))],
     INCONCLUSIVE),                                      # noisy
])
def test_adamw_row(adam_acc, expected):
    s = [_summary("weight-decay", "small-train", "adamw", {"test_accuracy": ADAMW}),
         _summary("weight-decay", "small-train", "adam", {"test_accuracy": adam_acc})]
    v = _verdict(s, "adamw-generalizes")
    assert v.status == expected, v.reason
    assert v.effect.n == 8
    assert v.link == "#fig-weight-decay-loss"
    if expected == INCONCLUSIVE:
        assert "paired seeds" in v.decide_hint


def test_diverged_seeds_count_against_the_arm_that_diverged():
    # Unclipped diverged on 4 of 5 seeds (NaN test loss): it takes the worst value and loses.
    clipped = [0.05, 0.06, 0.05, 0.07, 0.05]
    s = [_summary("exploding", "clipped", "sgd", {"test_loss": clipped}),
         _summary("exploding", "unclipped", "sgd",
                  {"test_loss": [0.16, math.nan, math.nan, math.nan, math.nan]})]
    v = _verdict(s, "clipping-remedy")
    assert v.status == HOLDS and v.effect.wins == 5


def test_one_sample_and_equivalence_rows():
    decays = [math.log10(r) for r in (0.1, 0.12, 0.09, 0.11, 0.1)]
    flat = [math.log10(r) for r in (1.1, 0.9, 1.2, 1.0, 0.95)]
    s = [_summary("online", "switch", "adagrad", {"efflr_log10_ratio": decays}),
         _summary("online", "switch", "rmsprop", {"efflr_log10_ratio": flat})]
    assert _verdict(s, "adagrad-decays").status == HOLDS
    assert _verdict(s, "rmsprop-controlled").status == HOLDS
    swapped = [_summary("online", "switch", "adagrad", {"efflr_log10_ratio": flat}),
               _summary("online", "switch", "rmsprop", {"efflr_log10_ratio": decays})]
    assert _verdict(swapped, "adagrad-decays").status == NOT_HOLD
    assert _verdict(swapped, "rmsprop-controlled").status == NOT_HOLD


def test_memory_rows_are_exact_measurements():
    s = [_summary("digits-mlp", "mlp", "adam", {"final_loss": [1.0] * 5}, state=8.0),
         _summary("digits-mlp", "mlp", "momentum", {"final_loss": [1.0] * 5}, state=4.0),
         _summary("digits-mlp", "mlp", "adagrad", {"final_loss": [1.0] * 5}, state=4.0)]
    adam = _verdict(s, "adam-memory")
    assert adam.status == HOLDS and adam.effect.mean == 4.0
    assert _verdict(s, "adagrad-memory").status == NOT_HOLD  # same bytes as momentum


def test_pooled_win_rate_counts_unreached_targets_as_worst():
    s = []
    for task, variant in (("quadratic", "kappa100"), ("digits-mlp", "mlp")):
        s.append(_summary(task, variant, "adam", {"steps_to_target": [10, 12, 11, 10, 9]}))
        s.append(_summary(task, variant, "sgd", {"steps_to_target": [None] * 5}))
    v = _verdict(s, "adam-fast")
    assert v.status == HOLDS and v.effect.n == 10 and v.effect.mean == 0.5


def test_rows_whose_tasks_did_not_run_say_what_would_run_them():
    verdicts = {v.claim.id: v for v in evaluate_claims([])}
    assert NOT_RUN not in {v.status for v in verdicts.values()}  # every task is default-tier
    assert verdicts["use-dqn-adam"].status == INCONCLUSIVE  # default tier, task not run
    assert verdicts["use-cnn"].status == INCONCLUSIVE
    assert verdicts["adamw-generalizes"].status == INCONCLUSIVE
    assert "task not run: weight-decay" in verdicts["adamw-generalizes"].reason
    # a row whose task sits in the extended tier says so on a default run, not on --extended
    claim = next(c for c in CLAIMS if c.id == "use-dqn-adam")
    tiers = {"dqn": "extended"}
    v = judge(claim, {}, ran_tasks=set(), extended=False, task_tiers=tiers)
    assert v.status == NOT_RUN and "extended tier: dqn" in v.reason
    v = judge(claim, {}, ran_tasks=set(), extended=True, task_tiers=tiers)
    assert v.status == INCONCLUSIVE and "task not run: dqn" in v.reason


def test_claims_table_quotes_the_tutorials():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    for c in CLAIMS:
        assert c.tutorial in TUTORIALS and c.quote and c.english and c.statement
        assert c.min_effect > 0 and c.kind in ("superior", "equivalent")
        for a, b in c.pairs:
            assert a is not None
    # each tutorial is quoted, Hindi ones in Devanagari
    assert {c.tutorial for c in CLAIMS} == set(TUTORIALS)
    hindi = [c for c in CLAIMS if "Hindi" in c.tutorial]
    assert sum(any("\u0900" <= ch <= "\u097f" for ch in c.quote) for c in hindi) >= 15


def test_vanishing_row_shows_step_sizes_and_eps_share_beside_its_metric():
    s = [_summary("deep", "sigmoid", "rmsprop", {"update_ratio_log10": [0.1, 0.2, 0.1, 0.0, 0.2],
                                                 "first_layer_eps_share": [0.5] * 5}),
         _summary("deep", "sigmoid", "sgd", {"update_ratio_log10": [-1.5, -1.4, -1.6, -1.5, -1.4],
                                             "first_layer_eps_share": [0.0] * 5})]
    v = _verdict(s, "rmsprop-vanishing")
    assert v.status == HOLDS
    assert "first_layer_eps_share: rmsprop 0.5 vs sgd 0" in v.evidence
