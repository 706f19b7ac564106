"""The verdict on each claim of docs/mission.md, computed from the runs (never written by hand).

Each check reads the per-(task, variant, optimizer) summaries and returns a :class:`Verdict`:
``holds``, ``does not hold`` or ``mixed`` with the numbers that decided it and the figure to
look at; ``not tested in this run`` when the tasks it needs were not run, and ``not tested by
this suite`` for the parts no task here can test.

Comparisons between two optimizers use a noise band: a difference smaller than the sum of the
two seed standard deviations counts as a tie, not a win.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from adaptim.lab.tasks.recurrent import ADDING_BASELINE

__all__ = ["Verdict", "evaluate_claims", "HOLDS", "NOT_HOLD", "MIXED", "NOT_RUN", "NOT_TESTABLE"]

HOLDS, NOT_HOLD, MIXED = "holds", "does not hold", "mixed"
NOT_RUN, NOT_TESTABLE = "not tested in this run", "not tested by this suite"
ADAPTIVE = ("adagrad", "rmsprop", "adadelta", "adam", "adamw")
# Tasks whose gradients stay large (no exact minimum reached), where a decay of the step size
# is the optimizer's doing; on the 2-D surfaces the gradient itself vanishes at the minimum.
DECAY_TASKS = ("online", "digits-mlp", "digits-cnn", "adding")


@dataclass
class Verdict:
    claim: str
    source: str
    status: str
    evidence: list[str] = field(default_factory=list)
    link: str | None = None       # anchor of the figure that shows it
    tasks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(claim=self.claim, source=self.source, status=self.status,
                    evidence=self.evidence, link=self.link, tasks=self.tasks)


class _Index:
    def __init__(self, summaries, records):
        self.by_key = {(s.task, s.variant, s.optimizer): s for s in summaries}
        self.records = records

    def get(self, task, variant, opt):
        return self.by_key.get((task, variant, opt))

    def groups(self):
        """(task, variant) -> {optimizer: summary}."""
        out: dict[tuple, dict] = {}
        for (task, variant, opt), s in self.by_key.items():
            out.setdefault((task, variant), {})[opt] = s
        return out

    def has(self, task):
        return any(k[0] == task for k in self.by_key)


def _stat(s, name):
    st = s.final_loss if name == "final_loss" else s.scalars.get(name)
    if not st or not st.get("n"):
        return None
    return st


def _compare(a, b, name, lower_is_better=True):
    """'a', 'b' or 'tie' by the mean of ``name`` over seeds, with the seed-spread noise band;
    a side with no finite value (diverged everywhere) loses."""
    sa, sb = _stat(a, name), _stat(b, name)
    if sa is None and sb is None:
        return "tie"
    if sa is None:
        return "b"
    if sb is None:
        return "a"
    diff = sa["mean"] - sb["mean"]
    if abs(diff) <= sa["std"] + sb["std"]:
        return "tie"
    a_better = diff < 0 if lower_is_better else diff > 0
    return "a" if a_better else "b"


def _fmt(st, digits=3):
    if st is None:
        return "diverged"
    return f"{st['mean']:.{digits}g} ± {st['std']:.2g}"


def _rank_speed(group: dict) -> list[str]:
    """Optimizers from fastest to slowest: more seeds at target first, then fewer mean steps,
    then lower final loss."""
    def key(opt):
        s = group[opt]
        steps = s.mean_steps_to_target
        loss = s.final_loss["mean"] if s.final_loss["n"] else math.inf
        return (-s.reached, steps if not math.isnan(steps) else math.inf, loss)
    return sorted(group, key=key)


def _from_counts(wins: int, losses: int, ties: int) -> str:
    total = wins + losses + ties
    if total == 0:
        return MIXED
    if wins >= 2 * total / 3 and losses == 0:
        return HOLDS
    if losses >= 2 * total / 3 and wins == 0:
        return NOT_HOLD
    if wins == 0 and losses == 0:
        return MIXED
    return MIXED


def _combine(parts: list[str]) -> str:
    if parts and all(p == HOLDS for p in parts):
        return HOLDS
    if parts and all(p == NOT_HOLD for p in parts):
        return NOT_HOLD
    return MIXED


def _not_run(claim, source, tasks):
    return Verdict(claim, source, NOT_RUN, [f"needs --task {' / '.join(tasks)}"], None, tasks)


# --------------------------------------------------------------------------- the checks
def _adagrad_decay(ix: _Index) -> Verdict:
    claim = "AdaGrad's effective learning rate decays very fast; RMSProp's stays controlled."
    src = "mission.md, Claims"
    evidence, parts, link = [], [], None
    for (task, variant) in ix.groups():
        if task not in DECAY_TASKS:
            continue
        ratios = {}
        for opt in ("adagrad", "rmsprop"):
            runs = [r for r in ix.records if r.final and r.task == task and r.variant == variant
                    and r.optimizer == opt and "effective_lr" in r.output.sparse]
            vals = []
            for r in runs:
                lrs = [v for v in r.output.sparse["effective_lr"][1] if math.isfinite(v) and v > 0]
                if len(lrs) >= 3:
                    vals.append(lrs[-1] / lrs[1])  # end vs the first probe after step 0
            if vals:
                ratios[opt] = statistics.median(vals)
        if len(ratios) < 2:
            continue
        decays = ratios["adagrad"] < 1 / 3
        controlled = 1 / 3 <= ratios["rmsprop"] <= 3
        parts.append(HOLDS if decays and controlled else
                     NOT_HOLD if not decays and not controlled else MIXED)
        evidence.append(f"{task}·{variant}: effective lr end/early AdaGrad ×{ratios['adagrad']:.3g}, "
                        f"RMSProp ×{ratios['rmsprop']:.3g}")
        if task == "online" or link is None:
            link = f"#fig-{task}-efflr" if task == "online" else f"#task-{task}"
    if not parts:
        return _not_run(claim, src, ["online"])
    evidence.append("early = the first probe after step 0; rule: holds where AdaGrad's ratio "
                    "< 1/3 and RMSProp's is within [1/3, 3]")
    return Verdict(claim, src, _combine(parts), evidence, link or "#task-online", ["online"])


def _rmsprop_rnn(ix: _Index) -> Verdict:
    claim = "RMSProp performs well on RNNs where AdaGrad does poorly; RMSProp is more stable."
    src = "mission.md, Claims"
    if not ix.has("adding"):
        return _not_run(claim, src, ["adding"])
    wins = losses = ties = 0
    evidence = []
    for variant in ("gru", "lstm", "rnn"):
        a, b = ix.get("adding", variant, "rmsprop"), ix.get("adding", variant, "adagrad")
        if a is None or b is None:
            continue
        sa, sb = _stat(a, "test_loss"), _stat(b, "test_loss")
        learned = any(s is not None and s["mean"] < 0.8 * ADDING_BASELINE for s in (sa, sb))
        outcome = _compare(a, b, "test_loss") if learned else "neither learned"
        evidence.append(f"adding·{variant}: held-out MSE RMSProp {_fmt(sa)} vs AdaGrad {_fmt(sb)}"
                        f" → {outcome if outcome in ('tie', 'neither learned') else ('RMSProp' if outcome == 'a' else 'AdaGrad') + ' better'}"
                        f"; seed spread RMSProp {a.final_loss['std']:.2g}, AdaGrad {b.final_loss['std']:.2g}")
        if outcome == "a":
            wins += 1
        elif outcome == "b":
            losses += 1
        elif outcome == "tie":
            ties += 1
    if wins + losses + ties == 0:
        status = MIXED
        evidence.append(f"no cell beat 0.8 × the baseline MSE {ADDING_BASELINE:.3f} with either optimizer")
    else:
        status = _from_counts(wins, losses, ties)
    return Verdict(claim, src, status, evidence, "#fig-adding-loss", ["adding"])


def _adam_fastest(ix: _Index) -> Verdict:
    claim = "Adam converges fastest and is most stable, at the cost of more optimizer memory."
    src = "mission.md, Claims"
    groups = {k: g for k, g in ix.groups().items() if "adam" in g and len(g) >= 3}
    if not groups:
        return _not_run(claim, src, ["digits-mlp", "surfaces", "..."])
    fastest, stablest, ranks = 0, 0, []
    for (task, variant), g in groups.items():
        order = _rank_speed(g)
        ranks.append(order.index("adam") + 1)
        fastest += order[0] == "adam"
        spread = {o: (s.final_loss["std"] / abs(s.final_loss["mean"]) if s.final_loss["n"] > 1
                      and s.final_loss["mean"] else math.inf) + s.diverged
                  for o, s in g.items()}
        stablest += min(spread, key=spread.get) == "adam"
    n = len(groups)
    speed = HOLDS if fastest >= n / 2 else NOT_HOLD if fastest < n / 4 else MIXED
    stable = HOLDS if stablest >= n / 2 else NOT_HOLD if stablest < n / 4 else MIXED
    # Memory on the largest model that ran the most optimizers (per-tensor step counters
    # dominate on the 2-D surfaces).
    sizes = {k: len(g) for k, g in ix.groups().items()}
    biggest = max(ix.by_key.values(), key=lambda s: (sizes[(s.task, s.variant)], s.n_params))
    mem = {s.optimizer: s.state_bytes_per_param for s in ix.by_key.values()
           if (s.task, s.variant) == (biggest.task, biggest.variant)}
    cheaper = [o for o in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop") if o in mem]
    memory = (HOLDS if "adam" in mem and cheaper and all(mem["adam"] > mem[o] for o in cheaper)
              else NOT_HOLD if "adam" in mem and cheaper else MIXED)
    evidence = [
        f"fastest to target (then lowest loss) in {fastest} of {n} task/variant groups; "
        f"median rank {statistics.median(ranks):g} of the optimizers run",
        f"lowest relative seed spread in {stablest} of {n} groups",
        f"optimizer state, bytes per parameter ({biggest.task}, {biggest.n_params:,} parameters): "
        + ", ".join(f"{o} {v:.3g}" for o, v in mem.items()),
    ]
    return Verdict(claim, src, _combine([speed, stable, memory]), evidence, "#overview", sorted({k[0] for k in groups}))


def _momentum_vs_gd(ix: _Index) -> Verdict:
    claim = "Momentum is faster than plain gradient descent; plain gradient descent is slow."
    src = "mission.md, Claims"
    wins = losses = ties = 0
    slow = total = 0
    evidence = []
    for (task, variant), g in ix.groups().items():
        if "sgd" not in g or "momentum" not in g:
            continue
        m, s = g["momentum"], g["sgd"]
        ms, ss = m.mean_steps_to_target, s.mean_steps_to_target
        if m.reached > s.reached or (m.reached == s.reached and m.reached and ms < 0.9 * ss):
            wins += 1
            word = "momentum faster"
        elif s.reached > m.reached or (m.reached == s.reached and m.reached and ss < 0.9 * ms):
            losses += 1
            word = "GD faster"
        else:
            outcome = _compare(m, s, "final_loss")
            wins += outcome == "a"
            losses += outcome == "b"
            ties += outcome == "tie"
            word = {"a": "momentum lower loss", "b": "GD lower loss", "tie": "tie"}[outcome]
        evidence.append(f"{task}·{variant}: steps to target momentum {ms:.0f} ({m.reached}/{len(m.seeds)}),"
                        f" GD {ss:.0f} ({s.reached}/{len(s.seeds)}) → {word}".replace("nan", "–"))
        if len(g) >= 4:
            order = _rank_speed(g)
            total += 1
            slow += order.index("sgd") >= len(order) / 2
    if wins + losses + ties == 0:
        return _not_run(claim, src, ["digits-mlp", "surfaces", "online"])
    part1 = _from_counts(wins, losses, ties)
    part2 = HOLDS if total and slow >= total / 2 else NOT_HOLD if total else MIXED
    evidence.insert(0, f"momentum faster in {wins}, GD faster in {losses}, tie in {ties} groups; "
                       f"GD in the slower half of all optimizers in {slow} of {total} groups")
    return Verdict(claim, src, _combine([part1, part2]), evidence, "#task-surfaces",
                   sorted({e.split("·")[0] for e in evidence[1:]}))


def _adamw_generalizes(ix: _Index) -> Verdict:
    claim = "AdamW generalizes better than Adam with L2 regularization."
    src = "mission.md, Claims"
    a, b = ix.get("weight-decay", "small-train", "adamw"), ix.get("weight-decay", "small-train", "adam")
    if a is None or b is None:
        return _not_run(claim, src, ["weight-decay"])
    outcome = _compare(a, b, "test_accuracy", lower_is_better=False)
    status = {"a": HOLDS, "b": NOT_HOLD, "tie": MIXED}[outcome]
    evidence = [f"test accuracy AdamW {_fmt(_stat(a, 'test_accuracy'))} (lr {a.hparams['lr']:.3g}, "
                f"wd {a.hparams.get('weight_decay', 0):g}) vs Adam+L2 {_fmt(_stat(b, 'test_accuracy'))} "
                f"(lr {b.hparams['lr']:.3g}, wd {b.hparams.get('weight_decay', 0):g})",
                f"test loss AdamW {_fmt(_stat(a, 'test_loss'))} vs Adam+L2 {_fmt(_stat(b, 'test_loss'))}"]
    if outcome == "tie":
        evidence.append("difference within the seed spread")
    return Verdict(claim, src, status, evidence, "#fig-weight-decay-loss", ["weight-decay"])


def _nesterov_generalizes(ix: _Index) -> Verdict:
    claim = "SGD with Nesterov momentum often generalizes better than adaptive methods."
    src = "mission.md, Claims"
    wins = losses = ties = 0
    evidence = []
    for (task, variant), g in ix.groups().items():
        if "nesterov" not in g or _stat(g["nesterov"], "test_accuracy") is None:
            continue
        n = g["nesterov"]
        row = []
        for opt in ADAPTIVE:
            if opt not in g:
                continue
            outcome = _compare(n, g[opt], "test_accuracy", lower_is_better=False)
            wins += outcome == "a"
            losses += outcome == "b"
            ties += outcome == "tie"
            row.append(f"{opt} {_fmt(_stat(g[opt], 'test_accuracy'))}{'' if outcome == 'tie' else (' ✗' if outcome == 'a' else ' ✓')}")
        evidence.append(f"{task}: test accuracy Nesterov {_fmt(_stat(n, 'test_accuracy'))} vs "
                        + ", ".join(row))
    if wins + losses + ties == 0:
        return _not_run(claim, src, ["digits-mlp", "digits-cnn", "weight-decay"])
    total = wins + losses + ties
    status = (HOLDS if wins > losses and wins >= total / 2 else
              NOT_HOLD if losses > wins and wins < total / 4 else MIXED)
    evidence.insert(0, f"Nesterov better in {wins}, worse in {losses}, tied in {ties} of {total} "
                       "comparisons (✓ adaptive better, ✗ Nesterov better, plain: within noise)")
    return Verdict(claim, src, status, evidence, "#task-digits-mlp",
                   sorted({e.split(":")[0] for e in evidence[1:]}))


def _typical_uses(ix: _Index) -> list[Verdict]:
    src = "mission.md, Claims (typical uses of RMSProp / Adam)"
    out = []
    uses = [("RNNs", "adding", "test_loss", True), ("online (non-stationary) learning", "online",
                                                    "tracking_loss", True),
            ("CNNs", "digits-cnn", "test_accuracy", False)]
    for label, task, metric, lower in uses:
        claim = f"Typical use — {label}: RMSProp and Adam are among the better optimizers."
        groups = {k: g for k, g in ix.groups().items() if k[0] == task}
        if not groups:
            out.append(_not_run(claim, src, [task]))
            continue
        parts, evidence = [], []
        for (t, variant), g in groups.items():
            scored = {o: _stat(s, metric) for o, s in g.items()}
            worst = math.inf if lower else -math.inf
            order = sorted(g, key=lambda o: (scored[o]["mean"] if scored[o] else worst)
                           * (1 if lower else -1))
            if lower and task == "adding" and all(
                    (scored[o] or {"mean": math.inf})["mean"] > 0.8 * ADDING_BASELINE for o in g):
                evidence.append(f"{t}·{variant}: no optimizer learned (all ≥ 0.8 × baseline)")
                continue
            # "Among the better": in the better half, or within the seed spread of its last member.
            last_good = g[order[max(len(order) // 2, 1) - 1]]
            hits = [o for o in ("rmsprop", "adam") if o in g]
            good = [o for o in hits if _compare(g[o], last_good, metric, lower) != "b"]
            parts.append(HOLDS if hits and len(good) == len(hits) else NOT_HOLD if not good else MIXED)
            evidence.append(f"{t}·{variant}: ranking by {metric} " + " > ".join(order)
                            + "; within the better half or its seed spread: "
                            + (", ".join(good) if good else "neither"))
        status = _combine(parts) if parts else MIXED
        out.append(Verdict(claim, src, status, evidence, f"#fig-{task}-loss", [task]))
    out.append(Verdict("Typical uses — speech, deep reinforcement learning (DQN), Transformers, GANs.",
                       src, NOT_TESTABLE,
                       ["the suite has no speech, reinforcement-learning, Transformer or GAN task"]))
    return out


def _remedy_deep(ix: _Index, variant: str, name: str) -> Verdict:
    claim = f"{name} cures vanishing gradients in a deep sigmoid network."
    src = "mission.md, Gradient problems (remedies)"
    base_opts = {o for (t, v, o) in ix.by_key if t == "deep" and v == "sigmoid"}
    if not base_opts or not any(k[:2] == ("deep", variant) for k in ix.by_key):
        return _not_run(claim, src, ["deep"])
    parts, evidence = [], []
    for opt in sorted(base_opts):
        a, b = ix.get("deep", variant, opt), ix.get("deep", "sigmoid", opt)
        if a is None or b is None:
            continue
        ra, rb = _stat(a, "first_to_last_grad_ratio"), _stat(b, "first_to_last_grad_ratio")
        grad_ok = ra is not None and rb is not None and ra["mean"] > 10 * rb["mean"]
        loss = _compare(a, b, "final_loss")
        parts.append(HOLDS if grad_ok and loss == "a" else NOT_HOLD if not grad_ok and loss != "a" else MIXED)
        evidence.append(f"{opt}: first/last layer gradient ratio {ra['mean'] if ra else math.nan:.3g} "
                        f"vs sigmoid {rb['mean'] if rb else math.nan:.3g}; final loss "
                        f"{_fmt(a.final_loss)} vs sigmoid {_fmt(b.final_loss)}")
    evidence.append("rule: ratio > 10 × sigmoid's and a lower loss beyond the seed spread")
    return Verdict(claim, src, _combine(parts), evidence, "#fig-deep-layers", ["deep"])


def _remedy_gated(ix: _Index) -> Verdict:
    claim = "LSTM and GRU cells cure vanishing gradients over long sequences (vs a vanilla RNN)."
    src = "mission.md, Gradient problems (remedies)"
    if not ix.has("adding"):
        return _not_run(claim, src, ["adding"])
    parts, evidence = [], []
    for cell in ("lstm", "gru"):
        wins = losses = ties = 0
        for (t, v, opt), s in ix.by_key.items():
            if t != "adding" or v != cell or ix.get("adding", "rnn", opt) is None:
                continue
            outcome = _compare(s, ix.get("adding", "rnn", opt), "test_loss")
            wins += outcome == "a"
            losses += outcome == "b"
            ties += outcome == "tie"
            evidence.append(f"{opt}: held-out MSE {cell.upper()} {_fmt(_stat(s, 'test_loss'))} vs "
                            f"RNN {_fmt(_stat(ix.get('adding', 'rnn', opt), 'test_loss'))}")
        if wins + losses + ties:
            parts.append(_from_counts(wins, losses, ties))
    if not parts:
        return _not_run(claim, src, ["adding"])
    return Verdict(claim, src, _combine(parts), evidence, "#fig-adding-loss", ["adding"])


def _remedy_clipping(ix: _Index) -> Verdict:
    claim = "Gradient clipping tames exploding gradients."
    src = "mission.md, Gradient problems (remedies)"
    if not ix.has("exploding"):
        return _not_run(claim, src, ["exploding"])
    parts, evidence = [], []
    for (t, v, opt), clipped in ix.by_key.items():
        if t != "exploding" or v != "clipped":
            continue
        raw = ix.get("exploding", "unclipped", opt)
        if raw is None:
            continue
        g_raw = _stat(raw, "max_grad_norm")
        exploded = raw.diverged > 0 or (g_raw is not None and g_raw["max"] > 100)
        tamed = clipped.diverged == 0 and _compare(clipped, raw, "final_loss") != "b"
        if exploded:
            parts.append(HOLDS if tamed else NOT_HOLD)
        evidence.append(f"{opt}: unclipped diverged {raw.diverged}/{len(raw.seeds)}, largest gradient "
                        f"norm {g_raw['max'] if g_raw else math.nan:.3g}; clipped diverged "
                        f"{clipped.diverged}/{len(clipped.seeds)}, final loss {_fmt(clipped.final_loss)}"
                        f" vs {_fmt(raw.final_loss)}" + ("" if exploded else " (did not explode)"))
    status = _combine(parts) if parts else MIXED
    if not parts:
        evidence.append("no unclipped run exploded, so clipping had nothing to tame")
    return Verdict(claim, src, status, evidence, "#fig-exploding-gradnorm", ["exploding"])


def evaluate_claims(summaries, records) -> list[Verdict]:
    """Every verdict, mission claims first, then the gradient-problem remedies."""
    ix = _Index(summaries, records)
    verdicts = [_adagrad_decay(ix), _rmsprop_rnn(ix), _adam_fastest(ix), _momentum_vs_gd(ix),
                _adamw_generalizes(ix), _nesterov_generalizes(ix)]
    verdicts += _typical_uses(ix)
    verdicts += [_remedy_deep(ix, "relu+he", "ReLU with He initialization"),
                 _remedy_deep(ix, "sigmoid+batchnorm", "Batch normalization"),
                 _remedy_gated(ix), _remedy_clipping(ix),
                 Verdict("Xavier initialization, L2 regularization and a lower learning rate as "
                         "remedies.", "mission.md, Gradient problems (remedies)", NOT_TESTABLE,
                         ["no task isolates these remedies"])]
    return verdicts
