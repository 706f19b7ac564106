"""torch.optim machinery keeps working on adaptim optimizers: hooks, named parameters,
zero_grad, deepcopy, a model's whole training loop."""

import copy

import torch

import adaptim


def test_step_hooks_run_in_order():
    m = torch.nn.Linear(3, 2)
    opt = adaptim.RMSprop(m.parameters())
    calls = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert calls == ["pre", "post"]


def test_named_parameters_round_trip_into_torch():
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = adaptim.Adam(m.named_parameters(), lr=1e-2)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    other = torch.optim.Adam(torch.nn.Linear(3, 2).named_parameters())
    other.load_state_dict(opt.state_dict())
    assert other.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]
    assert torch.equal(other.state_dict()["state"][0]["exp_avg"], opt.state[m.weight]["exp_avg"])


def test_zero_grad_sets_none_and_deepcopy_is_independent():
    p = torch.ones(2, requires_grad=True)
    opt = adaptim.Adagrad([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    clone = copy.deepcopy(opt)
    opt.zero_grad()
    assert p.grad is None
    clone_p = clone.param_groups[0]["params"][0]
    assert clone.state[clone_p]["sum"].tolist() == [1.0, 1.0]
    assert clone_p is not p


def test_float32_defaults_and_step_dtype_match_torch():
    p1, p2 = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    ours, theirs = adaptim.Adam([p1]), torch.optim.Adam([p2])
    for p in (p1, p2):
        p.grad = torch.full((3,), 0.5)
    ours.step()
    theirs.step()
    assert ours.state[p1]["step"].dtype == theirs.state[p2]["step"].dtype
    assert torch.equal(p1, p2)
