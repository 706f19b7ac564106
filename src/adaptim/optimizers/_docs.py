"""Docstrings of the optimizer classes, composed as torch.optim composes ``Adam.__doc__``: the
algorithm's math (its spec module's docstring), then every argument in signature order — torch's
first, then adaptim's own options — from the spec's ``arg_docs`` and the shared fragments below,
then the state and a runnable example. ``help(adaptim.Adam)`` thus shows all of it.
"""

from __future__ import annotations

import inspect
import sys
import textwrap

import torch

__all__ = ["SHARED_ARGS", "compose"]

# Arguments whose meaning is the same in every optimizer.
SHARED_ARGS = {
    "params": "iterable of parameters (or named parameters) to optimize, or of dicts defining "
              "parameter groups",
    "lr": "learning rate η (a float or a 1-element tensor)",
    "weight_decay": "L2 penalty λ, added to the gradient: g ← g + λ θ",
    "foreach": "None (default): the multi-tensor rule (torch.optim's foreach bits) where torch's "
               "own default is foreach (CUDA groups); True: the multi-tensor rule anywhere (not "
               "with fused=True); False: never",
    "maximize": "maximize the objective: step along +∇f instead of −∇f",
    "capturable": "must be False: CUDA-graph capture is not supported on any device (use "
                  "torch.optim for it)",
    "differentiable": "as torch.optim: step() records the update in the autograd graph "
                      "(reference path; gradients flow to the parameters' history, the "
                      "gradients, the state and a tensor lr)",
    "fused": "None (the fastest exact path): the fused C kernel for CPU float64, float32, "
             "bfloat16 and float16 groups (one pass over memory, equal to the reference path to "
             "rounding; bfloat16/float16 parameters computed in float32 and rounded once per "
             "step, where torch.optim rounds after every operation) and the reference path "
             "elsewhere; True: a fused step (C on CPU, Triton on CUDA; a warning where none "
             "can run; as torch.optim, a RuntimeError for parameters no kernel takes and with "
             "differentiable=True); False: the reference path (the rule per tensor, "
             "torch.optim's bits)",
    "state_dtype": "dtype of the state tensors, e.g. torch.bfloat16, or torch.float32 for "
                   "bfloat16/float16 parameters (arithmetic stays float32, state is rounded once "
                   "per step); None: the parameter's dtype",
    "max_grad_norm": "clip the global gradient norm to this value inside step() (as "
                     "torch.nn.utils.clip_grad_norm_ over all groups); None: no clipping",
    "on_nonfinite": "what step() does when a gradient holds inf or NaN: \"propagate\" "
                    "(torch's behaviour), \"skip\" the step (counted in skipped_steps, saved in "
                    "state_dict) or \"raise\" NonFiniteGradientError",
    "flat": "True: each group's parameters, gradients and state become views of one contiguous "
            "buffer per dtype, so a step is one kernel call whatever the tensor count "
            "(parameters are rebound to views, values kept; see docs/flat.md); False: tensors "
            "stay as the model made them",
    "convention": "\"torch\", \"tf1\", \"keras\" or \"optax\": take every default that differs "
                  "between frameworks (ε and its placement, decay rates, starting accumulator, "
                  "default lr) from that framework; explicit arguments win "
                  "(see adaptim.conventions)",
}


def _default(param: inspect.Parameter) -> str:
    if param.default is inspect.Parameter.empty:
        return "required"
    value = param.default
    return f"default {float(value)!r}" if type(value) is not float and isinstance(value, float) \
        else f"default {value!r}"


def _entries(names, signature, docs) -> list[str]:
    lines = []
    for name in names:
        text = f"{name} ({_default(signature.parameters[name])}): {docs[name]}"
        lines.append(textwrap.fill(text, width=92, initial_indent="    ",
                                   subsequent_indent="        "))
    return lines


def compose(cls, summary: str, example: str) -> str:
    """The docstring of optimizer class ``cls``: ``summary``, the math of ``cls.algorithm``,
    every argument of ``cls.__init__`` documented (ValueError if one has no text), the state
    and ``example`` (doctest lines)."""
    spec = cls.algorithm
    signature = inspect.signature(cls.__init__)
    names = [n for n in signature.parameters if n != "self"]
    docs = {**SHARED_ARGS, **spec.arg_docs}
    missing = [n for n in names if n not in docs]
    if missing:
        raise ValueError(f"{cls.__name__}: no documentation for arguments {missing}")
    torch_cls = getattr(torch.optim, cls.__name__)
    torch_names = set(inspect.signature(torch_cls.__init__).parameters)
    math = textwrap.dedent(sys.modules[type(spec).__module__].__doc__).strip()
    state = ", ".join(f"``{k}``" for k in (("step",) if spec.counts_steps else ())
                      + spec.state_keys)
    parts = [
        textwrap.dedent(summary).strip(),
        textwrap.indent(math, "    "),
        f"Arguments of torch.optim.{cls.__name__} (same names, order and defaults):",
        "\n".join(_entries([n for n in names if n in torch_names], signature, docs)),
        "adaptim's options (keyword-only):",
        "\n".join(_entries([n for n in names if n not in torch_names], signature, docs)),
        textwrap.fill("The execution options (fused, foreach, differentiable, capturable, flat) "
                      "say how a step runs; load_state_dict keeps this optimizer's values for "
                      "them.",
                      width=96),
        textwrap.fill(f"State per parameter (as torch.optim.{cls.__name__}, so checkpoints load "
                      f"into either): {state}.", width=96),
        "Example::\n\n" + textwrap.indent(textwrap.dedent(example).strip(), "    "),
    ]
    return "\n\n".join(parts) + "\n"
