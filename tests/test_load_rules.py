"""What load_state_dict keeps and converts, and fused=True where no kernel can run:

- execution options (fused, foreach, differentiable, capturable) keep the optimizer's own
  values: a torch.optim checkpoint (fused=None) never switches a fused=False optimizer to the
  kernel;
- a numeric ``step`` (the older torch.optim format) becomes a tensor, on every path;
- ``fused=True`` on parameters no adaptim kernel takes raises torch.optim's RuntimeError.
"""

from __future__ import annotations

import copy

import pytest
import torch

import adaptim

NAMES = ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW")
SETTINGS = {"SGD": dict(lr=0.1, momentum=0.9)}


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    return model.to(dtype)


def _steps(model, opt, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        opt.zero_grad()
        x = torch.randn(8, 4, generator=gen, dtype=next(model.parameters()).dtype)
        model(x).square().mean().backward()
        opt.step()


@pytest.mark.parametrize("name", NAMES)
def test_torch_checkpoint_keeps_the_constructors_execution_options(name):
    torch_model = _model()
    torch_opt = getattr(torch.optim, name)(torch_model.parameters(), **SETTINGS.get(name, {}))
    _steps(torch_model, torch_opt, 3, seed=1)
    checkpoint = copy.deepcopy(torch_opt.state_dict())
    assert checkpoint["param_groups"][0]["foreach"] is None

    model = copy.deepcopy(torch_model)
    opt = getattr(adaptim, name)(model.parameters(), fused=False, foreach=False,
                                 **SETTINGS.get(name, {}))
    opt.load_state_dict(checkpoint)
    group = opt.param_groups[0]
    assert group["fused"] is False and group["foreach"] is False
    assert group["differentiable"] is False
    # ... so the resumed run stays on torch's bits
    _steps(torch_model, torch_opt, 3, seed=2)
    _steps(model, opt, 3, seed=2)
    for a, b in zip(model.parameters(), torch_model.parameters()):
        assert torch.equal(a, b)


def test_adaptim_checkpoint_keeps_the_loading_optimizers_execution_options():
    model = _model()
    saved = adaptim.Adam(model.parameters(), fused=True)
    _steps(model, saved, 2, seed=1)
    fresh = adaptim.Adam(model.parameters(), fused=False)
    fresh.load_state_dict(saved.state_dict())
    assert fresh.param_groups[0]["fused"] is False
    back = adaptim.Adam(model.parameters(), fused=None, differentiable=False)
    checkpoint = fresh.state_dict()
    checkpoint["param_groups"][0].update(differentiable=True, foreach=True)
    back.load_state_dict(checkpoint)
    assert back.param_groups[0]["fused"] is None
    assert back.param_groups[0]["differentiable"] is False
    assert back.param_groups[0]["foreach"] is None
    # hyperparameters (what is computed) still come from the checkpoint
    checkpoint["param_groups"][0]["lr"] = 0.5
    back.load_state_dict(checkpoint)
    assert back.param_groups[0]["lr"] == 0.5


def _old_format(state_dict):
    """torch.optim's older checkpoint format: ``step`` a Python number."""
    state_dict = copy.deepcopy(state_dict)
    for state in state_dict["state"].values():
        if "step" in state:
            state["step"] = float(state["step"])
    return state_dict


PATHS = [dict(fused=False), dict(fused=None), dict(state_dtype=torch.bfloat16)]


@pytest.mark.parametrize("path", PATHS, ids=["fused=False", "default", "state_dtype=bf16"])
@pytest.mark.parametrize("name", [n for n in NAMES if n != "SGD"])
def test_numeric_step_from_an_old_checkpoint_loads_on_every_path(name, path):
    torch_model = _model()
    torch_opt = getattr(torch.optim, name)(torch_model.parameters())
    _steps(torch_model, torch_opt, 3, seed=1)
    checkpoint = _old_format(torch_opt.state_dict())

    model = copy.deepcopy(torch_model)
    opt = getattr(adaptim, name)(model.parameters(), **path)
    opt.load_state_dict(checkpoint)
    steps = [s["step"] for s in opt.state.values()]
    assert all(isinstance(s, torch.Tensor) and float(s) == 3.0 for s in steps)
    reference = getattr(torch.optim, name)(torch_model.parameters())
    reference.load_state_dict(checkpoint)  # torch.optim converts the number too
    _steps(torch_model, reference, 2, seed=2)
    _steps(model, opt, 2, seed=2)
    assert all(float(s["step"]) == 5.0 for s in opt.state.values())
    for a, b in zip(model.parameters(), torch_model.parameters()):
        if path == dict(fused=False):
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-3 if "state_dtype" in path else 1.3e-6,
                                       atol=1e-4 if "state_dtype" in path else 1e-5)


def test_numeric_step_survives_unpickling():
    model = _model()
    opt = adaptim.Adam(model.parameters(), fused=False)
    _steps(model, opt, 1, seed=1)
    state = opt.__getstate__()
    for s in state["state"].values():
        s["step"] = 1  # an int, as the oldest torch checkpoints
    opt.__setstate__(state)
    _steps(model, opt, 1, seed=2)
    assert all(float(s["step"]) == 2.0 for s in opt.state.values())


@pytest.mark.parametrize("name", NAMES)
def test_fused_true_on_a_device_no_kernel_serves_raises_torchs_error(name):
    regex = "`fused=True` requires all the params to be floating point Tensors of supported devices"

    def meta():
        p = torch.zeros(3, device="meta", requires_grad=True)
        p.grad = torch.zeros(3, device="meta")
        return p

    # adaptim refuses when the group is added (torch.optim: at the first step)
    with pytest.raises(RuntimeError, match=regex):
        getattr(adaptim, name)([meta()], fused=True)
    opt = getattr(adaptim, name)([torch.zeros(3, requires_grad=True)], fused=True)
    with pytest.raises(RuntimeError, match=regex):
        opt.add_param_group({"params": [meta()]})
    assert len(opt.param_groups) == 1  # nothing left behind
    if name in ("SGD", "Adagrad", "Adam", "AdamW"):  # torch's classes that take fused
        with pytest.raises(RuntimeError, match=regex):
            getattr(torch.optim, name)([meta()], fused=True).step()
    # the default (fused=None) runs the reference path on such tensors
    getattr(adaptim, name)([meta()]).step()
