"""differentiable=True: gradients flow through step() to the parameters' history, the
gradients, the state and tensor hyperparameters, as in torch.optim's differentiable mode.

Checked as torch checks its own optimizers (torch.autograd.gradcheck through one step w.r.t.
parameters, gradients and state; through two steps w.r.t. a tensor lr, betas or weight decay),
and against torch.optim's differentiable mode bit for bit: the step's results and the gradients
of those results w.r.t. every input.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import adaptim

F64 = dict(dtype=torch.float64)


def _state(name, gen):
    """Random state of a 10-element parameter, as torch's differentiable tests use."""
    rand = lambda scale=1.0: (scale * torch.rand(10, generator=gen, **F64)).requires_grad_()
    step = torch.tensor(10.0, **F64)  # a count, not a continuous variable: no gradient
    return {
        "SGD": lambda: {"momentum_buffer": rand()},
        "Adagrad": lambda: {"step": step, "sum": rand()},
        "RMSprop": lambda: {"step": step, "square_avg": rand(), "momentum_buffer": rand(),
                            "grad_avg": rand(1e-2)},  # small: E[g²] − E[g]² stays > 0
        "Adadelta": lambda: {"step": step, "square_avg": rand(), "acc_delta": rand()},
        "Adam": lambda: {"step": step, "exp_avg": rand(), "exp_avg_sq": rand(),
                         "max_exp_avg_sq": rand()},
        "AdamW": lambda: {"step": step, "exp_avg": rand(), "exp_avg_sq": rand(),
                          "max_exp_avg_sq": rand()},
    }[name]()


