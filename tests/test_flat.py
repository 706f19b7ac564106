"""The flat layout (``flat=True``, adaptim._flat): a group's parameters, gradients and state as
views of one buffer per dtype, and one kernel call per run of parameters.

Every test trains a small real model twice from the same initial weights, once flat and once
with the default layout, applies the same actions to both (the ways a user can break the layout
among them), and asserts that parameters and checkpoints agree bit for bit (``torch.equal``:
values, so a zero gradient's sign is not compared). Where the flat side should have taken its
one-call path, the test asserts that too (the number of tensors in the group's call).
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import adaptim
from adaptim import _flat, _fused

pytestmark = pytest.mark.skipif(not _fused.kernel_available(), reason="no C compiler")

OPTIMIZERS = {  # name -> constructor settings (registry name, options)
    "adam": ("adam", {}),
    "adamw": ("adamw", {}),
    "rmsprop": ("rmsprop", {"centered": True, "momentum": 0.9}),
    "momentum": ("momentum", {"weight_decay": 1e-3}),
    "nesterov": ("nesterov", {}),
    "sgd": ("sgd", {}),
    "adagrad": ("adagrad", {}),
    "adadelta": ("adadelta", {}),
}


class Net(nn.Module):
    """Ten tensors: two linear layers, a layer norm, a side branch a step may skip, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.hidden = nn.Linear(16, 16)
        self.side = nn.Linear(16, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x, use_side=True):
        h = torch.tanh(self.norm(self.inp(x)))
        h = h + torch.relu(self.hidden(h))
        if use_side:
            h = h + self.side(h)
        return self.head(h)


DATA = torch.Generator().manual_seed(1)
X = torch.randn(64, 8, generator=DATA)
Y = torch.randint(0, 3, (64,), generator=DATA)


def net(dtype=torch.float32) -> Net:
    torch.manual_seed(0)
    return Net().to(dtype)


def loss_of(model, step, use_side=True):
    x = X[(step * 16) % 64:][:16].to(next(model.parameters()).dtype)
    y = Y[(step * 16) % 64:][:16]
    return nn.functional.cross_entropy(model(x, use_side), y)


class Run:
    """A model and its optimizer, trained step by step."""

    def __init__(self, name, flat, dtype=torch.float32, **kw):
        key, settings = OPTIMIZERS[name]
        self.model = net(dtype)
        self.opt = adaptim.create(key, self.model.parameters(), lr=1e-2, flat=flat,
                                  **{**settings, **kw})
        self.step_no = 0

    def step(self, set_to_none=True, use_side=True):
        self.opt.zero_grad(set_to_none=set_to_none)
        loss_of(self.model, self.step_no, use_side).backward()
        self.opt.step()
        self.step_no += 1

    def layout(self, group=0):
        return _flat._layout_of(self.opt, self.opt.param_groups[group])


def assert_same(a, b):
    pa, pb = list(a.model.parameters()), list(b.model.parameters())
    assert all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(pa, pb))
    sa, sb = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys(), i
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)


def buffer_of(t: torch.Tensor, buf: torch.Tensor) -> bool:
    """Whether ``t`` lies inside ``buf``'s memory."""
    lo = buf.data_ptr()
    hi = lo + buf.numel() * buf.element_size()
    return lo <= t.data_ptr() and t.data_ptr() + t.numel() * t.element_size() <= hi


# ---------------------------------------------------------------- parity
@pytest.mark.parametrize("set_to_none", [False, True])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_flat_equals_default_layout(name, set_to_none):
    flat, ref = Run(name, True), Run(name, False)
    for _ in range(6):
        flat.step(set_to_none)
        ref.step(set_to_none)
    assert_same(flat, ref)
    layout = flat.layout()
    assert len(layout.call[0]) == 1  # the whole group: one tensor
    assert layout.plans <= 2  # planned on the first step (and once more for SGD's buffer)
    bucket = layout.buckets[0]
    for p in flat.model.parameters():
        assert buffer_of(p, bucket.P)
        for value in flat.opt.state[p].values():
            assert any(buffer_of(value, buf) for buf in [*bucket.S.values(), bucket.T])
    assert flat.layout().plans == layout.plans


