"""`arlon-bench report`: a run's tables (paper layouts, intervals over prompts, paired differences),
figures and HTML page, from the scores it holds; computes nothing new."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from bench.cli.console import cli_console, styled
from bench.cli.run_options import RunArg
from bench.cli.tables import results_rich_table
from bench.grids import Grid
from bench.prompts import load_prompts
from bench.report import Report, write_report
from bench.results import run_coverage
from bench.runner import open_run, report_run
from bench.store import RunStore

EXAMPLES = """Examples:

  arlon-bench report runs/layers

  arlon-bench report layers                                      # a run name under ./runs

  arlon-bench report runs/table3 --out paper/tables --videos 0    # no video grid in the page

Writes results.md, results.csv (+ results.parquet with pyarrow) and scores.csv in the run folder,
and under <run>/report/: tables.md, tables.tex (booktabs), tables.csv, summary.csv, figures/*.png
and *.pdf, and report.html (self-contained: tables, figures, videos, provenance).
Exit code 0: the report covers every video and score of the run; 1: it was written, but videos that
are not generated or cannot be read (named) or missing scores are left out (warnings say which and
the command that fills them in); 2: nothing to report (no score yet) or an input error.
"""

ReportOutOpt = Annotated[Optional[str], typer.Option("--out", help="Report folder (default: <run>/report).")]
VideosOpt = Annotated[int, typer.Option("--videos", help="Prompts in the page's video grid (0: none).")]


def print_report(console: Console, report: Report) -> None:
    """Where the report's files are, the page last."""
    for name, path in report.files.items():
        if name != "report.html":
            console.print(f"wrote {path}", soft_wrap=True)
    console.print(f"wrote {len(report.figures)} figure(s) (PNG + PDF) in {report.directory / 'figures'}", soft_wrap=True)
    console.print(f"report: {report.files['report.html']}", soft_wrap=True)


def write_run_report(console: Console, store: RunStore, grid: Grid, limit: int | None, out: str | None = None, videos: int = 6) -> Report:
    report = write_report(store, grid, limit, out=out, video_prompts=videos)
    print_report(console, report)
    return report


def report(run: RunArg, out: ReportOutOpt = None, videos: VideosOpt = 6) -> None:
    """Write a run's tables, figures and HTML report from its stored scores; computes nothing new."""
    store, grid, limit = open_run(run)
    table, files = report_run(store, grid, limit)
    console = cli_console()
    console.print(results_rich_table(grid, table, saved_at=files.get("results.md")))
    for path in files.values():
        console.print(f"wrote {path}", soft_wrap=True)
    write_run_report(console, store, grid, limit, out, videos)
    if show_coverage(store, grid, limit):
        raise typer.Exit(1)


def show_coverage(store: RunStore, grid: Grid, limit: int | None) -> bool:
    """Warn (on stderr) about every gap of the run's tables; whether there is one."""
    coverage = run_coverage(grid, store, load_prompts(grid.prompts, limit))
    lines = coverage.warnings(store)
    errors = cli_console(stderr=True)
    for line in lines:
        errors.print(styled("warning:", "yellow", line), soft_wrap=True)
    return bool(lines)
