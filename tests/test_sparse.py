"""Sparse gradients (nn.Embedding(sparse=True)): adaptim.SGD and adaptim.Adagrad take them with
torch.optim's semantics and bits, on every value of ``fused``; the other four raise torch's
error (tests/test_validation.py)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import adaptim

# index batches with repeats (a sparse gradient with duplicate indices, coalesced by the rule)
BATCHES = [[1, 2, 2, 7], [0, 7, 9], [2, 3, 3, 3, 8], [1, 2, 2, 7]]

SETTINGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=torch.tensor(0.1))),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.2, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, maximize=True)),
]


def _train(cls, kwargs, dtype, model=None):
    torch.manual_seed(0)
    model = model or torch.nn.Embedding(10, 3, sparse=True).to(dtype)
    opt = cls(model.parameters(), **copy.deepcopy(kwargs))
    for batch in BATCHES:
        opt.zero_grad()
        out = model(torch.tensor(batch))
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum().backward()
        assert model.weight.grad.is_sparse
        opt.step()
    return model, opt


def _state(opt):
    return [{k: (v.to_dense() if v.is_sparse else v) for k, v in s.items()}
            for s in opt.state.values()]


@pytest.mark.parametrize("fused", [False, None, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,kwargs", SETTINGS, ids=[f"{n}-{'-'.join(k)}" for n, k in SETTINGS])
def test_sparse_gradients_match_torch_bit_for_bit(name, kwargs, dtype, fused):
    theirs, torch_opt = _train(getattr(torch.optim, name), kwargs, dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours, opt = _train(getattr(adaptim, name), {**kwargs, "fused": fused}, dtype)
    assert torch.equal(ours.weight, theirs.weight)
    for a, b in zip(_state(opt), _state(torch_opt), strict=True):
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    # fused=True cannot run a kernel on a sparse gradient: it says so (once per process)
    said = [w for w in caught if "sparse gradients take the reference path" in str(w.message)]
    assert len(said) <= (1 if fused else 0)


def test_sparse_fused_true_warns_once():
    adaptim._base._sparse_fused_warned = False
    with pytest.warns(RuntimeWarning, match="no fused kernel takes sparse gradients"):
        _train(adaptim.SGD, dict(lr=0.1, fused=True), torch.float32)


def test_sparse_adagrad_with_weight_decay_raises_torchs_error():
    for cls in (torch.optim.Adagrad, adaptim.Adagrad):
        with pytest.raises(RuntimeError, match="weight_decay option is not compatible with "
                                               "sparse gradients"):
            _train(cls, dict(lr=0.1, weight_decay=0.1), torch.float32)


def test_sparse_gradient_state_dict_round_trip_into_torch():
    _, opt = _train(adaptim.Adagrad, dict(lr=0.1), torch.float64)
    model = torch.nn.Embedding(10, 3, sparse=True).double()
    torch_opt = torch.optim.Adagrad(model.parameters(), lr=0.1)
    torch_opt.load_state_dict(opt.state_dict())
    (own,) = opt.state.values()
    assert torch.equal(torch_opt.state[model.weight]["sum"], own["sum"])


@pytest.mark.parametrize("option", [dict(max_grad_norm=0.5), dict(on_nonfinite="skip")])
def test_clipping_and_nonfinite_policy_see_sparse_gradients(option):
    model = torch.nn.Embedding(10, 3, sparse=True).double()
    ref = copy.deepcopy(model)
    opt = adaptim.SGD(model.parameters(), lr=1.0, **option)
    torch_opt = torch.optim.SGD(ref.parameters(), lr=1.0)
    for m in (model, ref):
        (m(torch.tensor([1, 2, 2])) * 3.0).sum().backward()
    if "max_grad_norm" in option:
        # clip_grad_norm_ on the coalesced gradient, then torch's step
        g = ref.weight.grad.coalesce()
        norm = g._values().norm()
        ref.weight.grad = g * min(0.5 / (float(norm) + 1e-6), 1.0)
    else:
        model.weight.grad = torch.sparse_coo_tensor([[1]], [[float("nan")] * 3], (10, 3),
                                                    dtype=torch.float64)
    before = model.weight.detach().clone()
    opt.step()
    if "max_grad_norm" in option:
        torch_opt.step()
        torch.testing.assert_close(model.weight, ref.weight, rtol=0, atol=1e-15)
    else:
        assert opt.skipped_steps == 1 and torch.equal(model.weight, before)