def test_options_parity_state_dtype_clipping_and_reference_path():
    for kw in ({"state_dtype": torch.bfloat16}, {"max_grad_norm": 0.05}, {"fused": False},
               {"foreach": True}, {"amsgrad": True}):
        flat, ref = Run("adam", True, **kw), Run("adam", False, **kw)
        for _ in range(4):
            flat.step(False)
            ref.step(False)
        assert_same(flat, ref)
        assert len(flat.layout().call[0]) == 1, kw


# ---------------------------------------------------------------- gradients
def test_backward_accumulates_into_the_buffer_in_place():
    flat, ref = Run("adam", True), Run("adam", False)
    flat.step(False)
    ref.step(False)
    flat.opt.zero_grad(set_to_none=False)
    ref.opt.zero_grad(set_to_none=False)
    bucket = flat.layout().buckets[0]
    views = [p.grad for p in flat.model.parameters()]
    assert all(g is v for g, v in zip(views, bucket.gviews))
    assert not bucket.G.any()
    loss_of(flat.model, 1).backward()
    loss_of(ref.model, 1).backward()
    for p, v, q in zip(flat.model.parameters(), views, ref.model.parameters()):
        assert p.grad is v and buffer_of(p.grad, bucket.G)  # still the view: no copy
        assert torch.equal(p.grad, q.grad)
    assert torch.equal(bucket.G, torch.cat([q.grad.reshape(-1) for q in ref.model.parameters()]))
    # a second backward without zero_grad adds to the buffer, as it adds to .grad
    loss_of(flat.model, 2).backward()
    loss_of(ref.model, 2).backward()
    assert all(p.grad is v for p, v in zip(flat.model.parameters(), views))
    assert all(torch.equal(p.grad, q.grad)
               for p, q in zip(flat.model.parameters(), ref.model.parameters()))
    flat.opt.step()
    ref.opt.step()
    assert_same(flat, ref)


def test_zero_grad_semantics():
    flat = Run("adam", True)
    params = list(flat.model.parameters())
    assert all(p.grad is None for p in params)  # no view where torch has no gradient
    flat.step()
    bucket = flat.layout().buckets[0]
    # set_to_none=True (torch's default): None, as torch.optim
    flat.opt.zero_grad()
    assert all(p.grad is None for p in params)
    loss_of(flat.model, 1).backward()
    fresh = [p.grad for p in params]
    assert not any(buffer_of(g, bucket.G) for g in fresh)
    flat.opt.step()  # copied into the buffer for the call
    assert torch.equal(bucket.G, torch.cat([g.reshape(-1) for g in fresh]))
    # set_to_none=False: zeros, and each gradient is its view of the buffer again
    flat.opt.zero_grad(set_to_none=False)
    assert all(p.grad is v for p, v in zip(params, bucket.gviews))
    assert not bucket.G.any()
    # a parameter without a gradient keeps None under set_to_none=False, as in torch
    params[0].grad = None
    flat.opt.zero_grad(set_to_none=False)
    assert params[0].grad is None and params[1].grad is bucket.gviews[1]
    # Module.zero_grad(set_to_none=False) zeroes each view in place: they stay the views
    loss_of(flat.model, 2).backward()
    flat.model.zero_grad(set_to_none=False)
    assert all(p.grad is v for p, v in zip(params[1:], bucket.gviews[1:]))
    assert not bucket.G.any()


def test_a_parameter_without_gradient_is_skipped_as_torch_skips_it():
    flat, ref = Run("adam", True), Run("adam", False)
    side = [flat.model.side.weight, flat.model.side.bias]
    uses = [True, True, False, True, False, False, True]
    for use in uses:
        flat.step(True, use_side=use)
        ref.step(True, use_side=use)
        assert_same(flat, ref)
    state = flat.opt.state
    assert state[side[0]]["step"].item() == 4 and state[flat.model.head.bias]["step"] == 7
    # runs split around the side branch (its step count is behind): three tensors, not ten
    assert len(flat.layout().call[0]) == 3
    # under set_to_none=False the branch keeps a zero gradient and steps, as in torch
    for use in (False, False):
        flat.step(False, use_side=use)
        ref.step(False, use_side=use)
    assert_same(flat, ref)


