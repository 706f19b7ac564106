"""The lab's experiments, by name (``adaptim list`` prints them, ``--task NAME`` picks them)."""

from __future__ import annotations

import dataclasses
import difflib

from adaptim.lab.tasks._base import Arm, RunOutput, Task
from adaptim.lab.tasks.deep import deep_task
from adaptim.lab.tasks.digits import digits_cnn_task, digits_mlp_task, weight_decay_task
from adaptim.lab.tasks.dqn import dqn_task
from adaptim.lab.tasks.gan import gan_task
from adaptim.lab.tasks.online import online_task
from adaptim.lab.tasks.quadratic import quadratic_task
from adaptim.lab.tasks.recurrent import adding_gru_task, adding_task, exploding_task
from adaptim.lab.tasks.sparse import sparse_task
from adaptim.lab.tasks.speech import speech_task
from adaptim.lab.tasks.surfaces import surfaces_task
from adaptim.lab.tasks.transformer import transformer_task

__all__ = ["TASKS", "Arm", "RunOutput", "Task", "get_task", "list_tasks", "tier_tasks"]


def _typical_use(task: Task, variant: str, optimizers: tuple[str, ...],
                 tier: str = "default") -> Task:
    """A typical-use task with the arms its claims compare."""
    return dataclasses.replace(task, tier=tier, arms=tuple(Arm(o, variant) for o in optimizers))


TASKS: dict[str, Task] = {t.name: t for t in [
    surfaces_task, quadratic_task, online_task, sparse_task, digits_mlp_task, deep_task,
    adding_task, exploding_task, weight_decay_task, digits_cnn_task, adding_gru_task,
    _typical_use(transformer_task, "copy", ("sgd", "adam")),
    _typical_use(gan_task, "beta1-0.5", ("sgd", "adam")),
    _typical_use(speech_task, "lstm", ("sgd", "rmsprop")),
    _typical_use(dqn_task, "cartpole", ("sgd", "rmsprop", "adam")),
]}


def tier_tasks(tier: str) -> list[str]:
    """The names of the tasks marked ``tier`` (``default`` or ``extended``), in suite order."""
    return [name for name, task in TASKS.items() if task.tier == tier]


def list_tasks() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; ValueError listing the valid names if unknown."""
    if name not in TASKS:
        hint = difflib.get_close_matches(str(name), TASKS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"unknown task {name!r}{extra}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]
