"""The ``adaptim`` command line. A tool layer: it imports the library, never the reverse."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _cmd_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from adaptim.registry import REGISTRY

    table = Table(title="adaptim optimizers")
    table.add_column("name", style="bold")
    table.add_column("class")
    table.add_column("settings")
    table.add_column("state / param")
    table.add_column("what it does")
    for spec in REGISTRY.values():
        settings = ", ".join(f"{k}={v}" for k, v in spec.settings.items()) or "-"
        table.add_row(spec.name, f"adaptim.{spec.cls.__name__}", settings,
                      str(spec.state_tensors), spec.summary)
    console = Console()
    console.print(table)

    from adaptim.lab.tasks import TASKS

    tasks = Table(title="adaptim compare tasks (--task NAME)")
    tasks.add_column("task", style="bold")
    tasks.add_column("what it compares")
    for task in TASKS.values():
        tasks.add_row(task.name, task.summary)
    console.print(tasks)
    return 0


def _cmd_compare(args) -> int:
    from adaptim.lab.command import cmd_compare

    return cmd_compare(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptim", description="Adaptive gradient-descent optimizers for PyTorch.")
    sub = parser.add_subparsers(dest="command")
    p_list = sub.add_parser("list", help="list the optimizers and the lab's tasks")
    p_list.set_defaults(func=_cmd_list)

    from adaptim.lab.command import add_compare_arguments

    p_compare = sub.add_parser(
        "compare", help="run the textbook comparisons and write a report",
        description="Train every optimizer on the lab's tasks (learning rate from a small sweep, "
                    "several seeds) and write report.html, metrics.json and CSV files.")
    add_compare_arguments(p_compare)
    p_compare.set_defaults(func=_cmd_compare)

    from adaptim.bench import add_parser as add_bench_parser  # tool layer: `adaptim bench`
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv[1:]  # the subcommand's own arguments, for the report's command line
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
