"""adaptim bench's tensor-count sweep and tiny-model rows, at a size that runs in a second."""

from __future__ import annotations

import torch

from adaptim.bench import step


def test_tensor_count_sweep_times_every_mode_against_its_one_tensor_time():
    # cases DeepSpeed has no CPU optimizer for: importing it takes seconds
    sweep = step.tensor_count_sweep(total=20_000, counts=(1, 10), cases=("momentum", "rmsprop"),
                                    repeat=2, log=lambda _: None)
    assert sweep["counts"] == [1, 10]
    for case in ("momentum", "rmsprop"):
        for count in (1, 10):
            row = sweep["cases"][case][count]
            assert row["adaptim"] > 0 and row["torch-fastest"] > 0
            assert row["adaptim-new-grads"] > 0 and row["adaptim-grads-in-place"] > 0
            assert row["deepspeed"] == "no CPU optimizer"
    text = step.sweep_markdown(sweep)
    assert "| momentum | torch-fused |" in text and "| rmsprop | torch-foreach |" in text
    assert "| momentum | adaptim, new gradients |" in text
    assert "| momentum | adaptim, gradients in place |" in text
    assert "| momentum | adaptim, gradients untouched |" in text
    assert "(1.0x)" in text and "µs per extra tensor" in text


def test_tiny_models_time_the_default_against_the_reference_path():
    tiny = step.tiny_models(cases=("sgd", "adam"), rounds=3, log=lambda _: None)
    assert list(tiny) == ["1 tensor (1,000)", "MLP 16-32-1 (4 tensors)",
                          "MLP 64-256-256-10 (6 tensors)"]
    for rows in tiny.values():
        for r in rows.values():
            assert r["fused=None"] > 0 and r["fused=False"] > 0
    assert "| 1 tensor (1,000) |" in step.tiny_markdown(tiny)


def test_new_grads_mode_gives_new_gradient_tensors_before_each_step():
    params = [torch.zeros(3, requires_grad=True) for _ in range(2)]
    grads = [torch.ones(3), torch.full((3,), 2.0)]
    prepare = step._new_grads(params, grads)
    opt = torch.optim.SGD(params, lr=0.1)
    seen = []
    for _ in range(3):
        prepare(opt)
        seen.append([p.grad for p in params])
        assert [float(p.grad[0]) for p in params] == [1.0, 2.0]
    assert all(a is not b for a, b in zip(seen[0], seen[1]))  # other tensors than the last step
    assert all(g is not o for g, o in zip(seen[0], grads))  # copies: the sweep's own stay


def test_grads_in_place_mode_writes_new_values_into_the_same_gradient_tensors():
    params = [torch.zeros(3, requires_grad=True) for _ in range(2)]
    grads = [torch.ones(3), torch.full((3,), 2.0)]
    prepare = step._grads_in_place(params, grads)
    opt = torch.optim.SGD(params, lr=0.1)
    first = [p.grad for p in params]
    assert all(g is not o for g, o in zip(first, grads))  # copies: the sweep's own stay
    for _ in range(3):
        for p in params:
            p.grad.fill_(7.0)  # what the last step's gradients held: zeroed before the add
        prepare(opt)
        assert all(p.grad is g for p, g in zip(params, first))  # the same tensors
        assert [float(p.grad[0]) for p in params] == [1.0, 2.0]