# torch's own differentiable test settings, then adaptim's options in differentiable mode
CASES = [
    ("SGD", dict(lr=0.9, momentum=0.9)),
    ("SGD", dict(lr=0.9, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict(lr=0.9, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.9, lr_decay=0.1, eps_in_sqrt=True)),
    ("RMSprop", dict(lr=0.9, maximize=True, momentum=0.9, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.9, momentum=0.9, eps_in_sqrt=True, lr_in_momentum=True)),
    ("RMSprop", dict(lr=0.9)),
    ("Adadelta", dict(lr=0.9, weight_decay=0.1)),
    ("Adam", dict(lr=0.9, amsgrad=True)),
    ("Adam", dict(lr=0.9, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.9, eps_in_sqrt=True, eps=1e-3)),
    ("Adam", dict(lr=0.9, eps_hat=True)),
    ("Adam", dict(lr=0.9, bias_correction=False)),
    ("AdamW", dict(lr=0.9, amsgrad=True)),
]
ADAPTIM_ONLY = ("eps_in_sqrt", "eps_hat", "bias_correction", "lr_in_momentum")


def _one_step(cls, kwargs, p, grad, state):
    """One differentiable step from the given parameter, gradient and state; returns the new
    parameter and every state tensor that requires grad."""
    p = p.clone()
    p.grad = grad
    opt = cls([p], **kwargs, differentiable=True)
    opt.state[p].update({k: v.clone() for k, v in state.items()})
    opt.step()
    return (p, *[v for v in opt.state[p].values() if v.requires_grad])


def _inputs(name, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(10, generator=gen, **F64).requires_grad_()
    grad = torch.rand(10, generator=gen, **F64).requires_grad_()
    return p, grad, _state(name, gen)


def _id(case):
    name, kw = case
    return f"{name}-{'-'.join(kw)}"


@pytest.mark.parametrize("name,kwargs", CASES, ids=[_id(c) for c in CASES])
def test_gradcheck_one_step(name, kwargs):
    p, grad, state = _inputs(name)
    keys = list(state)
    fn = lambda p, g, *values: _one_step(getattr(adaptim, name), kwargs, p, g,
                                         dict(zip(keys, values)))
    assert gradcheck(fn, (p, grad, *state.values()))


TORCH_CASES = [c for c in CASES if not any(k in c[1] for k in ADAPTIM_ONLY)]


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=[_id(c) for c in TORCH_CASES])
def test_one_step_equals_torch_differentiable_mode(name, kwargs):
    p, grad, state = _inputs(name)
    inputs = (p, grad, *[v for v in state.values() if v.requires_grad])
    results = []
    for cls in (getattr(adaptim, name), getattr(torch.optim, name)):
        out = _one_step(cls, kwargs, p, grad, state)
        weights = [torch.linspace(-1, 1, o.numel(), **F64).view_as(o) for o in out]
        total = sum((o * w).sum() for o, w in zip(out, weights))
        results.append((out, torch.autograd.grad(total, inputs)))
    (ours, our_grads), (theirs, their_grads) = results
    for a, b in zip((*ours, *our_grads), (*theirs, *their_grads), strict=True):
        assert torch.equal(a, b)


def _two_steps(cls, kwargs, p, hyper):
    """Two steps on a quadratic loss with hyperparameters ``hyper`` (tensors requiring grad);
    returns the loss after the second step (a function of the hyperparameters)."""
    p = p.clone()
    kwargs = dict(kwargs, **hyper)
    if "beta1" in kwargs:
        kwargs["betas"] = (kwargs.pop("beta1"), kwargs.pop("beta2"))
    opt = cls([p], **kwargs, differentiable=True)
    target = torch.linspace(-1, 1, p.numel(), **F64)
    for _ in range(2):
        loss = ((p - target) ** 2).sum()
        (g,) = torch.autograd.grad(loss, p, create_graph=True)
        p.grad = g
        opt.step()
    return ((p - target) ** 2).sum()


# Settings where torch.optim's differentiable mode backpropagates through two steps (with SGD
# momentum or AMSGrad it saves a state tensor that the next step updates in place, in torch and
# in adaptim alike).
HYPER = [
    ("SGD", dict(), dict(lr=0.05)),
    ("SGD", dict(lr=0.05), dict(weight_decay=0.1)),
    ("Adam", dict(), dict(lr=0.01)),
    ("Adam", dict(), dict(weight_decay=0.5)),
    ("Adam", dict(lr=0.01), dict(beta1=0.8, beta2=0.95)),
    ("AdamW", dict(weight_decay=0.1), dict(lr=0.01)),
]


@pytest.mark.parametrize("name,kwargs,hyper", HYPER,
                         ids=[f"{n}-{'-'.join(h)}" for n, _, h in HYPER])
def test_gradcheck_through_two_steps_wrt_tensor_hyperparameters(name, kwargs, hyper):
    p = torch.rand(10, generator=torch.Generator().manual_seed(2), **F64).requires_grad_()
    values = [torch.tensor(v, **F64, requires_grad=True) for v in hyper.values()]
    fn = lambda p, *vs: _two_steps(getattr(adaptim, name), kwargs, p, dict(zip(hyper, vs)))
    assert gradcheck(fn, (p, *values))
    # and the same loss and hypergradients as torch.optim's differentiable mode, bit for bit
    results = []
    for cls in (getattr(adaptim, name), getattr(torch.optim, name)):
        loss = _two_steps(cls, kwargs, p, dict(zip(hyper, values)))
        results.append((loss, *torch.autograd.grad(loss, (p, *values))))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_differentiable_refuses_what_torch_refuses():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="`fused` does not support `differentiable`"):
        adaptim.Adam([p], fused=True, differentiable=True)
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        adaptim.RMSprop([p], fused=True, foreach=True)
    # a step counter that requires grad
    q = p.clone()
    q.grad = torch.ones(3)
    opt = adaptim.Adam([q], differentiable=True)
    opt.state[q]["step"] = torch.tensor(0.0, requires_grad=True)
    opt.state[q]["exp_avg"] = torch.zeros(3)
    opt.state[q]["exp_avg_sq"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match="`requires_grad` is not supported for `step`"):
        opt.step()


def test_only_differentiable_steps_record_a_graph():
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    adaptim.Adam([p], fused=False).step()  # under no_grad: a leaf stays a leaf
    assert p.grad_fn is None
    q = torch.ones(3).requires_grad_().clone()
    q.grad = torch.ones(3)
    adaptim.Adam([q], differentiable=True).step()
    assert q.grad_fn.name() == "AddcdivBackward0"
