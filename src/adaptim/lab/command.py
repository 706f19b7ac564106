"""``adaptim compare``: parse and check the arguments, run the suite with a progress bar, write
the report. Bad input exits with status 2 and one clear line, before any training."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

__all__ = ["UsageError", "add_compare_arguments", "cmd_compare"]


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2, no traceback."""


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {value}")
        return value
    return parse


def _positive_float(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text!r}")
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be a positive finite number, got {text}")
        return value
    return parse


def _names(text):
    return [n.strip() for n in text.split(",") if n.strip()]


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", type=_names, default=None, metavar="NAME[,NAME]",
                        help="tasks to run (default: every task of the tier; see `adaptim list`)")
    from adaptim.cli import add_names_argument  # one form for every subcommand
    add_names_argument(parser, "--optimizers", help="optimizers to compare (default: all eight)")
    parser.add_argument("--seeds", type=_positive_int("--seeds"), default=None, metavar="N",
                        help="evaluation seeds per arm (default 5, or more where a task needs "
                             "it; --fast: 2); tuning uses a separate seed")
    parser.add_argument("--steps", type=_positive_int("--steps"), default=None, metavar="N",
                        help="training steps for every task (default: each task's own)")
    parser.add_argument("--lr", type=_positive_float("--lr"), default=None, metavar="LR",
                        help="use this learning rate for every optimizer (default: sweep)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=_positive_int("--threads"), default=1, metavar="N",
                        help="torch CPU threads (default 1: fastest for these small models)")
    parser.add_argument("--jobs", type=_positive_int("--jobs"), default=None, metavar="N",
                        help="worker processes (default: min(2, CPU cores); 1 on a GPU)")
    parser.add_argument("--fast", action="store_true",
                        help="smoke version: fewer steps, 2 seeds, no sweep (< 30 s)")
    parser.add_argument("--extended", action="store_true",
                        help="also run the tasks marked extended, if any (the report's "
                             "\"How this was measured\" lists each tier's tasks; < 15 min)")
    parser.add_argument("--out", default="adaptim-report", metavar="DIR",
                        help="output directory (default ./adaptim-report/)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _config_from(args):
    import torch

    from adaptim.lab.runner import SuiteConfig
    from adaptim.lab.tasks import get_task
    from adaptim.registry import get_spec, list_optimizers

    if args.fast and getattr(args, "extended", False):
        raise UsageError("--fast and --extended exclude each other")
    tasks = args.task
    for name in tasks or []:
        try:
            get_task(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    optimizers = args.optimizers or list_optimizers()
    for name in optimizers:
        try:
            get_spec(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    optimizers = [get_spec(n).name for n in optimizers]
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise UsageError(f"--device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {args.device}: MPS is not available on this machine")
    jobs = args.jobs or min(2, os.cpu_count() or 1)
    if device.type != "cpu":
        jobs = 1  # one process owns the accelerator
    return SuiteConfig(tasks=tasks, optimizers=optimizers, seeds=args.seeds, steps=args.steps,
                       lr=args.lr, fast=args.fast, extended=getattr(args, "extended", False),
                       device=str(device), threads=args.threads, jobs=jobs)


def cmd_compare(args) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        for module, package in (("matplotlib", "matplotlib"), ("sklearn", "scikit-learn")):
            try:
                __import__(module)
            except ImportError:
                raise UsageError(f"adaptim compare needs {package}: "
                                 "pip install 'adaptim[lab]'") from None
        config = _config_from(args)
        from adaptim.lab.report import check_writable
        try:
            out_dir = check_writable(args.out)
        except OSError as exc:
            raise UsageError(f"--out {args.out!r} is not writable: {exc.strerror or exc}") from None
    except UsageError as exc:
        print(f"adaptim compare: error: {exc}", file=sys.stderr)
        return 2

    from adaptim.lab.report import write_report
    from adaptim.lab.runner import plan_runs, run_suite

    planned = sum(g.n_runs() for g in plan_runs(config))
    if planned == 0:
        print("adaptim compare: error: no task runs any of the chosen optimizers "
              f"({', '.join(config.optimizers)})", file=sys.stderr)
        return 2
    command = "adaptim compare " + " ".join(shlex.quote(a) for a in (args.argv or []))
    command = command.strip()
    interactive = console.is_terminal and not args.quiet

    if interactive:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), console=console, transient=False,
                            # No refresh thread: worker processes are forked while the bar is
                            # shown, and a fork must not copy a lock held by another thread.
                            auto_refresh=False)
        bar = progress.add_task("runs", total=planned)

        def on_start(label):
            progress.update(bar, description=label, refresh=True)

        def on_done(record, done, total):
            progress.update(bar, completed=done, refresh=True,
                            description="all runs finished" if done == total else None)
        with progress:
            result = run_suite(config, on_run_done=on_done, on_run_start=on_start)
    else:
        def on_done(record, done, total):
            if not args.quiet:
                from adaptim.lab.summary import final_loss
                print(f"[{done}/{total}] {record.task} {record.variant} {record.arm} "
                      f"lr={record.hparams.get('lr', float('nan')):.3g} seed={record.seed} "
                      f"final_loss={final_loss(record.output.curves['loss']):.4g} "
                      f"({record.wall_seconds:.2f} s)", flush=True)
        result = run_suite(config, on_run_done=on_done)

    if result.interrupted:
        console.print(f"[yellow]Interrupted: writing a partial report with "
                      f"{len(result.records)} of {planned} runs.[/yellow]")
    try:
        paths = write_report(result, out_dir, command=command)
    except KeyboardInterrupt:
        console.print("[red]Interrupted again while writing the report; it may be "
                      "incomplete.[/red]")
        return 130
    if not args.quiet:
        import json
        verdicts = json.loads(paths["metrics"].read_text())["verdicts"]
        _print_verdicts(console, verdicts)
        console.print(f"{len(result.records)} runs in {result.wall_seconds:.1f} s. "
                      f"Report: [bold]{paths['report']}[/bold]  (metrics.json, runs.csv, "
                      "curves.csv beside it)")
    return 130 if result.interrupted else 0


def _print_verdicts(console, verdicts) -> None:
    from rich.table import Table

    colors = {"holds": "green", "does not hold": "red", "inconclusive": "yellow"}
    table = Table(title="Verdicts (computed from these runs)", show_lines=False)
    table.add_column("claim", overflow="fold", max_width=60)
    table.add_column("verdict")
    table.add_column("effect [95% interval]")
    table.add_column("n", justify="right")
    for v in verdicts:
        color = colors.get(v["status"], "dim")
        e = v.get("effect")
        complete = e and all(e.get(k) is not None for k in ("mean", "lo", "hi"))
        effect = f"{e['mean']:+.3g} [{e['lo']:+.3g}, {e['hi']:+.3g}]" if complete else "–"
        table.add_row(v["statement"], f"[{color}]{v['status']}[/{color}]", effect,
                      str(e["n"]) if e else "0")
    console.print(table)
