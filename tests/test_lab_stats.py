"""The lab's decision rules on synthetic numbers: each rule must hold, must not hold and must be
inconclusive on cases built for it (the rules can fail)."""

from __future__ import annotations

import math

import pytest
import torch

from adaptim.lab.stats import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    decay_ratio,
    decay_rule,
    decide,
    oriented_differences,
    paired_effect,
    seeds_needed,
)
from adaptim.lab.sweep import extension, grid_status, lr_window_share


# ------------------------------------------------------------------ paired differences
def test_differences_are_oriented_towards_the_claim():
    # lower is better: A's loss 1 vs B's 3 favours A by +2
    assert oriented_differences([1.0], [3.0], higher_is_better=False) == [2.0]
    assert oriented_differences([0.9], [0.8], higher_is_better=True) == [pytest.approx(0.1)]
    assert oriented_differences([0.01], [1.0], higher_is_better=False,
                                transform="log10") == [pytest.approx(2.0)]
    assert oriented_differences([1, 5, 3], [2, 2, 3], higher_is_better=False,
                                transform="sign") == [0.5, -0.5, 0.0]
    assert oriented_differences([-1.0, -2.0], None, higher_is_better=False) == [1.0, 2.0]


def test_a_diverged_run_takes_the_worst_value_and_is_not_dropped():
    # A diverged on seed 1: it ties with the worst finite value (B's 5.0), so A loses that pair.
    d = oriented_differences([1.0, math.nan, 1.0], [2.0, 5.0, 2.0], higher_is_better=False)
    assert d == [1.0, 0.0, 1.0]
    d = oriented_differences([1.0, None], [2.0, 2.0], higher_is_better=False, worst=100.0)
    assert d == [1.0, -98.0]
    # both diverged everywhere: no winner
    assert oriented_differences([math.inf], [math.nan], higher_is_better=False) == [0.0]
    with pytest.raises(ValueError, match="equal lengths"):
        oriented_differences([1.0], [1.0, 2.0], higher_is_better=True)


def test_t_interval_matches_the_textbook_formula():
    diffs = [1.0, 2.0, 3.0, 4.0, 5.0]
    e = paired_effect(diffs)
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) · s / √n
    assert e.mean == 3.0 and e.lo == pytest.approx(3 - half) and e.hi == pytest.approx(3 + half)
    assert (e.n, e.wins, e.losses) == (5, 5, 0)
    one = paired_effect([2.0])
    assert one.lo == -math.inf and one.hi == math.inf
    exact = paired_effect([4.0, 4.0], deterministic=True)
    assert (exact.lo, exact.hi) == (4.0, 4.0)


# ------------------------------------------------------------------ verdict rule
@pytest.mark.parametrize("diffs, expected", [
    ([0.9, 1.1, 1.0, 1.2, 0.8], HOLDS),            # clear effect above the minimum 0.5
    ([-0.9, -1.1, -1.0, -1.2, -0.8], NOT_HOLD),    # clear effect the other way
    ([0.01, -0.02, 0.0, 0.02, -0.01], NOT_HOLD),   # equivalence: inside ±0.5
    ([2.0, -1.5, 1.8, -1.0, 0.3], INCONCLUSIVE),   # too noisy to tell
    ([0.2, 0.25, 0.3, 0.22, 0.28], INCONCLUSIVE),  # real but below the minimum, not inside ±δ
])
def test_superiority_rule(diffs, expected):
    status, reason = decide(paired_effect(diffs), min_effect=0.5, delta=0.25)
    assert status == expected, reason


@pytest.mark.parametrize("diffs, expected", [
    ([0.01, -0.02, 0.0, 0.02, -0.01], HOLDS),      # inside ±0.1
    ([0.5, 0.6, 0.55, 0.45, 0.5], NOT_HOLD),       # clearly different, beyond the margin
    ([0.3, -0.25, 0.2, -0.3, 0.1], INCONCLUSIVE),  # neither
])
def test_equivalence_rule(diffs, expected):
    status, reason = decide(paired_effect(diffs), min_effect=0.1, kind="equivalent")
    assert status == expected, reason


