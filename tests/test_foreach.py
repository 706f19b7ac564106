"""The multi-tensor path (``foreach=True``; the default on CUDA): bit-identical to
torch.optim's ``foreach=True`` for every option set torch has, in float32 and float64, with
several dtypes in one group and complex parameters (its parity with the NumPy reference runs in
test_reference_parity.py); and composed with state_dtype, max_grad_norm and on_nonfinite."""

import pytest
import torch

import adaptim
from cases import all_cases, case_id, gradient_sequence, torch_supported

TORCH_CASES = [(n, kw) for n, kw in all_cases() if torch_supported(n, kw)]
TORCH_IDS = [case_id(*c) for c in TORCH_CASES]
ONLY_CASES = [(n, kw) for n, kw in all_cases() if not torch_supported(n, kw)]
ONLY_IDS = [case_id(*c) for c in ONLY_CASES]
SHAPES = [(6, 4), (5,), (2, 3, 2), (1,)]


def _params(dtypes, shapes=SHAPES, seed=7):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape, dtype in zip(shapes, dtypes):
        if dtype.is_complex:
            init = torch.randn(shape, generator=gen, dtype=torch.float64)
            init = torch.complex(init, torch.randn(shape, generator=gen, dtype=torch.float64))
        else:
            init = torch.randn(shape, generator=gen, dtype=torch.float64)
        out.append(init.to(dtype).requires_grad_())
    return out


def _clone(params):
    return [p.detach().clone().requires_grad_() for p in params]


def _assert_bit_identical(ours, theirs, ours_p, theirs_p):
    for a, b in zip(ours_p, theirs_p):
        assert torch.equal(a, b), f"parameter differs: max |Δ| {(a - b).abs().max()}"
        assert set(ours.state[a]) == set(theirs.state[b])
        for key, value in theirs.state[b].items():
            mine = ours.state[a][key]
            assert mine.dtype == value.dtype, key
            assert torch.equal(mine, value), f"state {key} differs"


def _run_against_torch(name, kwargs, dtypes, steps=20, adaptim_kw=None):
    ours_p = _params(dtypes)
    theirs_p = _clone(ours_p)
    ours = getattr(adaptim, name)(ours_p, foreach=True, **kwargs, **(adaptim_kw or {}))
    theirs = getattr(torch.optim, name)(theirs_p, foreach=True, **kwargs)
    grads = [gradient_sequence(p.shape, steps, dtype=p.dtype, seed=i)
             for i, p in enumerate(ours_p)]
    for t in range(steps):
        for i, (a, b) in enumerate(zip(ours_p, theirs_p)):
            a.grad, b.grad = grads[i][t].clone(), grads[i][t].clone()
        ours.step()
        theirs.step()
        _assert_bit_identical(ours, theirs, ours_p, theirs_p)
    return ours, ours_p


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=TORCH_IDS)
def test_bit_identical_to_torch_foreach(name, kwargs, dtype):
    _run_against_torch(name, kwargs, [dtype] * len(SHAPES))


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=TORCH_IDS)
def test_mixed_dtypes_in_one_group(name, kwargs):
    _run_against_torch(name, kwargs, [torch.float32, torch.float64, torch.bfloat16,
                                      torch.float64], steps=8)


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=TORCH_IDS)
def test_complex_parameters(name, kwargs):
    _run_against_torch(name, kwargs, [torch.complex64, torch.float32, torch.complex128,
                                      torch.complex64], steps=8)


@pytest.mark.parametrize("name,kwargs", ONLY_CASES, ids=ONLY_IDS)
def test_adaptim_options_match_the_per_tensor_rule(name, kwargs):
    # same operations in the same order as the per-tensor rule: equal to an ulp in float32
    def run(foreach):
        params = _params([torch.float32] * len(SHAPES))
        opt = getattr(adaptim, name)(params, foreach=foreach, fused=None if foreach else False,
                                     **kwargs)
        for t in range(10):
            for i, p in enumerate(params):
                p.grad = gradient_sequence(p.shape, 10, dtype=p.dtype, seed=i)[t]
            opt.step()
        return params, opt

    ours, opt_f = run(True)
    ref, opt_r = run(False)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-7)
        for key, value in opt_r.state[b].items():
            torch.testing.assert_close(opt_f.state[a][key], value, rtol=2e-6, atol=1e-7)


def test_first_sgd_momentum_step_makes_the_buffers():
    # v_1 = g_1 for every tensor, also when only some tensors have a gradient on a step
    ours_p, theirs_p = _params([torch.float64] * 3), _params([torch.float64] * 3)
    ours = adaptim.SGD(ours_p, lr=0.1, momentum=0.9, nesterov=True, foreach=True)
    theirs = torch.optim.SGD(theirs_p, lr=0.1, momentum=0.9, nesterov=True, foreach=True)
    for t in range(4):
        for i, (a, b) in enumerate(zip(ours_p, theirs_p)):
            g = None if (i == 2 and t < 2) else torch.full_like(a, 0.1 * (t + 1) + i)
            a.grad, b.grad = g, None if g is None else g.clone()
        grads_before = [None if a.grad is None else a.grad.clone() for a in ours_p]
        ours.step()
        theirs.step()
        _assert_bit_identical(ours, theirs, ours_p, theirs_p)
        for a, g in zip(ours_p, grads_before):  # nesterov leaves the gradients alone
            assert (a.grad is None and g is None) or torch.equal(a.grad, g)
    assert "momentum_buffer" in ours.state[ours_p[2]]


