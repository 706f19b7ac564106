"""Exact resume: N steps in one go == k steps, torch.save, and N - k steps in a NEW process.

For every optimizer in the registry, fp32 and bf16 parameters, two parameter groups and an LR
scheduler (linear warm-up then cosine, via SequentialLR), the model, optimizer and scheduler are
saved after k steps; one child Python process loads every checkpoint with
``torch.load(weights_only=True)`` into freshly built objects and finishes the run. Parameters,
optimizer state and scheduler state must be bit-identical (``torch.equal``) to the
uninterrupted run.

To cover more implementations add values to the module-level lists (e.g. ``FUSED_MODES =
[False, True]``, ``STATE_DTYPES = [None, torch.bfloat16]``); every configuration then runs in
the same single child process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import adaptim
from adaptim.registry import REGISTRY

FUSED_MODES = [False, True]
STATE_DTYPES = [None, torch.bfloat16]
PARAM_DTYPES = [torch.float32, torch.bfloat16]
N_STEPS, K_STEPS = 9, 4

CONFIGS = [(name, dtype, fused, state_dtype)
           for name in REGISTRY for dtype in PARAM_DTYPES for fused in FUSED_MODES
           for state_dtype in STATE_DTYPES]


def config_id(config) -> str:
    name, dtype, fused, state_dtype = config
    sd = "" if state_dtype is None else f"-state_{str(state_dtype).removeprefix('torch.')}"
    return f"{name}-{str(dtype).removeprefix('torch.')}-fused_{fused}{sd}"


def build(config):
    """A small MLP, its optimizer (two groups: the second with weight decay) and a scheduler."""
    name, dtype, fused, state_dtype = config
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    model.to(dtype)
    extra = {"fused": fused}  # False: the reference path (the default is the kernel on CPU)
    if state_dtype is not None:
        extra["state_dtype"] = state_dtype
    groups = [{"params": model[0].parameters()},
              {"params": model[2].parameters(), "weight_decay": 0.01}]
    optimizer = adaptim.create(name, groups, **extra)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.25, total_iters=3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=N_STEPS)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[3])
    return model, optimizer, scheduler


def batch(step: int, dtype):
    """The data of one step, a pure function of the step number (no RNG state to carry)."""
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(6, 5, generator=gen).to(dtype)
    y = torch.randn(6, 3, generator=gen).to(dtype)
    return x, y


def train(model, optimizer, scheduler, steps, dtype) -> None:
    for step in steps:
        x, y = batch(step, dtype)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()


def resume_all(directory: str) -> None:
    """Child process entry point: finish every saved run and save its end state."""
    directory = Path(directory)
    for config in CONFIGS:
        cid = config_id(config)
        checkpoint = torch.load(directory / f"{cid}-k.pt", weights_only=True)
        model, optimizer, scheduler = build(config)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        train(model, optimizer, scheduler, range(K_STEPS, N_STEPS), config[1])
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, directory / f"{cid}-resumed.pt")


def assert_same(a, b, where: str) -> None:
    """Recursive bit-exact equality of state dicts (tensors with torch.equal and equal dtype)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Uninterrupted runs (here) and resumed runs (one child process for all configurations)."""
    directory = tmp_path_factory.mktemp("resume")
    uninterrupted = {}
    for config in CONFIGS:
        cid = config_id(config)
        model, optimizer, scheduler = build(config)
        train(model, optimizer, scheduler, range(K_STEPS), config[1])
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, directory / f"{cid}-k.pt")
        train(model, optimizer, scheduler, range(K_STEPS, N_STEPS), config[1])
        uninterrupted[cid] = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict()}
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_resume import resume_all
        resume_all({str(directory)!r})
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, f"resume process failed:\n{child.stderr[-4000:]}"
    resumed = {config_id(c): torch.load(directory / f"{config_id(c)}-resumed.pt",
                                        weights_only=True) for c in CONFIGS}
    return uninterrupted, resumed


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_resume_in_new_process_is_bit_identical(runs, config):
    uninterrupted, resumed = runs
    cid = config_id(config)
    want, got = uninterrupted[cid], resumed[cid]
    # The run moved (a resume that loaded nothing and trained nothing cannot pass).
    start, _, _ = build(config)
    assert not torch.equal(start[0].weight, want["model"]["0.weight"])
    assert_same(want["model"], got["model"], f"{cid} parameters")
    assert_same(want["optimizer"], got["optimizer"], f"{cid} optimizer state")
    assert_same(want["scheduler"], got["scheduler"], f"{cid} scheduler state")
    # The state really advanced past the checkpoint: step counters read N.
    steps = [s["step"] for s in got["optimizer"]["state"].values() if "step" in s]
    assert all(float(s) == N_STEPS for s in steps)
    assert got["scheduler"]["last_epoch"] == N_STEPS


def test_checkpoint_holds_only_weights_only_types():
    """torch.load(weights_only=True) must need no allow-listing: the optimizer's state_dict holds
    only tensors, numbers, strings, bools, None and containers (no adaptim classes)."""
    model, optimizer, scheduler = build(CONFIGS[0])
    train(model, optimizer, scheduler, range(2), CONFIGS[0][1])
    allowed = (torch.Tensor, int, float, str, bool, type(None))

    def walk(obj, where):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(k, where)
                walk(v, f"{where}[{k!r}]")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")
        else:
            # exact float/int types: a float subclass (e.g. conventions.Default) would need
            # allow-listing for weights_only loads
            assert type(obj) in allowed or isinstance(obj, torch.Tensor), \
                f"{where} is a {type(obj).__qualname__}"

    for spec_name in REGISTRY:
        for convention in ("torch", "tf1", "keras", "optax"):
            try:
                opt = adaptim.create(spec_name, torch.nn.Linear(2, 2).parameters(),
                                     convention=convention)
            except TypeError:
                break  # this optimizer has no convention argument
            walk(opt.state_dict(), f"{spec_name}/{convention}")
    walk(optimizer.state_dict(), "trained optimizer")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_state_dict_layout_matches_torch_optim(name):
    """Same parameters with state, same state keys, same step type as torch.optim's checkpoint
    (so either loads into the other); plain SGD has no per-parameter entries at all."""
    spec = REGISTRY[name]
    torch.manual_seed(0)
    ours_p = [torch.randn(3, 2, requires_grad=True), torch.randn(4, requires_grad=True)]
    theirs_p = [p.detach().clone().requires_grad_() for p in ours_p]
    ours = spec.create(ours_p)
    theirs = getattr(torch.optim, spec.cls.__name__)(theirs_p, **spec.settings, foreach=False)
    for _ in range(2):
        for a, b in zip(ours_p, theirs_p):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        ours.step()
        theirs.step()
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert ours_sd["state"].keys() == theirs_sd["state"].keys()
    for pid, state in theirs_sd["state"].items():
        assert ours_sd["state"][pid].keys() == state.keys(), pid
        for key, value in state.items():
            assert type(ours_sd["state"][pid][key]) is type(value), key
            if isinstance(value, torch.Tensor):
                assert ours_sd["state"][pid][key].dtype == value.dtype, key
    # and the torch checkpoint loads into adaptim (and back)
    spec.create([p.detach().clone().requires_grad_() for p in ours_p]).load_state_dict(theirs_sd)
    getattr(torch.optim, spec.cls.__name__)(
        [p.detach().clone().requires_grad_() for p in ours_p], **spec.settings
    ).load_state_dict(ours_sd)
