"""Writes the results of a suite: ``report.html`` (self-contained: figures embedded as base64
PNG, no network needed), ``metrics.json`` (config, verdicts, summaries and every run's curves),
``runs.csv`` (one row per run), ``curves.csv`` (long format: run, curve, step, value) and
``plots/*.png`` (the same figures as files)."""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import math
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from adaptim.lab import plots
from adaptim.lab.claims import HOLDS, INCONCLUSIVE, NOT_HOLD, NOT_RUN, evaluate_claims
from adaptim.lab.stats import CONFIDENCE
from adaptim.lab.runner import tuning_seeds
from adaptim.lab.summary import final_loss, steps_to_target, summarize
from adaptim.lab.sweep import MAX_EXTENSIONS
from adaptim.lab.tasks import TASKS, tier_tasks
from adaptim.lab.tasks.surfaces import SURFACES

__all__ = ["check_writable", "tiers_text", "write_report"]


def check_writable(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and prove a file can be written there; OSError otherwise.
    Called before any training so a bad ``--out`` fails in a second, not after the suite."""
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".adaptim-write-test"
    probe.write_text("ok")
    probe.unlink()
    return path


def _clean(x):
    """JSON has no NaN/inf: non-finite numbers become null."""
    if isinstance(x, float):
        return float(f"{x:.8g}") if math.isfinite(x) else None  # 8 significant digits
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _run_dict(i, r) -> dict:
    curve = r.output.curves["loss"]
    target = TASKS[r.task].target[r.variant]
    hit = steps_to_target(curve, target)
    return dict(
        run_id=i, task=r.task, variant=r.variant, arm=r.arm, optimizer=r.optimizer,
        hparams=r.hparams,
        seed=r.seed, steps=r.steps, sweep=r.sweep, final=r.final,
        wall_seconds=r.wall_seconds, diverged=r.output.diverged,
        final_loss=final_loss(curve), target_loss=target, steps_to_target=hit,
        seconds_to_target=r.output.seconds[hit - 1] if hit else None,
        state_bytes=r.output.state_bytes, n_params=r.output.n_params,
        state_bytes_per_param=r.output.state_bytes / max(r.output.n_params, 1),
        scalars=r.output.scalars, curves=r.output.curves,
        sparse={k: {"steps": s, "values": v} for k, (s, v) in r.output.sparse.items()},
    )


_RESULT_FOR_WORKERS = None  # set before forking the figure workers, so nothing is pickled


def _figures(result, jobs: int = 1) -> dict[str, list[tuple[str, str, bytes]]]:
    """task name -> [(figure id, caption, png bytes)]. With ``jobs`` > 1 the tasks' figures
    are drawn in forked worker processes (drawing is most of the report's time)."""
    global _RESULT_FOR_WORKERS
    names = [n for n in result.config.tasks if any(r.task == n for r in result.records)]
    if jobs > 1 and len(names) > 1 and "fork" in multiprocessing.get_all_start_methods():
        _RESULT_FOR_WORKERS = result
        try:
            with ProcessPoolExecutor(max_workers=jobs,
                                     mp_context=multiprocessing.get_context("fork")) as pool:
                return dict(zip(names, pool.map(_task_figures_in_worker, names)))
        finally:
            _RESULT_FOR_WORKERS = None
    return {name: _task_figures(result, name) for name in names}


def _task_figures_in_worker(name):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return _task_figures(_RESULT_FOR_WORKERS, name)


def _task_figures(result, name):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # log axes with all-NaN curves of diverged runs
        return _make_task_figures(result.records, name)


_FIGURES = {
    "paths": ("Trajectories on the contour plots",
              lambda task, records, finals: plots.trajectory_figure(task, records, SURFACES)),
    "loss": (None, lambda task, records, finals: plots.loss_figure(task, records,
                                                                   baseline=task.baseline)),
    "efflr": ("Effective learning rate",
              lambda task, records, finals: plots.effective_lr_figure(task, records,
                                                                      task.variants[0])),
    "layers": ("Per-layer gradient norms",
               lambda task, records, finals: plots.layer_norm_figure(task, finals)),
    "gradnorm": ("Gradient norm before clipping",
                 lambda task, records, finals: plots.grad_norm_figure(task, finals)),
    "sweep": ("Learning-rate sweep on the tuning seed",
              lambda task, records, finals: plots.sweep_figure(task, records)),
}


def _make_task_figures(records, name):
    """The figures the task declares (``Task.figures``), in its order."""
    task = TASKS[name]
    finals = [r for r in records if r.final]
    if not any(r.task == name for r in finals):
        return []
    figs = []
    for kind in task.figures:
        caption, draw = _FIGURES[kind]
        fig = draw(task, records, finals)
        if fig is not None:
            figs.append((f"fig-{name}-{kind}", caption or f"{task.loss_name} against the step",
                         plots.to_png(fig)))
    return figs


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _stat_cell(st, digits=3):
    if not st or not st.get("n"):
        return "diverged"
    return f"{st['mean']:.{digits}g} ± {st['std']:.2g}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1250px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.88em}
th,td{border:1px solid #ccc;padding:3px 7px;vertical-align:top;text-align:left}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.holds{background:#d8f0d8}.doesnothold{background:#f6d5d5}.inconclusive{background:#fbefc8}
.untested{background:#eee;color:#555}
.banner{background:#fbefc8;border:1px solid #d9b84a;padding:0.6em 1em;margin:1em 0}
figure{margin:0.8em 0 1.6em} figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:0.85em;color:#555} code{background:#f4f4f4;padding:0 3px}
ul.ev{margin:0;padding-left:1.1em} .small{font-size:0.85em;color:#555}
"""


def _status_class(status):
    return {HOLDS: "holds", NOT_HOLD: "doesnothold", INCONCLUSIVE: "inconclusive"}.get(
        status, "untested")


def _effect_cell(v) -> str:
    e = v.effect
    if e is None:
        return "–"
    return f"{e.mean:+.3g} [{e.lo:+.3g}, {e.hi:+.3g}]"


def tiers_text() -> str:
    """What each tier runs, read from the tasks' tiers."""
    default, extended = tier_tasks("default"), tier_tasks("extended")
    if extended:
        return (f"The default tier runs {', '.join(default)}; --extended adds "
                f"{', '.join(extended)}.")
    return (f"The default tier runs every task ({', '.join(default)}); no task is marked "
            "extended, so --extended runs the same tasks.")


def _multi_seed_tasks() -> str:
    """The tasks whose sweeps run on more than one tuning seed, with their counts."""
    named = [f"{name}, {len(tuning_seeds(task))} seeds" for name, task in TASKS.items()
             if len(tuning_seeds(task)) > 1]
    return "; ".join(named) or "none"


def _protocol(cfg) -> str:
    """The "How this was measured" section."""
    level = f"{CONFIDENCE:.0%}"
    return (
        "<h2 id='protocol'>How this was measured</h2><ul>"
        f"<li><b>Tier:</b> {cfg.tier}. {html.escape(tiers_text())} <code>--fast</code> is a "
        "smoke run of the default tier (short runs, 2 seeds, no tuning) whose verdicts are "
        "mostly inconclusive by design.</li>"
        "<li><b>Arms.</b> An arm is one optimizer on one task variant with its settings "
        "(clipping, L2, no bias correction, an untuned default rate). Every arm is tuned on "
        "its own: clipped and unclipped, LSTM and RNN, Adam and Adam+L2 each get their own "
        "learning rate.</li>"
        "<li><b>Tuning seed ≠ evaluation seeds.</b> The sweep runs on a tuning seed that no "
        "comparison uses (on several for a task whose single runs are noisy: "
        f"{html.escape(_multi_seed_tasks())}; a setting then scores the mean over them); the "
        "chosen setting then runs on the evaluation seeds 0 … n − 1, and "
        "seed k gives the same initialization and data to every arm of a task (paired).</li>"
        "<li><b>Grids.</b> Half-decade learning-rate grids around a centre per arm (where "
        "its sweep settles; a typical value per optimizer for Adam and SGD on the tasks the "
        "learning-rate-window row reads), crossed with weight decay where swept. When the "
        f"winner sits on an edge, the grid grows by one half-decade on that side, at most "
        f"{MAX_EXTENSIONS} times per side, until the winner has an evaluated neighbour on both "
        "sides of every swept axis (a diverged neighbour counts; a winner that a "
        "learning-rate extension added is run at the neighbouring weight decays too); the "
        "overview table gives each arm's grid status.</li>"
        "<li><b>Effect and interval.</b> Each claim is measured as a paired difference per "
        f"seed, oriented so that positive favours the claim, with a {level} Student-t "
        "interval over the pairs (pooled rows pool the pairs of several comparisons). A run "
        "that diverged or never reached the target is not dropped: it takes the worst value "
        "of the comparison (or the metric's failure value).</li>"
        "<li><b>Verdicts.</b> <i>holds</i>: the interval excludes 0 in the claimed direction "
        "and the mean effect is at least the row's stated minimum; <i>does not hold</i>: the "
        "interval excludes 0 in the opposite direction, or lies inside ±minimum (no effect "
        "that matters); for a claim of equivalence (\u201cno tuning needed\u201d) "
        "<i>holds</i> needs the interval inside ±margin and <i>does not hold</i> an interval "
        "clear of 0 with a mean beyond the margin; anything else is <i>inconclusive</i>, with "
        "the number of seeds that would likely decide it. Compound sentences are split into "
        "rows.</li>"
        "<li><b>Scope.</b> Small problems on a CPU: read each verdict as \u201con these "
        "tasks\u201d.</li></ul>")


def _html(result, summaries, verdicts, figures, command) -> str:
    e = html.escape
    cfg = result.config
    now = _dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>adaptim compare — report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>adaptim compare</h1>",
             f"<p class='small'>{e(now)}"
             f" · command: <code>{e(command)}</code> · {len(result.records)} of "
             f"{result.planned_runs} runs finished in {result.wall_seconds:.1f} s · device "
             f"{e(cfg.device)} · {cfg.jobs} process(es) × {cfg.threads} thread(s) · "
             f"evaluation seeds {cfg.seeds or 'per task (5 or more)'}"
             f" · tier: {e(getattr(cfg, 'tier', 'default'))}"
             f"{' (smoke run)' if cfg.fast else ''}</p>"]
    if result.interrupted:
        parts.append(f"<div class='banner' id='interrupted'><b>Interrupted</b> (Ctrl-C): this "
                     f"report shows the {len(result.records)} runs that finished out of "
                     f"{result.planned_runs} planned.</div>")
    ran = [v for v in verdicts if v.status != NOT_RUN]
    decisive = sum(v.status in (HOLDS, NOT_HOLD) for v in ran)
    parts.append("<h2 id='verdicts'>Verdicts on the tutorials' claims</h2>"
                 f"<p class='small'>Computed from the runs below, never written by hand: "
                 f"{decisive} of the {len(ran)} rows this tier runs are decisive "
                 f"({sum(v.status == HOLDS for v in ran)} hold, "
                 f"{sum(v.status == NOT_HOLD for v in ran)} do not)"
                 + (f"; {len(verdicts) - len(ran)} rows need <code>--extended</code>. "
                    if len(ran) < len(verdicts) else ". ") +
                 "Effect: mean paired difference, positive favours the claim, with its "
                 f"{CONFIDENCE:.0%} interval and the number of pairs n. See "
                 "<a href='#protocol'>how this was measured</a>.</p>")
    parts.append("<table><tr><th>claim (quoted) and what was tested</th><th>tutorial</th>"
                 "<th>verdict</th><th>effect [interval]</th><th>n</th><th>minimum</th>"
                 "<th>deciding numbers</th><th>plot</th></tr>")
    for v in verdicts:
        d = v.to_dict()
        link = f"<a href='{e(v.link)}'>plot</a>" if v.link else "–"
        ev = "".join(f"<li>{e(x)}</li>" for x in v.evidence)
        why = e(v.reason) + (f"<br><i>would decide it:</i> {e(v.decide_hint)}"
                             if v.decide_hint else "")
        parts.append(
            f"<tr id='claim-{e(d['id'])}'><td>“{e(d['quote'])}”"
            f"<div class='small'>{e(d['english'])}</div><div>{e(d['statement'])}</div></td>"
            f"<td>{e(d['tutorial'])}</td>"
            f"<td class='{_status_class(v.status)}'><b>{e(v.status)}</b>"
            f"<div class='small'>{why}</div></td>"
            f"<td class='num'>{e(_effect_cell(v))}<div class='small'>{e(d['unit'])}</div></td>"
            f"<td class='num'>{v.effect.n if v.effect else 0}</td>"
            f"<td class='num'>{d['min_effect']:.3g}"
            f"{' (±, equivalence)' if d['kind'] == 'equivalent' else ''}</td>"
            f"<td><ul class='ev'>{ev}</ul></td><td>{link}</td></tr>")
    parts.append("</table>")
    parts.append(_protocol(cfg))

    parts.append("<h2 id='overview'>Overview</h2><p class='small'>Per task and variant: each "
                 "optimizer's chosen learning rate, final loss (mean ± std over seeds), seeds "
                 "that reached the target loss and mean steps / seconds to reach it, optimizer "
                 "state in bytes per parameter (measured from <code>optimizer.state</code>).</p>")
    parts.append("<p>Tasks: " + " · ".join(f"<a href='#task-{e(n)}'>{e(n)}</a>"
                                           for n in figures) + "</p>")
    for name, figs in figures.items():
        task = TASKS[name]
        parts.append(f"<h2 id='task-{e(name)}'>{e(name)}: {e(task.summary)}</h2>"
                     f"<p>{e(task.description)}</p>")
        rows = [s for s in summaries if s.task == name]
        if rows:
            metric = task.test_metric
            parts.append("<table><tr><th>variant</th><th>arm</th><th>hyperparameters</th>"
                         "<th>grid</th>"
                         f"<th>final {e(task.loss_name)}</th>"
                         + (f"<th>{e(metric)}</th>" if metric else "")
                         + "<th>target</th><th>reached</th><th>steps to target</th>"
                         "<th>seconds to target</th><th>state B/param</th><th>diverged</th></tr>")
            for s in rows:
                hp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in s.hparams.items())
                grid = s.grid.get("status", "single point")
                if s.grid.get("extensions"):
                    grid += " · extended " + ", ".join(f"{k} ×{n}" for k, n
                                                       in s.grid["extensions"].items())
                points = len({tuple(h.items()) for h, _ in s.sweep})  # tuning seeds share one
                parts.append(
                    f"<tr><td>{e(s.variant)}</td><td>{e(s.arm)}</td><td>{e(hp)}</td>"
                    f"<td class='small'>{e(grid)} ({points} points)</td>"
                    f"<td class='num'>{_stat_cell(s.final_loss)}</td>"
                    + (f"<td class='num'>{_stat_cell(s.scalars.get(metric))}</td>"
                       if metric else "")
                    + f"<td class='num'>{_fmt(s.target)}</td>"
                    f"<td class='num'>{s.reached}/{len(s.seeds)}</td>"
                    f"<td class='num'>{_fmt(s.mean_steps_to_target, 4)}</td>"
                    f"<td class='num'>{_fmt(s.mean_seconds_to_target)}</td>"
                    f"<td class='num'>{s.state_bytes_per_param:.3g}</td>"
                    f"<td class='num'>{s.diverged}</td></tr>")
            parts.append("</table>")
        else:
            parts.append("<p class='small'>No run of this task finished its sweep.</p>")
        for fig_id, caption, png in figs:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure id='{e(fig_id)}'><img alt='{e(caption)}' "
                         f"src='data:image/png;base64,{data}'><figcaption>{e(caption)}"
                         "</figcaption></figure>")
    parts.append("<p class='small'>Data: <code>metrics.json</code> (every run's curves, summaries,"
                 " verdicts), <code>runs.csv</code>, <code>curves.csv</code>, "
                 "<code>plots/</code>. Same command and seeds give the same numbers on the same "
                 "machine and device.</p></body></html>")
    return "\n".join(parts)


def write_report(result, out_dir, *, command: str = "adaptim compare") -> dict:
    """Write every output file for ``result`` into ``out_dir``; returns the paths written.
    Works on a partial (interrupted) result: it reports what finished."""
    out = check_writable(out_dir)
    summaries = summarize(result.records, TASKS, getattr(result, "grids", None))
    verdicts = evaluate_claims(summaries, result.records,
                               extended=getattr(result.config, "extended", False))
    figures = _figures(result, jobs=getattr(result.config, "jobs", 1))

    plot_dir = out / "plots"
    plot_dir.mkdir(exist_ok=True)
    for figs in figures.values():
        for fig_id, _, png in figs:
            (plot_dir / f"{fig_id.removeprefix('fig-')}.png").write_bytes(png)

    runs = [_run_dict(i, r) for i, r in enumerate(result.records)]
    import adaptim

    metrics = dict(
        adaptim_version=adaptim.__version__, command=command, config=result.config.to_dict(),
        interrupted=result.interrupted, planned_runs=result.planned_runs,
        finished_runs=len(result.records), wall_seconds=result.wall_seconds,
        grids=[dict(task=k[0], variant=k[1], arm=k[2], **v)
               for k, v in getattr(result, "grids", {}).items()],
        verdicts=[v.to_dict() for v in verdicts],
        summaries=[s.to_dict() for s in summaries], runs=runs,
        notes=dict(nan="non-finite numbers are written as null",
                   final_loss="mean of the last 10% of the loss curve",
                   steps_to_target="first step at which the EMA(0.9)-smoothed loss <= target",
                   seeds="sweep runs use the tuning seed; evaluation runs seeds 0..n-1"),
    )
    (out / "metrics.json").write_text(json.dumps(_clean(metrics), indent=1))

    columns = ["run_id", "task", "variant", "arm", "optimizer", "lr", "weight_decay", "seed",
               "steps", "sweep", "final", "diverged", "final_loss", "target_loss",
               "steps_to_target", "seconds_to_target", "state_bytes_per_param", "test_accuracy",
               "test_loss", "wall_seconds"]
    with open(out / "runs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for run in runs:
            row = dict(run, lr=run["hparams"]["lr"],
                       weight_decay=run["hparams"].get("weight_decay", ""),
                       test_accuracy=run["scalars"].get("test_accuracy", ""),
                       test_loss=run["scalars"].get("test_loss", ""))
            w.writerow(["" if row[c] is None else row[c] for c in columns])
    with open(out / "curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run_id", "curve", "step", "value"])
        for run in runs:
            for name, values in run["curves"].items():
                for step, value in enumerate(values, start=1):
                    w.writerow([run["run_id"], name, step, f"{value:.7g}"])
            for name, sp in run["sparse"].items():
                for step, value in zip(sp["steps"], sp["values"]):
                    w.writerow([run["run_id"], name, step, f"{value:.7g}"])

    (out / "report.html").write_text(_html(result, summaries, verdicts, figures, command),
                                     encoding="utf-8")
    return dict(report=out / "report.html", metrics=out / "metrics.json", runs=out / "runs.csv",
                curves=out / "curves.csv", plots=plot_dir)
