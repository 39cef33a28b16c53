"""The ``report`` stage: Markdown tables and PNG plots from a folder of ablation runs.

Runs are laid out as ``<root>/<table>/<row>/seed<N>/`` (``ulmfit ablate``): a classifier folder
of ``ulmfit train`` (metrics.json, log.jsonl) with the ``eval_test.json`` of ``ulmfit evaluate``.
Row folders sort by their order number; the table spec (:mod:`ulmfit.ablations`) gives each row
its name, the paper's figure and its low-shot point, and a folder it does not know (a trick spec
of one's own) is shown as it is named. Collecting, aggregating and formatting are pure functions;
the plots come last.
"""
from __future__ import annotations

import collections
import datetime
import json
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .ablations import find_row
from .artefacts import ENCODER, EVAL_REPORT, LOG, METRICS
from .errors import UlmfitError
from .files import atomic_path, read_json, write_text

EVAL_TEST = EVAL_REPORT.format(split="test")
REPORT = "report.md"
LOWSHOT_TABLE = "lowshot"
NO_VALUE = "–"

PAPER_TEST_ERROR = 3.6  # ULMFiT's TREC-6 test error (%), same paper


@dataclass(frozen=True)
class Run:
    """What the report needs of one seed's folder; errors are fractions, as the files store them."""

    table: str
    row: str                        # the folder name, order prefix included
    seed: str
    test_error: float
    valid_error: float | None       # of the weights kept (None: e.g. an ensemble)
    time_s: float | None
    peak_rss_mb: float | None
    train_docs: int | None
    machine: str | None
    valid_curve: list[float] = field(default_factory=list)  # validation error per epoch


@dataclass(frozen=True)
class RowSummary:
    """One table row: its runs' statistics in percent (std None for a single value)."""

    name: str                       # the spec's name of the row, else its folder's
    seeds: int
    test_error: tuple[float, float | None]
    valid_error: tuple[float, float | None] | None
    time_s: float | None
    peak_rss_mb: float | None       # the largest over the seeds
    train_docs: float | None
    paper: float | None
    lowshot: tuple[str, int | None] | None  # the low-shot curve and size (None: all) of the row


# -- collecting ---------------------------------------------------------------------------------

def natural_key(name: str) -> tuple:
    """Sort key reading digit runs as numbers, so "seed10" comes after "seed2"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def display_name(table: str, row: str) -> str:
    """The spec's name of a row folder (without its order number), or the folder's name."""
    spec = find_row(table, row)
    return spec.name if spec else row


def describe_machine(machine: object) -> str | None:
    """A metrics.json ``machine`` entry (text or a dict of facts) as one line."""
    if machine is None or isinstance(machine, str):
        return machine
    if isinstance(machine, dict):
        return ", ".join(f"{k} {v}" for k, v in machine.items())
    return json.dumps(machine)


def read_valid_curve(path: Path) -> list[float]:
    """Validation error per epoch from a log.jsonl (empty when the run has none)."""
    if not path.exists():
        return []
    try:
        entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise UlmfitError(f"{path}: not valid JSON lines ({e})") from None
    return [entry["valid_error"] for entry in entries if "valid_error" in entry]


def skip_reason(folder: Path) -> str | None:
    """Why a seed folder is no finished, evaluated classifier run (None if it is one)."""
    missing = [name for name in (METRICS, EVAL_TEST) if not (folder / name).exists()]
    if missing:
        return f"no {' or '.join(missing)}"
    if "error_rate" not in read_json(folder / EVAL_TEST):
        return f"no error_rate in {EVAL_TEST}"
    return None


def read_run(folder: Path) -> Run:
    """The run in ``<table>/<row>/<seed>`` folder ``folder`` (see ``skip_reason``)."""
    metrics, evaluation = read_json(folder / METRICS), read_json(folder / EVAL_TEST)
    return Run(table=folder.parent.parent.name, row=folder.parent.name, seed=folder.name,
               test_error=evaluation["error_rate"],
               valid_error=metrics.get("valid_error", metrics.get("best_valid_error")),
               time_s=metrics.get("time_s"), peak_rss_mb=metrics.get("peak_rss_mb"),
               train_docs=metrics.get("train_docs"), machine=describe_machine(metrics.get("machine")),
               valid_curve=read_valid_curve(folder / LOG))


def collect_runs(root: Path) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The runs under ``root`` in table, row and seed order, and the folders skipped with why."""
    if not root.is_dir():
        raise UlmfitError(f"{root}: folder not found")
    runs, skipped = [], []
    folders = sorted((p for p in root.glob("*/*/*") if p.is_dir()),
                     key=lambda p: [natural_key(part) for part in p.relative_to(root).parts])
    for folder in folders:
        if (folder / ENCODER).exists() and not (folder / EVAL_TEST).exists():
            continue  # a language model the rows start from (``ulmfit ablate``'s lms/), not a run
        reason = skip_reason(folder)
        if reason:
            skipped.append((folder, reason))
        else:
            runs.append(read_run(folder))
    if not runs:
        raise UlmfitError(f"{root}: no runs found (expected <table>/<row>/seed<N>/ folders with "
                          f"{METRICS} and {EVAL_TEST})")
    return runs, skipped


