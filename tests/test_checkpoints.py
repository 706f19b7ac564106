"""state_dict round trips: torch.optim -> adaptim and adaptim -> torch.optim continue training
identically; mismatched checkpoints raise and leave the optimizer exactly as it was."""

import copy
import io

import pytest
import torch

import adaptim
from cases import all_cases, case_id, gradient_sequence, torch_supported

TORCH_CASES = [(n, kw) for n, kw in all_cases() if torch_supported(n, kw)]


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=gen, dtype=torch.float64).requires_grad_(),
            torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_()]


def _train(opt, params, grads, start, stop):
    for t in range(start, stop):
        for i, p in enumerate(params):
            p.grad = grads[i][t].clone()
        opt.step()


def _through_disk(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("direction", ["torch->adaptim", "adaptim->torch"])
@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=[case_id(*c) for c in TORCH_CASES])
def test_checkpoint_moves_between_torch_and_adaptim(name, kwargs, direction):
    first, second = ((torch.optim, adaptim) if direction == "torch->adaptim"
                     else (adaptim, torch.optim))
    extra = lambda lib: {"foreach": False} if lib is torch.optim else {}
    grads = [gradient_sequence(p.shape, 30, seed=i) for i, p in enumerate(_params())]

    # Reference: 30 steps in `second` alone.
    ref_params = _params()
    ref = getattr(second, name)(ref_params, **kwargs, **extra(second))
    _train(ref, ref_params, grads, 0, 30)

    # 15 steps in `first`, checkpoint through torch.save/torch.load, 15 steps in `second`.
    params = _params()
    opt1 = getattr(first, name)(params, **kwargs, **extra(first))
    _train(opt1, params, grads, 0, 15)
    opt2 = getattr(second, name)(params, **kwargs, **extra(second))
    opt2.load_state_dict(_through_disk(opt1.state_dict()))
    _train(opt2, params, grads, 15, 30)
    for a, b in zip(params, ref_params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name,kwargs", all_cases(), ids=[case_id(*c) for c in all_cases()])
def test_adaptim_round_trip_keeps_options(name, kwargs):
    params = _params()
    opt = getattr(adaptim, name)(params, **kwargs)
    grads = [gradient_sequence(p.shape, 3, seed=i) for i, p in enumerate(params)]
    _train(opt, params, grads, 0, 3)
    sd = _through_disk(opt.state_dict())
    fresh = getattr(adaptim, name)(_params())  # default options: the checkpoint brings its own
    fresh.load_state_dict(sd)
    for key, value in opt.param_groups[0].items():
        if key != "params":
            assert fresh.param_groups[0][key] == value, key


def _snapshot(opt):
    return copy.deepcopy(opt.state_dict())


def _assert_same(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for pid in a["state"]:
        for key, value in a["state"][pid].items():
            other = b["state"][pid][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def _stepped(name="Adam", **kwargs):
    params = _params()
    opt = getattr(adaptim, name)(params, **kwargs)
    grads = [gradient_sequence(p.shape, 2, seed=i) for i, p in enumerate(params)]
    _train(opt, params, grads, 0, 2)
    return opt


def _mutations():
    def wrong_shape(sd):
        sd["state"][0]["exp_avg"] = torch.zeros(3, 4, dtype=torch.float64)

    def extra_group(sd):
        sd["param_groups"].append(copy.deepcopy(sd["param_groups"][0]))

    def group_size(sd):
        sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"][:1]

    def missing_key(sd):
        del sd["state"][0]["exp_avg_sq"]

    def foreign_key(sd):
        sd["state"][0]["momentum_buffer"] = torch.zeros(4, 3, dtype=torch.float64)

    def nan_lr(sd):
        sd["param_groups"][0]["lr"] = float("nan")

    def bad_betas(sd):
        sd["param_groups"][0]["betas"] = (0.9, 1.5)

    def unknown_param(sd):
        sd["state"][99] = sd["state"][0]

    def not_tensor(sd):
        sd["state"][0]["exp_avg"] = "garbage"

    def not_a_dict(sd):
        return [1, 2, 3]

    def no_groups(sd):
        del sd["param_groups"]

    return {f.__name__: f for f in [wrong_shape, extra_group, group_size, missing_key,
                                     foreign_key, nan_lr, bad_betas, unknown_param, not_tensor,
                                     not_a_dict, no_groups]}


MUTATIONS = _mutations()


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mismatched_checkpoint_raises_and_changes_nothing(mutation):
    opt = _stepped()
    sd = copy.deepcopy(opt.state_dict())
    sd = MUTATIONS[mutation](sd) or sd
    before = _snapshot(opt)
    with pytest.raises(ValueError):
        opt.load_state_dict(sd)
    _assert_same(before, _snapshot(opt))


def test_torch_silently_loads_wrong_shapes_but_adaptim_refuses():
    """The motivating bug: torch.optim accepts a state tensor of the wrong shape."""
    opt = _stepped()
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["exp_avg"] = torch.zeros(12, dtype=torch.float64)
    t = torch.optim.Adam(_params())
    t.load_state_dict(sd)  # torch: no error
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(sd)


def test_checkpoint_from_another_algorithm_is_refused():
    sgd = _stepped("SGD", lr=0.1, momentum=0.9)
    adam = _stepped("Adam")
    with pytest.raises(ValueError):
        adam.load_state_dict(sgd.state_dict())