def test_parameter_that_never_gets_a_gradient_and_frozen_parameters():
    flat, ref = Run("momentum", True), Run("momentum", False)
    for run in (flat, ref):
        run.model.hidden.weight.requires_grad_(False)
    for _ in range(3):
        flat.step(True, use_side=False)
        ref.step(True, use_side=False)
    assert_same(flat, ref)
    sd = flat.opt.state_dict()["state"]
    assert set(sd) == set(ref.opt.state_dict()["state"])
    assert len(sd) == 7  # the side branch and the frozen weight have no state, as in torch


# ---------------------------------------------------------------- breaking the layout
def _break_both(flat, ref, action, steps_before=3, steps_after=3, set_to_none=False):
    for _ in range(steps_before):
        flat.step(set_to_none)
        ref.step(set_to_none)
    action(flat)
    action(ref)
    for _ in range(steps_after):
        flat.step(set_to_none)
        ref.step(set_to_none)
        assert_same(flat, ref)


def _rebind(run):
    w = run.model.hidden.weight
    w.data = w.data.clone().mul_(0.5)


def test_rebinding_data_is_detected_and_laid_out_again():
    flat, ref = Run("adam", True), Run("adam", False)
    _break_both(flat, ref, _rebind)
    bucket = flat.layout().buckets[0]
    assert all(buffer_of(p, bucket.P) for p in flat.model.parameters())
    assert all(buffer_of(flat.opt.state[p]["exp_avg"], bucket.S["exp_avg"])
               for p in flat.model.parameters())


def test_module_to_dtype_is_detected():
    flat, ref = Run("rmsprop", True), Run("rmsprop", False)
    _break_both(flat, ref, lambda run: run.model.to(torch.float64))
    assert {b.P.dtype for b in flat.layout().buckets} == {torch.float64}


def test_assigning_a_gradient_is_seen():
    flat, ref = Run("adam", True), Run("adam", False)
    for _ in range(2):
        flat.step(False)
        ref.step(False)
    for run in (flat, ref):
        run.opt.zero_grad(set_to_none=False)
        loss_of(run.model, 5).backward()
        run.model.head.weight.grad = torch.full_like(run.model.head.weight, 0.25)
        run.opt.step()
    assert_same(flat, ref)
    bucket = flat.layout().buckets[0]
    assert torch.equal(bucket.gviews[-2], torch.full_like(bucket.gviews[-2], 0.25))


def test_writing_state_is_seen():
    flat, ref = Run("adam", True), Run("adam", False)

    def write(run):
        st = run.opt.state[run.model.inp.weight]
        st["exp_avg"] = torch.full_like(run.model.inp.weight, 1e-3)
        run.opt.state[run.model.head.bias] = {k: v.clone() for k, v in
                                             run.opt.state[run.model.head.bias].items()}
        del run.opt.state[run.model.norm.weight]  # made again on the next step

    _break_both(flat, ref, write)
    # the deleted state starts again at step 0: its parameter is a run of its own
    assert flat.opt.state[flat.model.norm.weight]["step"] == 3
    assert flat.opt.state[flat.model.norm.bias]["step"] == 6
    assert len(flat.layout().call[0]) == 3
    assert buffer_of(flat.opt.state[flat.model.inp.weight]["exp_avg"],
                     flat.layout().buckets[0].S["exp_avg"])


def test_writing_a_step_count_in_place_splits_the_run():
    flat, ref = Run("adam", True), Run("adam", False)
    _break_both(flat, ref, lambda run: run.opt.state[run.model.hidden.bias]["step"].fill_(1))
    assert len(flat.layout().call[0]) == 3


def test_add_param_group_is_flat():
    flat, ref = Run("adagrad", True), Run("adagrad", False)
    extra = {}

    def add(run):
        torch.manual_seed(3)
        layer = extra.setdefault(id(run), nn.Linear(16, 16))
        run.model.side = layer
        run.opt.add_param_group({"params": layer.parameters(), "lr": 5e-3})

    _break_both(flat, ref, add)
    assert flat.opt.param_groups[1]["flat"] is True
    layer = flat.model.side
    assert buffer_of(layer.weight, flat.layout(1).buckets[0].P)
    assert len(flat.layout(1).call[0]) == 1


