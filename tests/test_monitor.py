"""GradientMonitor on textbook networks: vanishing, healthy, exploding, nonfinite; statistics
against hand computations; no effect on training; exports."""

import csv
import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import adaptim
from adaptim import GradientMonitor, GradientThresholds


def deep_mlp(depth=10, act=nn.Sigmoid, he=False, width=64, seed=0):
    torch.manual_seed(seed)
    layers, d = [], 32
    for _ in range(depth):
        lin = nn.Linear(d, width)
        if he:
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
        layers += [lin, act()]
        d = width
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def classify_backward(model, seed=0, n=128):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


class SequenceRegressor(nn.Module):
    """A recurrent net reading a sequence and predicting from the last hidden state."""

    def __init__(self, cell="rnn", hh_gain=None, hidden=64, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](8, hidden,
                                                                         batch_first=True)
        if hh_gain is not None:  # W_hh = gain × orthogonal: spectral radius = gain
            nn.init.orthogonal_(self.rnn.weight_hh_l0)
            with torch.no_grad():
                self.rnn.weight_hh_l0.mul_(hh_gain)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def sequence_backward(model, steps=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, steps, 8, generator=g), torch.randn(16, 1, generator=g)
    model.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()


# ------------------------------------------------------------------ the four verdicts
def test_deep_sigmoid_mlp_with_default_init_is_vanishing():
    model = deep_mlp(10, nn.Sigmoid)
    classify_backward(model)
    report = GradientMonitor(model).check()
    assert report.status == "vanishing"
    assert report.layers[0] == "0"  # the input-side layer is the worst
    assert len(report.layers) >= 5
    rel = [s.rel_grad for s in report.stats]
    assert rel[0] < 1e-6 * rel[-1]  # measured: ~1e-9
    text = " ".join(report.advice)
    assert "ReLU" in text and "He initialisation" in text and "batch normalization" in text
    assert "LSTM" not in text


def test_same_depth_relu_he_init_is_healthy():
    model = deep_mlp(10, nn.ReLU, he=True)
    classify_backward(model)
    report = GradientMonitor(model).check()
    assert report.status == "healthy", str(report)
    assert report.layers == [] and report.advice == []


def test_recurrent_net_with_growing_gradients_is_exploding():
    model = SequenceRegressor("rnn", hh_gain=2.0)
    sequence_backward(model, steps=100)
    report = GradientMonitor(model).check()
    assert report.status == "exploding"
    assert report.layers == ["rnn.l0"]
    assert report.stats[0].rel_grad > 1e4 * report.stats[1].rel_grad
    text = " ".join(report.advice)
    assert "max_grad_norm" in text and "learning rate" in text
    assert "LSTM" in text and "GRU" in text


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_recurrent_net_on_the_same_task_is_healthy(cell):
    model = SequenceRegressor(cell)
    sequence_backward(model, steps=100)
    assert GradientMonitor(model).check().status == "healthy"


def test_clipping_is_the_cure_the_monitor_sees():
    model = SequenceRegressor("rnn", hh_gain=2.0)
    opt = adaptim.SGD(model.parameters(), lr=0.01, max_grad_norm=1.0)
    monitor = GradientMonitor(model, opt, every=1)
    sequence_backward(model)
    opt.step()
    # recorded before clipping (that is the point), the update afterwards is bounded
    assert monitor.check().status == "exploding"
    assert monitor.history[-1]["layers"][0]["update_ratio"] < 0.01


def test_nan_input_makes_every_layer_nonfinite():
    model = deep_mlp(4, nn.ReLU, he=True)
    x = torch.randn(8, 32)
    x[3, 5] = float("nan")
    nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
    report = GradientMonitor(model).check()
    assert report.status == "nonfinite"
    assert report.layers == ["0", "2", "4", "6", "8"]
    assert "on_nonfinite='skip'" in " ".join(report.advice)


def test_single_nan_gradient_is_nonfinite_and_named():
    model = deep_mlp(4, nn.ReLU, he=True)
    classify_backward(model)
    model[4].bias.grad[2] = float("nan")
    report = GradientMonitor(model).check()
    assert report.status == "nonfinite" and report.layers == ["4"]


