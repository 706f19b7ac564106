"""adaptim == torch.optim (for-loop mode) in float64 for every torch-supported option set:
single tensors, several parameter groups, tensor lr, complex parameters, LR schedulers, and
training a real model; the default step (the fused kernel on CPU) and, where marked, the
reference path (fused=False)."""

import pytest
import torch

import adaptim
from cases import all_cases, case_id, gradient_sequence, torch_supported

TORCH_CASES = [(n, kw) for n, kw in all_cases() if torch_supported(n, kw)]
IDS = [case_id(*c) for c in TORCH_CASES]
RTOL = 1e-9


def _run_pair(name, kwargs, make_params, steps=50, scheduler=None, dtype=torch.float64,
              fused=None):
    ours_p, theirs_p = make_params(), make_params()
    ours = getattr(adaptim, name)(ours_p, fused=fused, **kwargs)
    theirs = getattr(torch.optim, name)(theirs_p, foreach=False, **kwargs)
    scheds = [scheduler(o) for o in (ours, theirs)] if scheduler else []
    flat_o = [p for g in ours.param_groups for p in g["params"]]
    flat_t = [p for g in theirs.param_groups for p in g["params"]]
    grads = [gradient_sequence(p.shape, steps, dtype=p.dtype, seed=i) for i, p in enumerate(flat_o)]
    for t in range(steps):
        for i, (a, b) in enumerate(zip(flat_o, flat_t)):
            a.grad, b.grad = grads[i][t].clone(), grads[i][t].clone()
        ours.step()
        theirs.step()
        for s in scheds:
            s.step()
    for a, b in zip(flat_o, flat_t):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-12)
        for key, value in theirs.state[b].items():
            mine = ours.state[a][key]
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(mine, value, rtol=RTOL, atol=1e-12,
                                           check_dtype=True, msg=f"state {key}")
            else:
                assert mine == value
    return ours, theirs


def _single(shape=(6, 4), dtype=torch.float64):
    gen = torch.Generator().manual_seed(7)
    init = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    return lambda: [init.clone().requires_grad_()]


# fused=None: the default (the C kernel on CPU); fused=False: the reference path
@pytest.mark.parametrize("fused", [None, False], ids=["default", "reference"])
@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=IDS)
def test_parity_single_tensor(name, kwargs, fused):
    _run_pair(name, kwargs, _single(), fused=fused)


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=IDS)
def test_parity_complex(name, kwargs):
    _run_pair(name, kwargs, _single(dtype=torch.complex128), steps=20)


@pytest.mark.parametrize("fused", [None, False], ids=["default", "reference"])
@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=IDS)
def test_parity_param_groups_and_tensor_lr(name, kwargs, fused):
    base_lr = kwargs.get("lr", 1e-2)

    def make():
        gen = torch.Generator().manual_seed(3)
        a = torch.randn(5, generator=gen, dtype=torch.float64).requires_grad_()
        b = torch.randn(2, 3, generator=gen, dtype=torch.float64).requires_grad_()
        c = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_()
        return [{"params": [a, b]},
                {"params": [c], "lr": torch.tensor(base_lr * 0.5, dtype=torch.float64)}]

    _run_pair(name, kwargs, make, steps=20, fused=fused)


SCHEDULERS = {
    "step": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5),
    "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20),
    # OneCycleLR also cycles momentum / beta1 every step where the optimizer has one.
    "onecycle": lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.05, total_steps=40,
        cycle_momentum="momentum" in o.defaults or "betas" in o.defaults),
}


@pytest.mark.parametrize("sched", sorted(SCHEDULERS))
@pytest.mark.parametrize("name,kwargs", TORCH_CASES[::3], ids=IDS[::3])
def test_parity_with_lr_scheduler(name, kwargs, sched):
    ours, theirs = _run_pair(name, kwargs, _single(), steps=30, scheduler=SCHEDULERS[sched])
    assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW"])
def test_parity_training_a_real_model(name):
    """A small MLP on scikit-learn's digits: the whole training run is identical."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X[:256] / 16.0, dtype=torch.float64)
    y = torch.tensor(y[:256])
    losses = {}
    for lib in (adaptim, torch.optim):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                    torch.nn.Linear(32, 10)).double()
        kw = {"lr": 0.05} if name != "Adadelta" else {}
        if lib is torch.optim:
            kw["foreach"] = False
        opt = getattr(lib, name)(model.parameters(), **kw)
        curve = []
        for i in range(30):
            idx = slice((i * 32) % 256, (i * 32) % 256 + 32)
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        losses[lib.__name__] = curve
    assert losses["adaptim"] == pytest.approx(losses["torch.optim"], rel=1e-9)
    assert losses["adaptim"][-1] < losses["adaptim"][0]


def test_closure_is_called_and_loss_returned():
    p = torch.ones(2, requires_grad=True)
    opt = adaptim.Adam([p])
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [1] and loss.item() == 2.0
    assert p.detach().tolist() == pytest.approx([1 - 1e-3, 1 - 1e-3], rel=1e-6)


def test_params_without_grad_are_left_alone():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    opt = adaptim.RMSprop([a, b])
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b, torch.ones(2)) and len(opt.state[b]) == 0
    assert not torch.equal(a, torch.ones(2))