def test_resolution_of_foreach_and_fused():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        adaptim.Adam([p], foreach=True, fused=True)
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        adaptim.Adam([p]).add_param_group({"params": [torch.zeros(2, requires_grad=True)],
                                           "foreach": True, "fused": True})
    group = {"foreach": None, "fused": None}
    grads = [torch.zeros(3)]
    # on CPU the default is torch.optim's CPU default (per tensor) where the C kernel can't run
    assert not adaptim.Adam._foreach_chosen(group, [p], grads)
    assert adaptim.Adam._foreach_chosen({**group, "foreach": True}, [p], grads)
    assert not adaptim.Adam._foreach_chosen({**group, "foreach": False}, [p], grads)
    assert not adaptim.Adam._foreach_chosen({**group, "foreach": True, "differentiable": True},
                                            [p], grads)
    sparse = [torch.zeros(3).to_sparse()]
    assert not adaptim.Adam._foreach_chosen({**group, "foreach": True}, [p], sparse)


@pytest.mark.parametrize("name,kwargs", [("Adam", dict(lr=1e-2, amsgrad=True)),
                                         ("SGD", dict(lr=0.1, momentum=0.9)),
                                         ("RMSprop", dict(lr=1e-3, centered=True, momentum=0.5)),
                                         ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
                                         ("Adadelta", dict(weight_decay=0.1))])
def test_state_dtype_runs_the_float32_rule_on_bfloat16_state(name, kwargs):
    # state stored in bfloat16: each step widens it, runs the foreach rule in float32 and
    # rounds it back once, like the per-tensor path on the same state
    def run(foreach):
        params = _params([torch.float32] * len(SHAPES))
        opt = getattr(adaptim, name)(params, foreach=foreach, fused=None if foreach else False,
                                     state_dtype=torch.bfloat16, **kwargs)
        for t in range(6):
            for i, p in enumerate(params):
                p.grad = gradient_sequence(p.shape, 6, dtype=p.dtype, seed=i)[t]
            opt.step()
        return params, opt

    ours, opt_f = run(True)
    ref, opt_r = run(False)
    for a, b in zip(ours, ref):
        for key, value in opt_f.state[a].items():
            if key != "step":
                assert value.dtype == torch.bfloat16, key
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_max_grad_norm_clips_before_the_foreach_rule():
    ours_p, theirs_p = _params([torch.float32] * 4), _params([torch.float32] * 4)
    ours = adaptim.Adam(ours_p, lr=1e-2, foreach=True, max_grad_norm=0.5)
    theirs = torch.optim.Adam(theirs_p, lr=1e-2, foreach=True)
    for t in range(5):
        for i, (a, b) in enumerate(zip(ours_p, theirs_p)):
            a.grad = gradient_sequence(a.shape, 5, dtype=a.dtype, seed=i)[t] * 10
            b.grad = a.grad.clone()
        ours.step()
        torch.nn.utils.clip_grad_norm_(theirs_p, 0.5)
        theirs.step()
        _assert_bit_identical(ours, theirs, ours_p, theirs_p)


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nonfinite_gradient_leaves_everything_untouched(policy):
    params = _params([torch.float32] * 4)
    opt = adaptim.RMSprop(params, lr=1e-2, momentum=0.9, foreach=True, on_nonfinite=policy)
    for i, p in enumerate(params):
        p.grad = torch.ones_like(p) * (i + 1)
    opt.step()
    before = [p.detach().clone() for p in params]
    state_before = {k: v.clone() for k, v in opt.state[params[0]].items()}
    params[1].grad = torch.full_like(params[1], float("nan"))
    if policy == "raise":
        with pytest.raises(adaptim.NonFiniteGradientError):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1
    for p, b in zip(params, before):
        assert torch.equal(p, b)
    for k, v in opt.state[params[0]].items():
        assert torch.equal(v, state_before[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=TORCH_IDS)
def test_cuda_default_is_torch_foreach(name, kwargs):
    # fused=None on CUDA tensors: the multi-tensor rule, torch.optim's CUDA default, bit for bit
    params = [p.detach().cuda().requires_grad_() for p in _params([torch.float32] * 4)]
    theirs_p = _clone(params)
    ours = getattr(adaptim, name)(params, **kwargs)
    theirs = getattr(torch.optim, name)(theirs_p, **kwargs)
    for t in range(5):
        for i, (a, b) in enumerate(zip(params, theirs_p)):
            a.grad = gradient_sequence(a.shape, 5, seed=i)[t].float().cuda()
            b.grad = a.grad.clone()
        ours.step()
        theirs.step()
        _assert_bit_identical(ours, theirs, params, theirs_p)
