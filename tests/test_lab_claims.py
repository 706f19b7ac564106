"""The verdict logic on hand-made summaries: each claim can come out holds, does not hold, mixed
or untested, decided by the numbers."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("matplotlib")

from adaptim.lab.claims import (HOLDS, MIXED, NOT_HOLD, NOT_RUN, NOT_TESTABLE,  # noqa: E402
                                evaluate_claims)
from adaptim.lab.summary import GroupSummary  # noqa: E402


def _stats(mean, std=0.0, n=3):
    if mean is None:
        return dict(mean=math.nan, std=math.nan, min=math.nan, max=math.nan, n=0)
    return dict(mean=mean, std=std, min=mean - std, max=mean + std, n=n)


def _summary(task, variant, opt, *, loss=0.1, loss_std=0.01, steps=(10, 10, 10), diverged=0,
             state=8.0, **scalars):
    return GroupSummary(task=task, variant=variant, optimizer=opt, hparams={"lr": 0.01},
                        seeds=[0, 1, 2], final_loss=_stats(loss, loss_std),
                        steps_to_target=list(steps), seconds_to_target=[0.1] * 3, target=0.2,
                        state_bytes_per_param=state, diverged=diverged,
                        scalars={k: _stats(*v) if isinstance(v, tuple) else _stats(v)
                                 for k, v in scalars.items()})


def _verdict(summaries, start):
    return next(v for v in evaluate_claims(summaries, []) if v.claim.startswith(start))


@pytest.mark.parametrize("adamw_acc, adam_acc, expected", [
    (0.95, 0.90, HOLDS), (0.90, 0.95, NOT_HOLD), (0.905, 0.90, MIXED)])
def test_adamw_vs_adam_l2(adamw_acc, adam_acc, expected):
    s = [_summary("weight-decay", "small-train", "adamw", test_accuracy=(adamw_acc, 0.005)),
         _summary("weight-decay", "small-train", "adam", test_accuracy=(adam_acc, 0.005))]
    v = _verdict(s, "AdamW generalizes")
    assert v.status == expected
    assert f"{adamw_acc:.3g}" in v.evidence[0] and f"{adam_acc:.3g}" in v.evidence[0]
    assert v.link == "#fig-weight-decay-loss"


def test_untested_claims_say_so():
    verdicts = evaluate_claims([], [])
    by_status = {v.claim: v.status for v in verdicts}
    assert all(s in (NOT_RUN, NOT_TESTABLE) for s in by_status.values())
    assert by_status["Typical uses — speech, deep reinforcement learning (DQN), Transformers, GANs."] \
        == NOT_TESTABLE
    assert _verdict([], "AdamW generalizes").evidence == ["needs --task weight-decay"]


def test_clipping_holds_only_when_unclipped_exploded():
    exploded = [_summary("exploding", "clipped", "sgd", loss=0.15, max_grad_norm=(10.0, 1.0)),
                _summary("exploding", "unclipped", "sgd", loss=0.2, diverged=2,
                         max_grad_norm=(1e5, 1.0))]
    assert _verdict(exploded, "Gradient clipping").status == HOLDS
    calm = [_summary("exploding", "clipped", "adam", max_grad_norm=(10.0, 1.0)),
            _summary("exploding", "unclipped", "adam", max_grad_norm=(12.0, 1.0))]
    v = _verdict(calm, "Gradient clipping")
    assert v.status == MIXED and "did not explode" in v.evidence[0]
    worse = [_summary("exploding", "clipped", "sgd", diverged=1, max_grad_norm=(10.0, 1.0)),
             _summary("exploding", "unclipped", "sgd", diverged=2, max_grad_norm=(1e5, 1.0))]
    assert _verdict(worse, "Gradient clipping").status == NOT_HOLD


def test_momentum_vs_gradient_descent_by_steps_to_target():
    fast_momentum = []
    for variant in ("a", "b", "c"):
        fast_momentum += [_summary("t", variant, "momentum", steps=(10, 12, 11)),
                          _summary("t", variant, "sgd", steps=(40, 50, 45)),
                          _summary("t", variant, "adam", steps=(20, 20, 20)),
                          _summary("t", variant, "rmsprop", steps=(30, 30, 30))]
    v = _verdict(fast_momentum, "Momentum is faster")
    assert v.status == HOLDS, v.evidence
    slow_momentum = []
    for variant in ("a", "b"):
        slow_momentum += [_summary("t", variant, "momentum", steps=(None, None, None), loss=1.0),
                          _summary("t", variant, "sgd", steps=(5, 5, 5)),
                          _summary("t", variant, "adam", steps=(20, 20, 20)),
                          _summary("t", variant, "rmsprop", steps=(30, 30, 30))]
    assert _verdict(slow_momentum, "Momentum is faster").status == NOT_HOLD


def test_adam_memory_and_speed():
    groups = []
    for variant in ("a", "b"):
        groups += [_summary("t", variant, "adam", steps=(5, 5, 5), state=8.0, loss_std=0.001),
                   _summary("t", variant, "sgd", steps=(9, 9, 9), state=0.0),
                   _summary("t", variant, "rmsprop", steps=(7, 7, 7), state=4.0)]
    v = _verdict(groups, "Adam converges fastest")
    assert v.status == HOLDS, v.evidence
    assert "adam 8" in v.evidence[2] and "sgd 0" in v.evidence[2]


def test_deep_remedy_needs_gradient_ratio_and_loss():
    s = [_summary("deep", "sigmoid", "sgd", loss=2.3, first_to_last_grad_ratio=1e-8),
         _summary("deep", "relu+he", "sgd", loss=0.3, first_to_last_grad_ratio=0.9),
         _summary("deep", "sigmoid+batchnorm", "sgd", loss=2.3, first_to_last_grad_ratio=1e-9)]
    assert _verdict(s, "ReLU with He").status == HOLDS
    assert _verdict(s, "Batch normalization").status == NOT_HOLD


def test_typical_use_counts_a_tie_with_the_better_half():
    opts = {"nesterov": 0.97, "momentum": 0.96, "adam": 0.955, "rmsprop": 0.90, "sgd": 0.85,
            "adagrad": 0.84}
    cnn = [_summary("digits-cnn", "cnn", o, test_accuracy=(acc, 0.004)) for o, acc in opts.items()]
    v = _verdict(cnn, "Typical use — CNNs")
    # Adam is within the seed spread of the better half's last member, RMSProp is not.
    assert v.status == MIXED
    assert v.evidence[0].endswith("within the better half or its seed spread: adam")
    opts["rmsprop"] = 0.99
    cnn = [_summary("digits-cnn", "cnn", o, test_accuracy=(acc, 0.004)) for o, acc in opts.items()]
    assert _verdict(cnn, "Typical use — CNNs").status == HOLDS