def test_mixed_dtypes_take_one_bucket_each():
    flat, ref = Run("adam", True), Run("adam", False)
    for run in (flat, ref):
        run.model.head.to(torch.float64)
        run.model.forward = _mixed_forward(run.model)
        run.opt = adaptim.Adam(run.model.parameters(), lr=1e-2, flat=run is flat)
    for _ in range(4):
        flat.step(False)
        ref.step(False)
    assert_same(flat, ref)
    assert sorted(str(b.P.dtype) for b in flat.layout().buckets) == ["torch.float32",
                                                                     "torch.float64"]
    assert len(flat.layout().call[0]) == 2


def _mixed_forward(model):
    def forward(x, use_side=True):
        h = torch.tanh(model.norm(model.inp(x)))
        h = h + torch.relu(model.hidden(h)) + model.side(h)
        return model.head(h.double()).float()

    return forward


def test_refused_groups_name_the_reason():
    with pytest.raises(ValueError, match="differentiable"):
        adaptim.Adam(net().parameters(), flat=True, differentiable=True)
    with pytest.raises(ValueError, match="complex"):
        adaptim.Adam([nn.Parameter(torch.zeros(3, dtype=torch.complex64))], flat=True)
    w = nn.Parameter(torch.zeros(3))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="more than once"):
        adaptim.Adam([w, w], flat=True)
    with pytest.raises((ValueError, TypeError), match="flat"):
        adaptim.Adam(net().parameters(), flat="yes")
    opt = adaptim.Adam(net().parameters())
    with pytest.raises(ValueError, match="complex"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2, dtype=torch.complex64))],
                             "flat": True})
    assert len(opt.param_groups) == 1  # a refused group leaves nothing behind


def test_sparse_gradient_is_refused_before_any_update():
    emb = nn.Embedding(10, 4, sparse=True)
    opt = adaptim.SGD(emb.parameters(), lr=0.1, flat=True)
    before = emb.weight.detach().clone()
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()
    assert torch.equal(emb.weight, before)


# ---------------------------------------------------------------- checkpoints
def _saved(state_dict):
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("first,second", [(True, False), (False, True), (True, True)])
def test_checkpoint_between_layouts(first, second):
    a, straight = Run("adam", first), Run("adam", first)
    for _ in range(3):
        a.step(False)
        straight.step(False)
    b = Run("adam", second)
    b.model.load_state_dict(a.model.state_dict())
    b.opt.load_state_dict(_saved(a.opt.state_dict()))
    b.step_no = a.step_no
    for _ in range(3):
        b.step(False)
        straight.step(False)
    assert_same(b, straight)
    if second:
        bucket = b.layout().buckets[0]
        assert all(buffer_of(b.opt.state[p]["exp_avg_sq"], bucket.S["exp_avg_sq"])
                   for p in b.model.parameters())


def test_state_dict_is_torch_optims_and_round_trips_through_it():
    flat = Run("adam", True)
    for _ in range(3):
        flat.step(True, use_side=flat.step_no != 1)  # the side branch misses one step
    sd = flat.opt.state_dict()
    assert all(type(v) is dict for v in sd["state"].values())
    model = net()
    torch_opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch_opt.load_state_dict(_saved(sd))
    back = _saved(torch_opt.state_dict())
    again = Run("adam", True)
    again.opt.load_state_dict(back)
    one, two = sd["state"], again.opt.state_dict()["state"]
    assert one.keys() == two.keys()
    for i in one:
        for k in one[i]:
            assert torch.equal(one[i][k], two[i][k]), (i, k)
            assert one[i][k].dtype == two[i][k].dtype
    steps = sorted({float(st["step"]) for st in one.values()})
    assert steps == [2.0, 3.0]
    # torch.optim steps a loaded flat checkpoint as its own: each step count is its own
    for p, q in zip(model.parameters(), flat.model.parameters()):
        p.data.copy_(q)
        p.grad = torch.ones_like(p)
    torch_opt.step()
    counts = [float(s["step"]) for s in torch_opt.state_dict()["state"].values()]
    assert sorted(set(counts)) == [3.0, 4.0]


def test_optimizer_pickles_and_deep_copies():
    flat = Run("rmsprop", True)
    for _ in range(2):
        flat.step(False)
    clone = copy.deepcopy(flat)
    assert all(type(st) is dict for st in clone.opt.state.values())
    again = pickle.loads(pickle.dumps(flat.opt))
    assert all(type(st) is dict for st in again.state.values())
    ref = Run("rmsprop", False)
    for _ in range(2):
        ref.step(False)
    for _ in range(2):
        clone.step(False)
        ref.step(False)
    assert_same(clone, ref)