# -- aggregating --------------------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value: no spread to estimate)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def summarize_row(table: str, row: str, runs: Sequence[Run]) -> RowSummary:
    """One row's statistics over its seeds; fields no run recorded stay None."""
    valid = [100 * v for v in _present([r.valid_error for r in runs])]
    times, rss, docs = (_present([getattr(r, name) for r in runs]) for name in ("time_s", "peak_rss_mb", "train_docs"))
    spec = find_row(table, row)
    return RowSummary(name=display_name(table, row), seeds=len(runs), test_error=mean_std([100 * r.test_error for r in runs]),
                      valid_error=mean_std(valid) if valid else None,
                      time_s=statistics.fmean(times) if times else None, peak_rss_mb=max(rss) if rss else None,
                      train_docs=statistics.fmean(docs) if docs else None,
                      paper=spec.paper if spec else None, lowshot=spec.lowshot if spec else None)


def group_runs(runs: Sequence[Run]) -> dict[str, dict[str, list[Run]]]:
    """``{table: {row: runs}}``, keeping the runs' order."""
    tables: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        tables.setdefault(run.table, {}).setdefault(run.row, []).append(run)
    return tables


def summarize(runs: Sequence[Run]) -> dict[str, list[RowSummary]]:
    """Every table's rows, in the runs' order."""
    return {table: [summarize_row(table, row, row_runs) for row, row_runs in rows.items()]
            for table, rows in group_runs(runs).items()}


# -- formatting ---------------------------------------------------------------------------------

def format_number(value: float | None, digits: int = 2) -> str:
    return NO_VALUE if value is None else f"{value:.{digits}f}"


def format_mean_std(stat: tuple[float, float | None] | None) -> str:
    if stat is None:
        return NO_VALUE
    mean, std = stat
    return f"{mean:.2f} ± {format_number(std)}"


