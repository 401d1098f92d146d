"""`arlon-bench report`: the results table of a run as Markdown and CSV, from the scores it holds."""

from __future__ import annotations

from rich.console import Console

from bench.cli.run_options import RunArg
from bench.cli.tables import results_rich_table
from bench.runner import open_run, report_run

EXAMPLES = """Examples:

  arlon-bench report runs/layers

  arlon-bench report layers                                      # a run name under ./runs

Writes results.md, results.csv (+ results.parquet with pyarrow) and scores.csv in the run folder.
"""


def report(run: RunArg) -> None:
    """Write a run's results table (Markdown + CSV) from its stored scores; computes nothing new."""
    store, grid, limit = open_run(run)
    table, files = report_run(store, grid, limit)
    console = Console()
    console.print(results_rich_table(grid, table))
    for path in files.values():
        console.print(f"wrote {path}", highlight=False)