def test_dead_layer_is_vanishing_with_dead_relu_advice():
    model = deep_mlp(4, nn.ReLU, he=True)
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # every unit of layer 2 is dead: nothing flows below it
    classify_backward(model)
    report = GradientMonitor(model).check()
    assert report.status == "vanishing"
    zero = {s.layer: s.zero_frac for s in report.stats}
    # layer 2's outputs are 0, so every later weight gradient is 0 too; the last bias still learns
    assert zero["0"] == 1.0 and zero["2"] == 1.0 and zero["8"] < 1.0
    assert {"0", "2"} <= set(report.layers)
    assert "dead ReLUs" in " ".join(report.advice)


def test_thresholds_are_configurable_and_validated():
    model = deep_mlp(10, nn.ReLU, he=True)
    classify_backward(model)
    strict = GradientMonitor(model, thresholds=GradientThresholds(vanishing_spread=0.5))
    assert strict.check().status == "vanishing"  # min/max rel_grad here is ~2e-2
    low_cap = GradientMonitor(model, thresholds=GradientThresholds(exploding_ratio=1e-3))
    assert low_cap.check().status == "exploding"
    for bad in (dict(vanishing_spread=0), dict(vanishing_spread=2.0), dict(exploding_spread=0.5),
                dict(exploding_ratio=float("nan")), dict(dead_fraction=1.5),
                dict(update_ratio_range=(1.0, 0.1))):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GradientThresholds(**bad)


def test_bad_arguments():
    model = deep_mlp(2, nn.ReLU)
    with pytest.raises(TypeError, match="model"):
        GradientMonitor("model")
    with pytest.raises(TypeError, match="optimizer"):
        GradientMonitor(model, optimizer=object())
    with pytest.raises(ValueError, match="every"):
        GradientMonitor(model, every=0)
    with pytest.raises(ValueError, match="max_history"):
        GradientMonitor(model, max_history=0)
    with pytest.raises(ValueError, match="no trainable"):
        GradientMonitor(nn.ReLU())


# ------------------------------------------------------------------ statistics
def test_stats_match_hand_computation():
    model = deep_mlp(2, nn.ReLU, he=True)
    classify_backward(model)
    rec = GradientMonitor(model).record()
    first = rec["layers"][0]
    w, b = model[0].weight, model[0].bias
    g = math.sqrt(w.grad.pow(2).sum().item() + b.grad.pow(2).sum().item())
    p = math.sqrt(w.pow(2).sum().item() + b.pow(2).sum().item())
    zeros = (w.grad == 0).sum().item() + (b.grad == 0).sum().item()
    assert first["grad_norm"] == pytest.approx(g, rel=1e-6)
    assert first["param_norm"] == pytest.approx(p, rel=1e-6)
    assert first["rel_grad"] == pytest.approx(g / p, rel=1e-6)
    assert first["zero_frac"] == pytest.approx(zeros / (w.numel() + b.numel()))
    assert first["update_ratio"] is None and first["eff_lr_p50"] is None


def test_update_ratio_and_every():
    model = deep_mlp(2, nn.ReLU, he=True)
    opt = adaptim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, opt, every=10)
    for step in range(25):
        classify_backward(model, seed=step)
        before = [p.detach().clone() for p in model[0].parameters()]
        opt.step()
        if step == 20:
            delta = math.sqrt(sum((p.detach() - q).pow(2).sum().item()
                                  for p, q in zip(model[0].parameters(), before)))
            norm = math.sqrt(sum(q.pow(2).sum().item() for q in before))
    assert [r["step"] for r in monitor.history] == [0, 10, 20]
    assert monitor.history[-1]["layers"][0]["update_ratio"] == pytest.approx(delta / norm,
                                                                              rel=1e-5)
    monitor.close()
    classify_backward(model)
    opt.step()
    assert monitor.steps_seen == 25 and len(monitor.history) == 3


