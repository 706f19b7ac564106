"""torch.compile around optimizer.step(): the update is one opaque operator
(``torch.ops.adaptim.step``), so a compiled step has no graph break, never recompiles when a
scheduler changes a float learning rate, and equals the eager step bit for bit."""

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

import adaptim

STEPS = 100
SETTINGS = {
    "SGD": dict(lr=0.05, momentum=0.9, nesterov=True),
    "Adagrad": dict(lr=0.05, lr_decay=0.01),
    "RMSprop": dict(lr=1e-3, momentum=0.9, centered=True),
    "Adadelta": dict(lr=1.0, weight_decay=0.01),
    "Adam": dict(lr=1e-2, amsgrad=True),
    "AdamW": dict(lr=1e-2, eps_hat=True),
}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def _train(name, kw, steps, compiled, x, model=None):
    model = model or _model()
    opt = getattr(adaptim, name)(model.parameters(), **kw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1.0 + 0.05 * s))

    def step():
        opt.step()

    run = torch.compile(step) if compiled else step
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()  # new gradient tensors every step
        run()
        sched.step()
    return model, opt


def _no_breaks_no_recompiles():
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1
    assert counters["frames"]["ok"] == 1


def test_float_lr_scheduler_100_steps_one_graph_no_break_no_recompile():
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    with torch._dynamo.config.patch(error_on_recompile=True), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled, opt_c = _train("Adam", dict(lr=1e-2), STEPS, True, x)
    _no_breaks_no_recompiles()
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]  # step() was recorded
    eager, opt_e = _train("Adam", dict(lr=1e-2), STEPS, False, x)
    assert opt_c.param_groups[0]["lr"] == opt_e.param_groups[0]["lr"] != 1e-2
    for a, b in zip(compiled.parameters(), eager.parameters()):
        assert torch.equal(a, b)
        for key, value in opt_e.state[b].items():
            assert torch.equal(opt_c.state[a][key], value), key


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_optimizer_compiles_to_one_graph_equal_to_eager(name):
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled, _ = _train(name, SETTINGS[name], 12, True, x)
    _no_breaks_no_recompiles()
    eager, _ = _train(name, SETTINGS[name], 12, False, x)
    for a, b in zip(compiled.parameters(), eager.parameters()):
        assert torch.equal(a, b)


def test_explain_reports_no_graph_break_and_fullgraph_compiles():
    model = _model()
    opt = adaptim.Adam(model.parameters(), lr=1e-2, max_grad_norm=0.1, on_nonfinite="skip")
    model(torch.ones(4, 8)).sum().backward()
    explanation = torch._dynamo.explain(opt.step)()
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    ops = [n.target for g in explanation.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert torch.ops.adaptim.step.default in ops or torch.ops.adaptim.step in ops
    torch.compile(opt.step, fullgraph=True)()  # raises on any graph break
    assert int(opt.state[next(model.parameters())]["step"]) == 2


def test_guard_options_run_inside_the_operator():
    # clipping and the skip decision need values on the host: inside the operator, no break
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(3))
    model = _model()
    opt = adaptim.Adam(model.parameters(), lr=1e-2, max_grad_norm=0.05, on_nonfinite="skip")
    step = torch.compile(lambda: opt.step())
    model(x).square().mean().backward()
    step()
    before = [p.detach().clone() for p in model.parameters()]
    next(model.parameters()).grad[0, 0] = float("nan")
    step()
    assert opt.skipped_steps == 1
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    _no_breaks_no_recompiles()
    eager = _model()
    opt_e = adaptim.Adam(eager.parameters(), lr=1e-2, max_grad_norm=0.05, on_nonfinite="skip")
    eager(x).square().mean().backward()
    opt_e.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), eager.parameters()))