@pytest.mark.parametrize("shapes", [[(3,), (0,), (), (2, 2)], [(3,), (), (2, 2)], [(5,), (2, 3)]])
def test_empty_and_scalar_parameters(shapes):
    gen = torch.Generator().manual_seed(2)
    ps = [nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    qs = [nn.Parameter(p.detach().clone()) for p in ps]
    flat, ref = adaptim.Adam(ps, lr=0.1, flat=True), adaptim.Adam(qs, lr=0.1)
    for _ in range(3):
        for p, q in zip(ps, qs):  # new gradient tensors each step (set_to_none=True's case)
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        flat.step()
        ref.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, qs))
    assert all(p.grad.data_ptr() != v.data_ptr() for p, v in
               zip(ps, _flat._layout_of(flat, flat.param_groups[0]).gviews) if p.numel())


def test_rebinding_a_gradient_views_memory_is_detected():
    flat, ref = Run("adam", True), Run("adam", False)

    def rebind(run):
        run.opt.zero_grad(set_to_none=False)
        loss_of(run.model, 7).backward()
        g = run.model.head.weight.grad
        g.data = g.data.clone().mul_(2.0)  # same gradient object, other memory

    for _ in range(2):
        flat.step(False)
        ref.step(False)
    for run in (flat, ref):
        rebind(run)
        run.opt.step()
    assert_same(flat, ref)


@pytest.mark.parametrize("set_to_none", [False, True])
def test_rebinding_under_both_zero_grad_modes(set_to_none):
    flat, ref = Run("momentum", True), Run("momentum", False)
    _break_both(flat, ref, _rebind, set_to_none=set_to_none)
    assert len(flat.layout().call[0]) == 1


def test_triton_path_takes_the_flat_tensors(monkeypatch):
    """The CUDA path (Triton kernels), run by Triton's interpreter on the CPU: one launch for
    the flat group, the same numbers as the default layout."""
    pytest.importorskip("triton")
    monkeypatch.setattr(_fused, "_TRITON_ON_CPU", True)
    flat, ref = Run("adam", True, fused=True), Run("adam", False, fused=True)
    for _ in range(2):
        flat.step(False)
        ref.step(False)
    assert_same(flat, ref)
    assert len(flat.layout().call[0]) == 1


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_create_graph_backward_replaces_the_gradient_and_is_copied():
    """With create_graph=True autograd adds out of place (a new .grad tensor): the step copies
    it into the buffer."""
    flat, ref = Run("adam", True), Run("adam", False)
    flat.step(False)
    ref.step(False)
    views = list(flat.layout().gviews)
    for run in (flat, ref):
        run.opt.zero_grad(set_to_none=False)
        loss_of(run.model, 3).backward(create_graph=True)
    assert not any(p.grad is v for p, v in zip(flat.model.parameters(), views))
    for run in (flat, ref):
        for p in run.model.parameters():
            p.grad = p.grad.detach()
        run.opt.step()
    assert_same(flat, ref)


def test_several_flat_groups_beside_a_default_one():
    def groups(model, flat):
        return [{"params": [*model.inp.parameters(), *model.norm.parameters()], "flat": flat},
                {"params": [*model.hidden.parameters(), *model.side.parameters()], "lr": 5e-3,
                 "flat": flat},
                {"params": model.head.parameters(), "lr": 2e-2}]

    runs = []
    for flat in (True, False):
        run = Run("adam", False)
        run.opt = adaptim.Adam(groups(run.model, flat), lr=1e-2, weight_decay=1e-2)
        runs.append(run)
    flat, ref = runs
    for _ in range(3):
        flat.step(False)
        ref.step(False)
    plans = [flat.layout(i).plans for i in (0, 1)]
    for _ in range(3):
        flat.step(False)
        ref.step(False)
    assert_same(flat, ref)
    assert [flat.layout(i).plans for i in (0, 1)] == plans  # steady: nothing planned again
    assert flat.layout(2) is None and [len(flat.layout(i).call[0]) for i in (0, 1)] == [1, 1]
