"""Every bad hyperparameter raises a clear error — including the ones torch.optim accepts."""

import math

import pytest
import torch

import adaptim

P = lambda: [torch.zeros(2, requires_grad=True)]
NAN, INF = math.nan, math.inf

BAD = [
    # (class, kwargs, message fragment)
    *[(n, dict(lr=v), "lr") for n in ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW")
      for v in (-1e-3, NAN, INF)],
    *[(n, dict(eps=v), "eps") for n in ("Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW")
      for v in (-1e-8, NAN, INF)],
    *[(n, dict(weight_decay=v), "weight_decay")
      for n in ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW") for v in (-0.1, NAN)],
    ("RMSprop", dict(alpha=1.5), "alpha"), ("RMSprop", dict(alpha=-0.1), "alpha"),
    ("RMSprop", dict(alpha=NAN), "alpha"),
    ("Adadelta", dict(rho=1.01), "rho"), ("Adadelta", dict(rho=-0.5), "rho"),
    ("Adam", dict(betas=(1.0, 0.999)), "beta1"), ("Adam", dict(betas=(0.9, 1.0)), "beta2"),
    ("AdamW", dict(betas=(-0.1, 0.999)), "beta1"), ("Adam", dict(betas=(0.9,)), "betas"),
    ("Adam", dict(betas=(0.9, NAN)), "beta2"),
    ("SGD", dict(momentum=-0.9), "momentum"), ("RMSprop", dict(momentum=-0.1), "momentum"),
    ("SGD", dict(momentum=NAN), "momentum"),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), "Nesterov"),
    ("SGD", dict(lr=0.1, nesterov=True), "Nesterov"),
    ("SGD", dict(dampening=NAN), "dampening"),
    ("Adagrad", dict(lr_decay=-1.0), "lr_decay"),
    ("Adagrad", dict(initial_accumulator_value=-0.1), "initial_accumulator_value"),
    ("RMSprop", dict(initial_accumulator_value=NAN), "initial_accumulator_value"),
    ("RMSprop", dict(convention="tf2"), "convention"),
    ("Adam", dict(eps_in_sqrt=True, eps_hat=True), "placement"),
    ("RMSprop", dict(centered="yes"), "centered"),
    ("Adam", dict(amsgrad=1), "amsgrad"),
    ("SGD", dict(maximize="no"), "maximize"),
    ("Adam", dict(differentiable=True, state_dtype=torch.bfloat16), "state_dtype"),
    ("RMSprop", dict(capturable=True), "capturable"),
    ("Adam", dict(lr=torch.tensor([1e-3, 1e-3])), "1-element"),
    ("Adam", dict(lr="0.001"), "real number"),
    ("Adam", dict(on_nonfinite="ignore"), "on_nonfinite"),
    ("Adam", dict(max_grad_norm=-1.0), "max_grad_norm"),
    ("RMSprop", dict(state_dtype=torch.int8), "state_dtype"),
]


@pytest.mark.parametrize("name,kwargs,fragment", BAD,
                         ids=[f"{n}-{k}" for n, k, _ in BAD])
def test_bad_hyperparameter_raises(name, kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        getattr(adaptim, name)(P(), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(lr=INF), dict(alpha=1.5), dict(weight_decay=INF),
                                    dict(momentum=INF)])
def test_torch_accepts_what_adaptim_refuses(kwargs):
    torch.optim.RMSprop(P(), **kwargs)  # silently accepted by torch.optim
    with pytest.raises(ValueError):
        adaptim.RMSprop(P(), **kwargs)


def test_bad_param_group_is_refused_and_not_added():
    opt = adaptim.Adam(P())
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)], "lr": -1.0})
    assert len(opt.param_groups) == 1


def test_group_values_are_validated_at_construction():
    with pytest.raises(ValueError, match="alpha"):
        adaptim.RMSprop([{"params": P()}, {"params": P(), "alpha": 2.0}])


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW"])
def test_edge_values_that_are_valid(name):
    # lr = 0, eps = 0 and the closed ends of [0, 1] are legal and must not raise.
    kwargs = {"lr": 0.0}
    if name in ("Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW"):
        kwargs["eps"] = 0.0
    if name == "RMSprop":
        kwargs.update(alpha=1.0, eps=1e-8)  # E[g²] stays 0: ε keeps the ratio finite
    if name == "Adadelta":
        kwargs["rho"] = 0.0
    opt = getattr(adaptim, name)(P(), **kwargs)
    p = opt.param_groups[0]["params"][0]
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(p.detach(), torch.zeros(2))  # lr = 0 moves nothing


@pytest.mark.parametrize("name", ["RMSprop", "Adadelta", "Adam", "AdamW"])
def test_sparse_gradients_get_torchs_error(name):
    # torch.optim takes sparse gradients in SGD and Adagrad only (tests/test_sparse.py)
    for cls in (getattr(torch.optim, name), getattr(adaptim, name)):
        emb = torch.nn.Embedding(10, 3, sparse=True)
        opt = cls(emb.parameters())
        emb(torch.tensor([1, 2])).sum().backward()
        with pytest.raises(RuntimeError, match=f"{name[:4]}.* does not support sparse gradients"):
            opt.step()


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW"])
def test_signature_matches_torch(name):
    """Every torch argument exists with the same default and the same position."""
    import inspect

    ours = inspect.signature(getattr(adaptim, name).__init__).parameters
    theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
    for key, param in theirs.items():
        assert key in ours, key
        if param.default is not inspect.Parameter.empty:
            assert ours[key].default == param.default, key
    positional = lambda ps: [k for k, p in ps.items()
                             if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional(ours)[:len(positional(theirs))] == positional(theirs)


@pytest.mark.parametrize("key", ["lr", "alpha", "eps", "initial_accumulator_value"])
def test_none_for_a_number_is_refused_as_torch_does(key):
    with pytest.raises(TypeError, match="real number"):
        adaptim.RMSprop(P(), **{key: None})


def test_a_group_cannot_carry_its_own_convention():
    opt = adaptim.RMSprop(P(), convention="keras")
    with pytest.raises(ValueError, match="convention cannot differ"):
        opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)],
                             "convention": "torch"})
    assert len(opt.param_groups) == 1
    # The same convention, or none at all, is fine.
    opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)], "convention": "keras"})
    assert opt.param_groups[1]["eps"] == 1e-7