def test_scheduler_still_checks_the_call_order():
    # step() records that it ran (the scheduler's wrapper is not needed, so not installed)
    model = _model()
    opt = adaptim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    assert opt.step.__func__ is type(opt).step
    with pytest.warns(UserWarning, match="before `optimizer.step"):
        sched.step()
    opt2 = adaptim.SGD(_model().parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt2.step()
        sched2.step()


@pytest.mark.parametrize("change", ["none", "clip", "scale"])
def test_forward_backward_change_step_read_in_one_compiled_function_equals_eager(change):
    # aot_eager runs each aten op as eager does (bits comparable) and hands the operator copies
    # of its inputs, written back after it: the update must land in those copies
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(4))

    def make():
        model = _model()
        opt = adaptim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1.0 + 0.05 * s))

        def train():
            model(x).square().mean().backward()
            if change == "clip":
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
            elif change == "scale":
                for p in model.parameters():
                    p.grad.mul_(0.5)
            opt.step()
            after = model(x).sum()  # reads the updated parameters
            opt.zero_grad()
            return after
        return model, opt, sched, train

    eager, opt_e, sched_e, train_e = make()
    compiled, opt_c, sched_c, train_c = make()
    train_c = torch.compile(train_c, backend="aot_eager")
    for _ in range(6):
        assert torch.equal(train_c(), train_e())
        sched_c.step()
        sched_e.step()
    for a, b in zip(compiled.parameters(), eager.parameters()):
        assert torch.equal(a, b)
        for key, value in opt_e.state[b].items():
            assert torch.equal(opt_c.state[a][key], value), key


def _compiled_beside_eager(make, backend, backward, steps):
    """Two copies from ``make()`` (model, optimizer, update function), one update compiled with
    ``backend``: after each backward, both updates' outputs, the parameters and the gradients
    must be bit-equal. Returns (compiled model, eager model, compiled model's optimizer)."""
    eager, _, update_e = make()
    compiled, opt_c, update_c = make()
    update_c = torch.compile(update_c, backend=backend)
    for _ in range(steps):
        for model in (eager, compiled):
            model.zero_grad()
            backward(model)
        for a, b in zip(update_c(), update_e()):
            assert torch.equal(a, b)
        for a, b in zip(compiled.parameters(), eager.parameters()):
            assert torch.equal(a, b)
            assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)
    return compiled, eager, opt_c


@pytest.mark.parametrize("backend", ["inductor", "aot_eager", "eager"])
def test_changes_before_the_step_and_reads_after_it_are_ordered(backend):
    # Exact arithmetic (halving, adding 1) so that any backend's bits equal eager's: gradients
    # changed in place and assigned anew, a parameter changed in place, all before the step, and
    # the parameters read after it, in one compiled function.
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(5))

    def make():
        model = _model()
        opt = adaptim.Adam(model.parameters(), lr=1e-2)
        params = list(model.parameters())

        def update():
            params[0].grad.mul_(0.5)
            params[1].grad = params[1].grad * 0.5
            with torch.no_grad():
                params[2].add_(1.0)
            opt.step()
            return [p * 2.0 for p in params]
        return model, opt, update

    def backward(model):
        model(x).square().mean().backward()

    compiled, _, opt_c = _compiled_beside_eager(make, backend, backward, steps=4)
    assert int(opt_c.state[next(compiled.parameters())]["step"]) == 4


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_parameters_without_gradients_keep_their_values_and_state(backend):
    # the first layer gets no gradient: the operator updates the others only, at their places
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(6))

    def make():
        model = _model()
        opt = adaptim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)

        def update():
            opt.step()
            return [p * 2.0 for p in model.parameters()]
        return model, opt, update

    def backward(model):
        h = model[0](x).detach()  # no gradient reaches the first layer
        model[2](model[1](h)).square().mean().backward()

    compiled, _, opt_c = _compiled_beside_eager(make, backend, backward, steps=3)
    first = next(compiled.parameters())
    assert first.grad is None and first not in opt_c.state


def test_triton_path_runs_inside_the_operator(monkeypatch):
    # The Triton kernels (the CUDA default where they are chosen), here in Triton's interpreter
    # on CPU tensors: the launch runs inside the one operator, bit for bit the eager launch.
    pytest.importorskip("triton")
    from adaptim import _fused
    monkeypatch.setattr(_fused, "_TRITON_ON_CPU", True)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(7))
    before = _fused._debug.launches
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled, opt_c = _train("Adam", dict(lr=1e-2, amsgrad=True, fused=True), 3, True, x)
    _no_breaks_no_recompiles()
    assert _fused._debug.launches - before == 3
    eager, opt_e = _train("Adam", dict(lr=1e-2, amsgrad=True, fused=True), 3, False, x)
    assert _fused._debug.launches - before == 6
    for a, b in zip(compiled.parameters(), eager.parameters()):
        assert torch.equal(a, b)
        for key, value in opt_e.state[b].items():
            assert torch.equal(opt_c.state[a][key], value), key