def format_table(rows: Sequence[RowSummary]) -> str:
    """A Markdown table; the peak-memory column only when some run recorded it."""
    with_rss = any(r.peak_rss_mb is not None for r in rows)
    header = ["row", "seeds", "test error %", "valid error %", "time/run s"] + \
             (["peak RSS MB"] if with_rss else []) + ["paper valid error %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r.name, str(r.seeds), format_mean_std(r.test_error), format_mean_std(r.valid_error),
                 format_number(r.time_s, 0)] + ([format_number(r.peak_rss_mb, 0)] if with_rss else []) + \
                [format_number(r.paper)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_report(root: Path, runs: Sequence[Run], skipped: Sequence[tuple[Path, str]],
                  plots: dict[str, list[Path]], date: str) -> str:
    """The whole Markdown report: what was read, one table (and its plots) per ablation table."""
    lines = ["# ULMFiT ablation results", "",
             f"Read `{root}` on {date}: {len(runs)} runs. Errors in %, mean ± sample standard deviation "
             f"over seeds ({NO_VALUE} for one seed); valid error is that of the weights the run kept "
             f"(runs before --keep_best: the best epoch's). Paper: TREC-6 "
             f"validation error of Howard & Ruder (2018), whose ULMFiT test error is {PAPER_TEST_ERROR}%."]
    machines = collections.Counter(run.machine for run in runs if run.machine)
    if machines:
        lines += [""] + [f"- machine: {machine} ({n} runs)" for machine, n in machines.items()]
    for table, rows in summarize(runs).items():
        lines += ["", f"## {table}", "", format_table(rows), ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots.get(table, [])]
    if skipped:
        lines += ["", "## Skipped folders", ""]
        lines += [f"- `{folder.relative_to(root)}`: {reason}" for folder, reason in skipped]
    return "\n".join(lines) + "\n"


# -- plots --------------------------------------------------------------------------------------

def _new_axes(width: float = 7.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_errors(table: str, rows: Sequence[RowSummary], path: Path) -> Path:
    """Bar chart of each row's mean test error with its standard deviation as error bar."""
    fig, ax = _new_axes(max(5.0, 1.0 + 0.8 * len(rows)))
    ax.bar([r.name for r in rows], [r.test_error[0] for r in rows],
           yerr=[r.test_error[1] or 0.0 for r in rows], capsize=4, color="tab:blue")
    ax.set_ylabel("test error %")
    ax.set_title(f"{table}: test error (mean ± std over seeds)")
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def plot_lowshot(rows: Sequence[RowSummary], path: Path) -> Path:
    """Test error against the number of labelled training documents (log scale), per method.

    "all" rows sit at their runs' mean ``train_docs``; without it they are left out.
    """
    curves: dict[str, list[tuple[float, RowSummary]]] = {}
    for r in rows:
        point = r.lowshot
        if point is not None:
            n = point[1] if point[1] is not None else r.train_docs
            if n is not None:
                curves.setdefault(point[0], []).append((n, r))
    fig, ax = _new_axes()
    for method, points in curves.items():
        points.sort(key=lambda p: p[0])
        ax.errorbar([n for n, _ in points], [r.test_error[0] for _, r in points],
                    yerr=[r.test_error[1] or 0.0 for _, r in points], marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training documents")
    ax.set_ylabel("test error %")
    ax.set_title("low-shot: test error vs training examples")
    if curves:
        ax.legend()
    return _save(fig, path)


def plot_curves(table: str, rows: dict[str, list[Run]], path: Path) -> Path:
    """Validation error per epoch of each row's first seed."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = _new_axes()
    for row, runs in rows.items():
        curve = runs[0].valid_curve
        if curve:
            ax.plot(range(1, len(curve) + 1), [100 * e for e in curve], marker=".",
                    label=f"{display_name(table, row)} ({runs[0].seed})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid error %")
    ax.set_title(f"{table}: training curves")
    if ax.lines:
        ax.legend(fontsize="small")
    return _save(fig, path)


def write_plots(runs: Sequence[Run], out_dir: Path) -> dict[str, list[Path]]:
    """Every table's bar chart and training curves, and the low-shot curve: ``{table: paths}``."""
    grouped = group_runs(runs)
    plots = {}
    for table, rows in summarize(runs).items():
        plots[table] = [plot_errors(table, rows, out_dir / f"{table}_error.png")]
        if table == LOWSHOT_TABLE:
            plots[table].append(plot_lowshot(rows, out_dir / f"{table}_curve.png"))
        plots[table].append(plot_curves(table, grouped[table], out_dir / f"{table}_training.png"))
    return plots


# -- the stage ----------------------------------------------------------------------------------

def report(runs_dir: str, out: str | None = None) -> dict:
    """Turn ablation run folders into a Markdown report with tables and PNG plots.

    Reads ``RUNS_DIR/<table>/<row>/seed<N>/`` (written by ``ulmfit ablate``: metrics.json,
    log.jsonl and eval_test.json of ``ulmfit train`` and ``ulmfit evaluate``); language models
    (folders with encoder.pt) are left out, other folders without metrics.json and eval_test.json
    (unfinished runs) are skipped and listed.
    Per table: test and validation error (mean ± std over seeds), time per run, the paper's
    figure where the table spec (ulmfit.ablations) has one, a bar chart and training curves; the "lowshot" table also gets
    error against the number of labelled examples.

    Args:
        runs_dir: the root of the run folders, e.g. runs/cpu/ablations/trec6.
        out: folder for report.md and the PNGs; default: runs_dir.

    Returns:
        ``{"report", "plots", "runs", "skipped"}``: the paths written, the number of runs read and
        the folders skipped.
    """
    root = Path(runs_dir)
    out_dir = Path(out) if out else root
    runs, skipped = collect_runs(root)
    plots = write_plots(runs, out_dir)
    path = out_dir / REPORT
    write_text(path, format_report(root, runs, skipped, plots, datetime.date.today().isoformat()))
    for folder, reason in skipped:
        print(f"skipped {folder}: {reason}", file=sys.stderr)
    return {"report": str(path), "plots": [str(p) for paths in plots.values() for p in paths],
            "runs": len(runs), "skipped": [str(folder) for folder, _ in skipped]}