def test_rule_refuses_bad_settings():
    with pytest.raises(ValueError, match="min_effect"):
        decide(paired_effect([1.0, 2.0]), min_effect=0)
    with pytest.raises(ValueError, match="kind"):
        decide(paired_effect([1.0, 2.0]), min_effect=1, kind="better")
    assert decide(paired_effect([]), min_effect=1)[0] == INCONCLUSIVE


def test_seeds_needed_grows_with_noise():
    noisy = paired_effect([2.0, -1.5, 1.8, -1.0, 0.3])
    calm = paired_effect([0.4, 0.1, 0.5, 0.2, 0.3])
    assert seeds_needed(noisy, min_effect=0.5) > seeds_needed(calm, min_effect=0.5) >= 6


# ------------------------------------------------------------------ grid extension
def _trials(scores, lrs=(0.01, 0.0316, 0.1)):
    return [({"lr": lr}, s) for lr, s in zip(lrs, scores)]


def test_winner_on_the_top_edge_extends_the_grid_upwards():
    added = {}
    assert extension(_trials([3.0, 2.0, 1.0]), added=added) == [{"lr": 0.316}]
    assert added == {("lr", 1): 1}
    assert extension(_trials([1.0, 2.0, 3.0]), added={}) == [{"lr": 0.00316}]


def test_interior_winner_or_diverged_neighbour_stops():
    assert extension(_trials([2.0, 1.0, 3.0]), added={}) == []
    assert grid_status(_trials([2.0, 1.0, 3.0]), added={}) == "interior"
    # the point above the winner diverged: the winner is interior
    t = _trials([3.0, 1.0, math.inf])
    assert extension(t, added={}) == [] and grid_status(t, added={}) == "interior"


def test_extension_is_capped_and_the_status_says_so():
    added = {("lr", 1): 3}
    t = _trials([3.0, 2.0, 1.0])
    assert extension(t, added=added, cap=3) == []
    assert grid_status(t, added=added, cap=3) == "edge of lr (cap of 3 extensions reached)"
    assert grid_status(_trials([math.inf] * 3), added={}) == "all diverged"


def test_a_grid_that_diverged_everywhere_goes_down_a_decade_at_a_time():
    added = {}
    assert extension(_trials([math.inf] * 3), added=added, cap=2) == [{"lr": 0.001}]
    assert extension(_trials([math.inf] * 4, lrs=(0.001, 0.01, 0.0316, 0.1)), added=added,
                     cap=2) == [{"lr": 0.0001}]
    assert extension(_trials([math.inf] * 3), added=added, cap=2) == []


def test_two_axis_grid_extends_only_the_edge_axis():
    trials = [({"lr": lr, "weight_decay": wd}, (lr - 0.0316) ** 2 + (wd - 1e-2) ** 2)
              for lr in (0.01, 0.0316, 0.1) for wd in (1e-4, 1e-3, 1e-2)]
    assert extension(trials, added={}) == [{"lr": 0.0316, "weight_decay": 0.0316}]