def test_layer_without_gradient_is_left_out_and_ratios_stay_aligned():
    torch.manual_seed(0)
    unused, model = nn.Linear(3, 3), deep_mlp(2, nn.ReLU, he=True)
    holder = nn.Sequential()
    holder.add_module("unused", unused)
    holder.add_module("net", model)
    opt = adaptim.SGD(holder.parameters(), lr=0.1)
    monitor = GradientMonitor(holder, opt, every=1)
    before = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    classify_backward(model)
    opt.step()
    layers = monitor.history[-1]["layers"]
    assert [s["layer"] for s in layers] == ["net.0", "net.2", "net.4"]
    delta = math.sqrt((model[0].weight - before[0]).pow(2).sum().item()
                      + (model[0].bias - before[1]).pow(2).sum().item())
    norm = math.sqrt(before[0].pow(2).sum().item() + before[1].pow(2).sum().item())
    assert layers[0]["update_ratio"] == pytest.approx(delta / norm, rel=1e-5)


def test_track_updates_false_keeps_no_copy():
    model = deep_mlp(2, nn.ReLU, he=True)
    opt = adaptim.Adam(model.parameters())
    monitor = GradientMonitor(model, opt, every=1, track_updates=False)
    classify_backward(model)
    opt.step()
    stats = monitor.history[-1]["layers"][0]
    assert stats["update_ratio"] is None and stats["eff_lr_p50"] > 0
    assert monitor._collector.buffers is None
    with pytest.raises(TypeError, match="track_updates"):
        GradientMonitor(model, track_updates=1)


def test_multilayer_rnn_is_split_into_layers():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("rnn", nn.GRU(4, 8, num_layers=2, bidirectional=True))
    names = [layer.name for layer in GradientMonitor(model).layers]
    assert names == ["rnn.l0", "rnn.l0_reverse", "rnn.l1", "rnn.l1_reverse"]


@pytest.mark.parametrize("make,formula,eps_mask", [
    (lambda ps: adaptim.RMSprop(ps, lr=0.01),
     lambda st: 0.01 / (st["square_avg"].sqrt() + 1e-8), lambda st: st["square_avg"].sqrt() < 1e-8),
    (lambda ps: adaptim.RMSprop(ps, lr=0.01, eps_in_sqrt=True),
     lambda st: 0.01 / (st["square_avg"] + 1e-8).sqrt(), lambda st: st["square_avg"] < 1e-8),
    (lambda ps: adaptim.Adagrad(ps, lr=0.1),
     lambda st: 0.1 / (st["sum"].sqrt() + 1e-10), lambda st: st["sum"].sqrt() < 1e-10),
    (lambda ps: adaptim.Adam(ps, lr=1e-3),
     lambda st: 1e-3 / ((st["exp_avg_sq"] / (1 - 0.999 ** 2)).sqrt() + 1e-8),
     lambda st: (st["exp_avg_sq"] / (1 - 0.999 ** 2)).sqrt() < 1e-8),
    (lambda ps: torch.optim.Adam(ps, lr=1e-3),
     lambda st: 1e-3 / ((st["exp_avg_sq"] / (1 - 0.999 ** 2)).sqrt() + 1e-8),
     lambda st: (st["exp_avg_sq"] / (1 - 0.999 ** 2)).sqrt() < 1e-8),
    (lambda ps: adaptim.Adadelta(ps),
     lambda st: 1.0 * (st["acc_delta"] + 1e-6).sqrt() / (st["square_avg"] + 1e-6).sqrt(),
     lambda st: st["square_avg"] < 1e-6),
])
def test_effective_step_size_distribution(make, formula, eps_mask):
    model = nn.Sequential(nn.Linear(20, 30))
    opt = make(model.parameters())
    monitor = GradientMonitor(model, opt, every=1)
    for step in range(2):
        model.zero_grad()
        x = torch.randn(4, 20, generator=torch.Generator().manual_seed(step))
        model(x).pow(2).mean().backward()
        opt.step()
    stats = monitor.history[-1]["layers"][0]
    states = [opt.state[p] for group in opt.param_groups for p in group["params"]]
    eff = torch.cat([formula(st).reshape(-1).double() for st in states])
    expected = torch.quantile(eff, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
    got = torch.tensor([stats["eff_lr_p05"], stats["eff_lr_p50"], stats["eff_lr_p95"]],
                       dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-5)
    masks = torch.cat([eps_mask(st).reshape(-1) for st in states])
    assert stats["eps_frac"] == pytest.approx(masks.double().mean().item())


def test_eps_dominated_share_and_note():
    model = nn.Sequential(nn.Linear(10, 10))
    opt = adaptim.RMSprop(model.parameters(), lr=0.01, eps=1e-3)
    monitor = GradientMonitor(model, opt, every=1)
    model.zero_grad()
    (1e-6 * model(torch.randn(4, 10)).sum()).backward()  # |g| ~ 1e-6: √v ~ 1e-7 << ε
    model[0].weight.grad[0].fill_(1.0)  # one row of 10 weights with a large gradient
    opt.step()
    report = monitor.check()
    assert report.stats[0].eps_frac == pytest.approx(100 / 110)
    assert any("ε dominates" in note for note in report.notes)


def test_monitor_does_not_change_training_bitwise():
    def train(with_monitor):
        model = deep_mlp(4, nn.Tanh)
        opt = adaptim.Adam(model.parameters(), lr=1e-2)
        monitor = GradientMonitor(model, opt, every=3) if with_monitor else None
        for step in range(10):
            classify_backward(model, seed=step)
            opt.step()
            if monitor is not None and step % 4 == 0:
                monitor.check()
        return model, opt, monitor

    a, opt_a, monitor = train(True)
    b, opt_b, _ = train(False)
    assert len(monitor.history) == 4
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p.grad, q.grad)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a.state[p][key], opt_b.state[q][key])


