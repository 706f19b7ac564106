"""The ``adaptim`` command line. A tool layer: it imports the library, never the reverse.

``list`` and ``compare`` print with ``rich`` (extra ``cli``; ``lab`` includes it); without it
they exit with one line saying what to install. ``bench`` prints Markdown tables without it, and
``adaptim --version`` needs nothing beyond the library.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_names_argument", "build_parser", "main"]


class _NameList(argparse.Action):
    """Collects ``--flag a,b``, ``--flag a b`` and ``--flag a,b c`` alike into one list of
    names (order kept, repeats dropped), checked against ``valid`` when given."""

    def __init__(self, option_strings, dest, valid=None, **kwargs):
        self.valid = list(valid) if valid is not None else None
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        names: list[str] = []
        for value in values:
            for name in value.split(","):
                name = name.strip()
                if name and name not in names:
                    names.append(name)
        if not names:
            raise argparse.ArgumentError(self, "expected at least one name")
        if self.valid is not None:
            bad = [n for n in names if n not in self.valid]
            if bad:
                raise argparse.ArgumentError(
                    self, f"invalid choice: {', '.join(map(repr, bad))} "
                          f"(choose from {', '.join(self.valid)})")
        setattr(namespace, self.dest, names)


def add_names_argument(parser: argparse.ArgumentParser, flag: str, *, valid=None,
                       help: str | None = None, metavar: str = "NAME") -> None:
    """Add ``flag`` taking one or more names, separated by commas, spaces or both. With
    ``valid``, anything else is a usage error (exit 2) listing the valid names; without it the
    caller checks them."""
    parser.add_argument(flag, nargs="+", action=_NameList, valid=valid, default=None,
                        metavar=metavar, help=(help or "") + " (comma- or space-separated)")


# `adaptim bench` prints Markdown tables where rich is missing (GPU machines may lack it)
_RICH_COMMANDS = ("list", "compare")


def _needs_rich(command: str) -> str | None:
    """None if ``rich`` imports, else the one-line message saying what to install."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return (f"adaptim {command}: error: the command line needs the 'rich' package: "
                "pip install 'adaptim[cli]' (or 'adaptim[lab]' for adaptim compare)")
    return None


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
    import adaptim

    parser = argparse.ArgumentParser(
        prog="adaptim", description="Adaptive gradient-descent optimizers for PyTorch.")
    parser.add_argument("--version", action="version",
                        version=f"adaptim {adaptim.__version__}")
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
    missing = _needs_rich(args.command) if args.command in _RICH_COMMANDS else None
    if missing:
        print(missing, file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