def test_winner_added_by_an_lr_extension_gets_its_neighbours_on_the_other_axis():
    # the 3 x 3 grid's winner was on the low-lr edge; two extensions added lr = 0.00316 and
    # 0.001 at the winning weight decay only, and 0.00316 wins: interior in lr, but with no
    # weight-decay neighbour yet
    def grid(wd_of_new=1e-4):
        trials = [({"lr": lr, "weight_decay": wd}, 10.0 + lr)
                  for lr in (0.01, 0.0316, 0.1) for wd in (1e-4, 1e-3, 1e-2)]
        return trials + [({"lr": 0.00316, "weight_decay": wd_of_new}, 1.0),
                         ({"lr": 0.001, "weight_decay": wd_of_new}, 5.0)]
    added = {("lr", -1): 2}
    assert grid_status(grid(), added=added) == "no neighbour on weight_decay"
    # (1e-4 is also the lowest weight decay: that side extends as an edge does)
    assert extension(grid(), added=dict(added)) == [{"lr": 0.00316, "weight_decay": 0.001},
                                                    {"lr": 0.00316, "weight_decay": 3.16e-05}]
    # a winner in the middle of the weight-decay values gets both sides
    assert extension(grid(1e-3), added=dict(added)) == [{"lr": 0.00316, "weight_decay": 1e-2},
                                                        {"lr": 0.00316, "weight_decay": 1e-4}]
    # and a winner that another axis's extension moved off the edge of this axis's values:
    # the grid's own next value, however many extensions that axis has had
    capped = {("lr", -1): 2, ("weight_decay", 1): 6, ("weight_decay", -1): 6}
    assert extension(grid(1e-3), added=capped) == [{"lr": 0.00316, "weight_decay": 1e-2},
                                                   {"lr": 0.00316, "weight_decay": 1e-4}]
    # with that neighbour evaluated and worse, the weight-decay edge extends as usual
    trials = grid() + [({"lr": 0.00316, "weight_decay": 1e-3}, 2.0)]
    assert extension(trials, added=dict(added)) == [{"lr": 0.00316, "weight_decay": 3.16e-05}]
    assert grid_status(trials + [({"lr": 0.00316, "weight_decay": 3.16e-05}, 3.0)],
                       added=added) == "interior"


def test_lr_window_share():
    trials = [({"lr": 10 ** (k / 2)}, k in (-1, 0, 1)) for k in range(-4, 5)]
    assert lr_window_share(trials, 1.0) == pytest.approx(3 / 5)
    assert math.isnan(lr_window_share([], 1.0))


# ------------------------------------------------------------------ AdaGrad decay rule
def _efflr_series(name, grads, **hp):
    """Feed a synthetic gradient stream to a real optimizer and probe its effective lr."""
    from adaptim.lab.probes import effective_lr
    from adaptim.registry import create

    p = torch.zeros(len(grads[0]), requires_grad=True)
    opt = create(name, [p], **hp)
    steps, values = [], []
    for t, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        if t % 10 == 0:
            steps.append(t)
            values.append(effective_lr(opt))
    return steps, values


def _stream(kind, n=1500, dim=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(n):
        g = torch.randn(dim, generator=gen)
        if kind == "shrinking":      # a converging model: the gradient falls 100× over the run
            g = g * 10 ** (-2 * t / n)
        out.append(g)
    return out


def test_decay_rule_passes_on_a_stationary_stream():
    # Stationary gradients: AdaGrad's √(sum g²) grows like √t, so its step falls by >3×
    # between the first and last fifth; RMSProp's average settles (after its warm-up).
    ada = decay_ratio(*_efflr_series("adagrad", _stream("stationary"), lr=0.1), start=20)
    rms = decay_ratio(*_efflr_series("rmsprop", _stream("stationary"), lr=0.01), start=20)
    assert decay_rule(ada) == "decays", ada
    assert decay_rule(rms) == "controlled", rms


def test_decay_rule_fails_where_it_must():
    # Shrinking gradients: RMSProp's step grows as 1/|g|, so it is not "controlled"; AdaGrad's
    # sum stops growing once the gradients are tiny, but its early fall already counts.
    rms = decay_ratio(*_efflr_series("rmsprop", _stream("shrinking"), lr=0.01), start=20)
    assert decay_rule(rms) == "grows", rms
    # Plain SGD never decays.
    sgd = decay_ratio(*_efflr_series("sgd", _stream("stationary"), lr=0.1), start=20)
    assert decay_rule(sgd) == "controlled" and sgd == pytest.approx(1.0)
    assert decay_rule(math.nan) == "undefined"
    assert math.isnan(decay_ratio([0, 1, 2], [1.0, 1.0, 1.0], start=0))  # too few probes
