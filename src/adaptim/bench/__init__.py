"""Benchmarks (a tool layer: the library never imports this package). ``adaptim bench``."""

from adaptim.bench.step import add_parser, main, run

__all__ = ["add_parser", "main", "run"]
