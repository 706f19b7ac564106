"""adaptim.clip: parity with torch.nn.utils (bit for bit) and AGC against its formula."""

import math

import numpy as np
import pytest
import torch

import adaptim
from adaptim.clip import unitwise_norm


def _params(dtype=torch.float32, seed=0, scale=10.0, with_none=True):
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=g, dtype=dtype))
        p.grad = scale * torch.randn(shape, generator=g, dtype=dtype)
        params.append(p)
    if with_none:
        params.append(torch.nn.Parameter(torch.zeros(3, dtype=dtype)))  # grad None
    return params


def _twin(params):
    out = []
    for p in params:
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = None if p.grad is None else p.grad.clone()
        out.append(q)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("foreach", [None, False, True])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch_bitwise(dtype, norm_type, foreach, max_norm):
    ours, theirs = _params(dtype), None
    theirs = _twin(ours)
    n_ours = adaptim.clip_grad_norm_(ours, max_norm, norm_type, foreach=foreach)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type, foreach=foreach)
    assert n_ours.dtype == n_theirs.dtype and n_ours.shape == ()
    assert torch.equal(n_ours, n_theirs)
    for a, b in zip(ours, theirs):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)
    if max_norm == 0.5:  # clipped: the new global norm is max_norm (up to the 1e-6 guard)
        new = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.grad, norm_type) for p in ours if p.grad is not None]),
            norm_type)
        assert new.item() == pytest.approx(0.5, rel=1e-5)


def test_clip_grad_norm_below_threshold_leaves_grads_unchanged():
    params = _params(scale=1e-3)
    before = [p.grad.clone() for p in params if p.grad is not None]
    adaptim.clip_grad_norm_(params, 100.0)
    with_grads = [p for p in params if p.grad is not None]
    assert all(torch.equal(a, p.grad) for a, p in zip(before, with_grads))


def test_clip_grad_norm_single_tensor_and_empty():
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.full((4,), 3.0)
    norm = adaptim.clip_grad_norm_(p, 1.0)
    assert norm.item() == pytest.approx(6.0)
    assert torch.allclose(p.grad, torch.full((4,), 0.5), atol=1e-6)
    assert adaptim.clip_grad_norm_([], 1.0).item() == 0.0


def test_clip_grad_norm_nonfinite_like_torch():
    ours = _params()
    ours[0].grad[0, 0] = float("nan")
    theirs = _twin(ours)
    n1 = adaptim.clip_grad_norm_(ours, 1.0)
    n2 = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert math.isnan(n1.item()) and math.isnan(n2.item())
    for a, b in zip(ours, theirs):
        if a.grad is not None:
            assert torch.equal(a.grad.isnan(), b.grad.isnan()) and a.grad.isnan().all()
    with pytest.raises(RuntimeError, match="non-finite"):
        adaptim.clip_grad_norm_(_twin(theirs), 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("foreach", [None, False])
def test_clip_grad_value_matches_torch_bitwise(foreach):
    ours = _params()
    theirs = _twin(ours)
    assert adaptim.clip_grad_value_(ours, 2.5, foreach=foreach) is None
    torch.nn.utils.clip_grad_value_(theirs, 2.5, foreach=foreach)
    for a, b in zip(ours, theirs):
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad)
            assert a.grad.abs().max() <= 2.5


@pytest.mark.parametrize("call", [
    lambda ps: adaptim.clip_grad_norm_(ps, -1.0),
    lambda ps: adaptim.clip_grad_norm_(ps, float("nan")),
    lambda ps: adaptim.clip_grad_norm_(ps, 1.0, norm_type=0),
    lambda ps: adaptim.clip_grad_norm_(ps, 1.0, norm_type=-2.0),
    lambda ps: adaptim.clip_grad_value_(ps, -0.1),
    lambda ps: adaptim.adaptive_clip_grad_(ps, clipping=-0.01),
    lambda ps: adaptim.adaptive_clip_grad_(ps, eps=-1.0),
])
def test_bad_thresholds_raise_value_error(call):
    with pytest.raises(ValueError, match="Invalid"):
        call(_params())


def test_bad_threshold_type_raises_type_error():
    with pytest.raises(TypeError, match="max_norm"):
        adaptim.clip_grad_norm_(_params(), "1.0")


def _agc_reference(w: np.ndarray, g: np.ndarray, lam: float, eps: float) -> np.ndarray:
    """Brock et al. 2021 eq. (3), written per unit with NumPy."""
    out = g.copy()
    if w.ndim <= 1:
        units = [(Ellipsis,)]
    else:
        units = [(i,) for i in range(w.shape[0])]
    for u in units:
        wn = max(np.sqrt((w[u] ** 2).sum()), eps)
        gn = np.sqrt((g[u] ** 2).sum())
        if gn / wn > lam:
            out[u] = lam * wn / max(gn, 1e-6) * g[u]
    return out


@pytest.mark.parametrize("shape", [(6, 4), (5, 3, 3, 3), (7,), ()])
def test_adaptive_clip_grad_matches_formula(shape):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    if len(shape) >= 2:
        w[0].zero_()  # a zero unit: ‖W_i‖* = eps
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    if len(shape) >= 2:
        g[1] *= 1e-4  # a unit far below the threshold: must stay bit-identical
    p = torch.nn.Parameter(w.clone())
    p.grad = g.clone()
    adaptim.adaptive_clip_grad_([p], clipping=0.05, eps=1e-3)
    expected = _agc_reference(w.numpy(), g.numpy(), 0.05, 1e-3)
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-12, atol=0)
    if len(shape) >= 2:
        assert torch.equal(p.grad[1], g[1])
        ratio = unitwise_norm(p.grad) / unitwise_norm(w).clamp(min=1e-3)
        assert (ratio <= 0.05 * (1 + 1e-12)).all()
        assert not torch.equal(p.grad[2], g[2])  # unit-norm grads of randn vs 0.05: clipped


def test_adaptive_clip_grad_skips_params_without_grad():
    p = torch.nn.Parameter(torch.ones(3))
    adaptim.adaptive_clip_grad_([p])
    assert p.grad is None
