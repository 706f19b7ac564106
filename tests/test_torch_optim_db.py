"""torch's own OptimizerInfo database (``torch.testing._internal.common_optimizers.optim_db``),
run against adaptim's classes: every optimizer input and every error input of the installed
torch, so the next torch release's new cases are checked without editing this file.

- Each optimizer input (``optim_inputs_func("cpu")``, with torch's foreach / differentiable /
  fused variants) runs three steps on real and complex parameters. ``fused=False`` must equal
  torch.optim's for-loop bit for bit (parameters and every state tensor, float32 and float64,
  real parameters; complex ones within the tolerance below;
  in differentiable mode also the gradient of the result w.r.t. the parameters' history); the
  default path (``fused`` as given: the kernel where it suits) must match it within
  ``torch.testing.assert_close``'s default tolerance for the dtype (float32: rtol 1.3e-6,
  atol 1e-5; float64: rtol 1e-7, atol 1e-7).
- Each error input (``optim_error_inputs_func("cpu")``) raises torch's error type with a message
  matching torch's pattern (or warns, where torch warns).
- Inputs that torch's own CPU tests skip (capturable=True: no CPU step takes it) are refused at
  construction by adaptim, which is checked instead.
"""

from __future__ import annotations

import copy
import inspect
import warnings

import pytest
import torch

import adaptim

common_optimizers = pytest.importorskip(
    "torch.testing._internal.common_optimizers",
    reason="torch's test database needs the 'expecttest' package (the test extra)")

NAMES = ("SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW")
INFOS = {info.optim_cls.__name__: info for info in common_optimizers.optim_db
         if info.optim_cls.__name__ in NAMES}
DEVICE = "cpu"
STEPS = 3


def test_the_database_has_all_six():
    assert sorted(INFOS) == sorted(NAMES)


def _inputs():
    for name in NAMES:
        info = INFOS[name]
        for dtype in (torch.float32, torch.float64):
            for optim_input in common_optimizers._get_optim_inputs_including_global_cliquey_kwargs(
                    DEVICE, dtype, info):
                yield pytest.param(name, dtype, optim_input.kwargs,
                                   id=f"{name}-{str(dtype)[6:]}-{optim_input.desc}")


def _errors():
    for name in NAMES:
        for i, error_input in enumerate(
                INFOS[name].optim_error_inputs_func(device=DEVICE, dtype=torch.float32)):
            yield pytest.param(name, error_input,
                               id=f"{name}-{i}-{error_input.optimizer_error_input.desc}")


def _leaves(dtype, requires_grad):
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(5, 3, generator=gen, dtype=dtype)
    vec = torch.randn(4, generator=gen, dtype=dtype)
    cplx = torch.randn(4, generator=gen, dtype=dtype) + 1j * torch.randn(4, generator=gen,
                                                                         dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (real, vec, cplx)]


def _run(cls, kwargs, dtype):
    """STEPS steps of ``cls`` on fixed gradients; returns (params, state, grads of the final
    parameters' sum w.r.t. the initial parameters or None)."""
    differentiable = kwargs.get("differentiable", False)
    leaves = _leaves(dtype, requires_grad=differentiable)
    # differentiable steps update non-leaf tensors in place (as torch's own tests do)
    params = [t.clone() for t in leaves] if differentiable else leaves
    opt = cls(params, **copy.deepcopy(kwargs))
    gen = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        for p in params:
            g = torch.randn(p.shape, generator=gen, dtype=dtype)
            if p.is_complex():
                g = g + 1j * torch.randn(p.shape, generator=gen, dtype=dtype)
            p.grad = g
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # .grad of a non-leaf
            opt.step()
    history = None
    if differentiable:
        total = sum(torch.view_as_real(p).sum() if p.is_complex() else p.sum() for p in params)
        try:
            history = torch.autograd.grad(total, leaves)
        except RuntimeError as err:
            # torch's differentiable centered RMSprop and complex AMSGrad save a state tensor
            # that the next step updates in place: backward through several steps fails (in
            # torch.optim, and in adaptim, which uses torch's ops). One step works: gradcheck
            # in tests/test_differentiable.py.
            assert "modified by an inplace operation" in str(err)
            history = "modified in place"
    state = [{k: v.detach() if isinstance(v, torch.Tensor) else v
              for k, v in opt.state[p].items()} for p in params]
    return [p.detach() for p in params], state, history


def _compare(ours, theirs, exact):
    def same(a, b):
        # Complex tensors: torch adds weight decay in complex arithmetic, adaptim on the real
        # view (as all its other ops), which can round differently by an ulp.
        if exact and not a.is_complex():
            assert a.dtype == b.dtype and torch.equal(a, b), (a, b)
        else:
            torch.testing.assert_close(a, b)

    (p1, s1, h1), (p2, s2, h2) = ours, theirs
    for a, b in zip(p1, p2, strict=True):
        same(a, b)
    for a, b in zip(s1, s2, strict=True):
        assert set(a) == set(b)
        for key in a:
            if isinstance(b[key], torch.Tensor):
                same(a[key], b[key])
            else:
                assert a[key] == b[key], key
    if isinstance(h2, str):
        assert h1 == h2
    elif h2 is not None:
        for a, b in zip(h1, h2, strict=True):
            same(a, b)


@pytest.mark.parametrize("name,dtype,kwargs", list(_inputs()))
def test_optim_input_matches_torch(name, dtype, kwargs):
    cls, torch_cls = getattr(adaptim, name), getattr(torch.optim, name)
    if kwargs.get("capturable"):
        # torch.optim's CPU step refuses capturable=True (its CPU tests skip these inputs);
        # adaptim refuses it when the optimizer is built.
        with pytest.raises(ValueError, match="capturable"):
            cls(_leaves(dtype, False), **copy.deepcopy(kwargs))
        return
    loop = {**kwargs, "foreach": False}  # torch's for-loop: the reference bits
    if "fused" in inspect.signature(torch_cls).parameters:
        loop["fused"] = False
    expected = _run(torch_cls, loop, dtype)
    _compare(_run(cls, {**kwargs, "fused": False}, dtype), expected, exact=True)
    _compare(_run(cls, kwargs, dtype), expected, exact=False)  # the default path


@pytest.mark.parametrize("name,error_input", list(_errors()))
def test_error_input_raises_torchs_error(name, error_input):
    cls = getattr(adaptim, name)
    optim_input = error_input.optimizer_error_input
    kind, regex = error_input.error_type, error_input.error_regex
    expect = (pytest.warns(kind, match=regex) if issubclass(kind, Warning)
              else pytest.raises(kind, match=regex))
    params, kwargs = optim_input.params, copy.deepcopy(optim_input.kwargs)
    if params is None:
        params = [torch.nn.Parameter(torch.randn(2, 2))]
    if error_input.error_on == common_optimizers.OptimizerErrorEnum.CONSTRUCTION_ERROR:
        with expect:
            cls(params, **kwargs)
    else:
        opt = cls(params, **kwargs)
        with expect:
            opt.step()
