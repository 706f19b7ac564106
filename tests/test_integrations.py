"""The "Use it with…" snippets, run from the document's own text (blocks marked
``<!-- test: NAME [needs=MODULE,...] -->``), plus a Hugging Face Trainer checkpoint-and-resume
check with an adaptim optimizer. Tiny models built from configs; nothing is downloaded."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import torch

import adaptim

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "README.md"
_BLOCK = re.compile(r"<!-- test: (?P<name>[\w-]+)(?: needs=(?P<needs>[\w,.]+))? -->\s*\n"
                    r"```python\n(?P<code>.*?)```", re.S)


def snippets() -> dict[str, tuple[list[str], str]]:
    found = {}
    for m in _BLOCK.finditer(SOURCE.read_text(encoding="utf-8")):
        assert m["name"] not in found, f"two snippets named {m['name']}"
        found[m["name"]] = ((m["needs"] or "").split(",") if m["needs"] else [], m["code"])
    return found


SNIPPETS = snippets()
# What every snippet needs besides torch and adaptim (the `test` extra installs them)
NEEDS = {"hf-trainer-optimizers": ["transformers"], "hf-trainer-optimizer-cls": ["transformers"],
         "lightning": ["lightning"], "accelerate": ["accelerate"]}


def _require(modules):
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # e.g. timm importing a torchvision built for another torch
            pytest.skip(f"{name} does not import here: {type(exc).__name__}: {exc}")


def _run(name, tmp_path, monkeypatch) -> dict:
    needs, code = SNIPPETS[name]
    _require(needs + NEEDS.get(name, []))
    monkeypatch.chdir(tmp_path)  # outputs and checkpoints land in a temporary directory
    namespace = {"__name__": f"snippet_{name.replace('-', '_')}"}
    exec(compile(code, f"{SOURCE.name}:{name}", "exec"), namespace)
    return namespace


def _steps(opt, p) -> int:
    return int(opt.state[p]["step"])


def test_every_snippet_is_tested():
    assert set(SNIPPETS) == {"hf-trainer-optimizers", "hf-trainer-optimizer-cls", "lightning",
                             "accelerate", "timm-scheduler", "timm-registry", "compile-step",
                             "torch-checkpoint"}


def test_hf_trainer_optimizers(tmp_path, monkeypatch):
    ns = _run("hf-trainer-optimizers", tmp_path, monkeypatch)
    assert _steps(ns["opt"], next(ns["model"].parameters())) == 16
    assert ns["sched"].get_last_lr()[0] == pytest.approx(0.0)  # linear decay to 0 at the end


def test_hf_trainer_optimizer_cls(tmp_path, monkeypatch):
    ns = _run("hf-trainer-optimizer-cls", tmp_path, monkeypatch)
    opt = ns["trainer"].optimizer.optimizer
    assert ns["trainer"].state.global_step == 16
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays[0] == 0.0 and decays[-1] == 0.01  # the Trainer's groups


def test_lightning(tmp_path, monkeypatch):
    import lightning

    seen = []
    original = lightning.Trainer.fit

    def fit(self, module, *args, **kwargs):
        seen.append(module)
        return original(self, module, *args, **kwargs)

    monkeypatch.setattr(lightning.Trainer, "fit", fit)
    _run("lightning", tmp_path, monkeypatch)
    (module,) = seen
    (opt,) = module.trainer.optimizers
    assert type(opt) is adaptim.RMSprop
    assert _steps(opt, module.net.weight) == 3 * 256 // 32


def test_accelerate(tmp_path, monkeypatch):
    ns = _run("accelerate", tmp_path, monkeypatch)
    inner = ns["opt"].optimizer
    assert type(inner) is adaptim.AdamW
    assert _steps(inner, next(ns["model"].parameters())) == 256 // 32


def test_timm_scheduler(tmp_path, monkeypatch):
    ns = _run("timm-scheduler", tmp_path, monkeypatch)
    assert ns["opt"].param_groups[0]["lr"] < 1e-4  # cosine to its minimum at t_initial


def test_timm_registry(tmp_path, monkeypatch):
    ns = _run("timm-registry", tmp_path, monkeypatch)
    from timm.optim import create_optimizer_v2

    assert {g["weight_decay"] for g in ns["opt"].param_groups} == {0.0, 0.05}
    # the underscore form reaches timm's own AdamW
    wrong = create_optimizer_v2(torch.nn.Linear(2, 2), "adaptim_adamw", lr=1e-3)
    assert type(wrong) is torch.optim.AdamW


@pytest.mark.slow  # inductor compiles the step: ~20 s on 2 cores
def test_compile_step(tmp_path, monkeypatch):
    ns = _run("compile-step", tmp_path, monkeypatch)
    opt = ns["opt"]
    assert _steps(opt, ns["model"].weight) == 5
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(1e-2 * 0.99 ** 5)


def test_torch_checkpoint(tmp_path, monkeypatch):
    ns = _run("torch-checkpoint", tmp_path, monkeypatch)
    # one more step on each side from the same point agrees to rounding
    model, opt, torch_opt = ns["model"], ns["opt"], ns["torch_opt"]
    twin = torch.nn.Linear(8, 1)
    twin.load_state_dict(model.state_dict())
    torch_twin = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    torch_twin.load_state_dict(torch_opt.state_dict())
    x = torch.randn(32, 8)
    for m, o in ((model, opt), (twin, torch_twin)):
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- HF checkpoint and resume
def _hf_run(out, max_steps, resume=None):
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=16, vocab_size=100,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    gen = torch.Generator().manual_seed(1)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 100, (64, 16),
                                                                       generator=gen)]
    args = TrainingArguments(str(out), max_steps=max_steps, per_device_train_batch_size=8,
                             save_steps=8, save_strategy="steps", report_to=[], use_cpu=True,
                             learning_rate=1e-3, weight_decay=0.01, seed=0,
                             lr_scheduler_type="linear", logging_strategy="no",
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      optimizer_cls_and_kwargs=(adaptim.AdamW, {"lr": 1e-3, "fused": False}))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_hf_trainer_checkpoint_and_resume_with_adaptim(tmp_path):
    _require(["transformers"])
    straight = _hf_run(tmp_path / "a", 16)
    _hf_run(tmp_path / "b", 16)  # saves checkpoint-8 and checkpoint-16
    resumed = _hf_run(tmp_path / "c", 16, resume=str(tmp_path / "b" / "checkpoint-8"))
    opt = resumed.optimizer.optimizer
    assert type(opt) is adaptim.AdamW
    assert all(g["fused"] is False for g in opt.param_groups)
    p = next(resumed.model.parameters())
    assert _steps(opt, p) == 16
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)  # the resumed run ends exactly where the straight one does
