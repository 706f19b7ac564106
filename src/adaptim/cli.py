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
    Console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaptim", description="Adaptive gradient-descent optimizers for PyTorch.")
    sub = parser.add_subparsers(dest="command")
    p_list = sub.add_parser("list", help="list the optimizers")
    p_list.set_defaults(func=_cmd_list)
    from adaptim.bench import add_parser as add_bench_parser  # tool layer: `adaptim bench`
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