# ------------------------------------------------------------------ exports
def _trained_monitor():
    model = deep_mlp(3, nn.ReLU, he=True)
    opt = adaptim.RMSprop(model.parameters(), lr=1e-3)
    monitor = GradientMonitor(model, opt, every=2)
    for step in range(6):
        classify_backward(model, seed=step)
        opt.step()
    return monitor


def test_jsonl_and_csv_export(tmp_path):
    monitor = _trained_monitor()
    monitor.history[-1]["layers"][0]["grad_norm"] = float("nan")
    monitor.to_jsonl(tmp_path / "g.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 2, 4]
    assert [s["layer"] for s in lines[0]["layers"]] == ["0", "2", "4", "6"]
    assert lines[-1]["layers"][0]["grad_norm"] == "nan"
    assert lines[1]["layers"][1]["update_ratio"] > 0
    monitor.to_csv(tmp_path / "g.csv")
    with open(tmp_path / "g.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["step"] == "0" and rows[0]["layer"] == "0"
    assert float(rows[5]["rel_grad"]) == pytest.approx(monitor.history[1]["layers"][1]["rel_grad"])
    assert float(rows[0]["eff_lr_p50"]) > 0


def test_tensorboard_export_writes_the_history(tmp_path):
    """Read the event file back with TensorBoard's own reader (tensorboard is a test extra)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitor = _trained_monitor()
    monitor.to_tensorboard(tmp_path)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "gradients/grad_norm/0" in tags and "gradients/rel_grad/6" in tags
    written = [e.value for e in events.Scalars("gradients/grad_norm/0")]
    expected = [row["grad_norm"] for row in monitor.rows() if row["layer"] == "0"]
    assert written == pytest.approx(expected, rel=1e-6)
    assert [e.step for e in events.Scalars("gradients/grad_norm/0")] == \
        [row["step"] for row in monitor.rows() if row["layer"] == "0"]


def test_tensorboard_missing_gives_install_instructions(tmp_path, monkeypatch):
    import sys

    monitor = _trained_monitor()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(ImportError, match="pip install tensorboard"):
        monitor.to_tensorboard(tmp_path)


def test_heatmap_png(tmp_path):
    pytest.importorskip("matplotlib")
    monitor = _trained_monitor()
    fig = monitor.plot_heatmap(tmp_path / "heat.png")
    data = (tmp_path / "heat.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "2", "4", "6"]


def test_importing_adaptim_does_not_import_matplotlib():
    code = ("import sys, adaptim; m = adaptim.GradientMonitor; "
            "print('matplotlib' in sys.modules, 'adaptim.diagnostics._plot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_batch_norm_remedy_makes_the_sigmoid_net_healthy():
    torch.manual_seed(0)
    layers, d = [], 32
    for _ in range(10):
        layers += [nn.Linear(d, 64), nn.BatchNorm1d(64), nn.Sigmoid()]
        d = 64
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    classify_backward(model)
    monitor = GradientMonitor(model)
    assert monitor.check().status == "healthy"
    # the BN gains sit ~30x below their Linear neighbours: compared, they would look vanishing
    stats = {s["layer"]: s["rel_grad"] for s in monitor.history[-1]["layers"]}
    assert stats["1"] < stats["0"] / 5


def test_heatmap_marks_nonfinite_cells(tmp_path):
    pytest.importorskip("matplotlib")
    model = deep_mlp(3, nn.ReLU, he=True)
    monitor = GradientMonitor(model)
    classify_backward(model)
    monitor.record(step=0)
    model[2].weight.grad[0, 0] = float("inf")
    monitor.record(step=1)
    fig = monitor.plot_heatmap(tmp_path / "bad.png")
    assert "NaN/Inf" in fig.axes[0].get_title()
    red = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_color() == "red"]
    assert red == ["2"]  # the layer check() flags as nonfinite
    assert (tmp_path / "bad.png").stat().st_size > 5000


# ------------------------------------------------------------------ layer names in the table
def _table_names(report):
    lines = str(report).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("layer"))
    return [line.split()[0] for line in lines[start + 1:]]


def test_gpt2_layer_names_stay_distinct_in_the_table():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=16,
                                     vocab_size=50)
    model = transformers.GPT2LMHeadModel(config)
    monitor = GradientMonitor(model)
    model(torch.randint(0, 50, (2, 8)), labels=torch.randint(0, 50, (2, 8))).loss.backward()
    report = monitor.check()
    names = [s.layer for s in report.stats]
    assert "transformer.h.1.attn.c_attn" in names and "transformer.h.1.attn.c_proj" in names
    shown = _table_names(report)
    assert len(shown) == len(names) == len(set(shown))  # no two layers print alike
    for full, label in zip(names, shown):
        assert label == full or (label.startswith("…") and full.endswith(label[1:]))


def test_display_names_shorten_only_where_unambiguous():
    from adaptim.diagnostics.export import display_names

    names = ["encoder.blocks.0.attention.query_projection",
             "decoder.blocks.0.attention.query_projection",
             "encoder.blocks.0.attention.output_projection_with_a_very_long_name_indeed",
             "model.layers.11.self_attn.q_proj", "fc"]
    labels = display_names(names, width=24)
    assert labels["fc"] == "fc"
    assert labels["model.layers.11.self_attn.q_proj"] == "…11.self_attn.q_proj"
    # the same tail under two parents: both stay in full
    assert labels[names[0]] == names[0] and labels[names[1]] == names[1]
    # a last component longer than the width: the full name, never a cut word
    assert labels[names[2]] == names[2]
    assert len(set(labels.values())) == len(names)


def test_exports_keep_full_names(tmp_path):
    model = nn.Sequential()
    model.add_module("a_rather_long_block_name_that_goes_on", nn.Sequential(nn.Linear(3, 3)))
    monitor = GradientMonitor(model)
    model(torch.randn(2, 3)).sum().backward()
    monitor.record()
    monitor.to_csv(tmp_path / "g.csv")
    with open(tmp_path / "g.csv") as fh:
        layers = [r["layer"] for r in csv.DictReader(fh)]
    assert layers == ["a_rather_long_block_name_that_goes_on.0"]


def test_diagnosis_is_a_pure_function_of_the_statistics():
    from adaptim.diagnostics.collect import LayerStats
    from adaptim.diagnostics.diagnose import diagnose

    def layer(name, rel, zero=0.0):
        return LayerStats(layer=name, kind="Linear", numel=10, grad_norm=rel, param_norm=1.0,
                          rel_grad=rel, zero_frac=zero)
    t = GradientThresholds()
    assert diagnose([layer("0", 1e-5), layer("1", 1.0)], t).status == "vanishing"
    assert diagnose([layer("0", 1e-5), layer("1", 1.0)], t, {"1"}).status == "healthy"
    assert diagnose([layer("0", 5e3), layer("1", 1.0)], t).layers == ["0"]
    dead = diagnose([layer("0", 0.0, zero=1.0), layer("1", 1.0)], t)
    assert dead.status == "vanishing" and dead.dead == ["0"]
    assert diagnose([layer("0", float("nan"))], t).status == "nonfinite"
