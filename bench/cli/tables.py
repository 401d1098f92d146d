"""Rich tables for the grid-run commands: results, failures, run status.

Labels, names and error messages in these tables are user text: they go in as `Text`, never as
markup, so the tables print verbatim on any console (a researcher's own `Console()` included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from bench.executors.work import UnitFailure
from bench.grids import Grid
from bench.metrics import METRICS
from bench.report.stats import is_significant
from bench.results import format_estimate
from bench.runner import CellStatus, RunSummary

SHOWN_FAILURES = 20
INTERVAL_NOTE = "mean [95% bootstrap interval over prompts]"
DIFFERENCE_NOTE = "paired difference on the same prompts and seeds [95% interval]; bold: significant"
UNBOUNDED = 100_000


def _short(metric: str) -> str:
    return metric.removeprefix("toy_")


@dataclass
class ResultsTable:
    """One row per cell, per metric `mean [low, high]` as in results.md and the report's tables.

    Printed, it fits the console's width: when every metric does not fit in one table, the metrics
    are split over several tables of whole columns, each repeating the cell column, and a last line
    names `saved_at` (the whole table in one file). No column is ever dropped or cut.
    """

    grid: Grid
    title: str
    rows: list[tuple[str, str | None, dict[str, Text]]]  # (cell label, videos or None, {metric: entry})
    saved_at: Path | str | None = None
    first_column: str = "cell"

    def parts(self, console: Console, options: ConsoleOptions) -> list[Table]:
        """The fewest tables of consecutive metric columns, in the grid's order, that fit the width."""
        width = options.max_width
        unbounded = options.update_width(UNBOUNDED)  # a table's natural width, before rich squeezes it
        groups: list[list[str]] = []
        for metric in self.grid.metrics:
            if groups:
                candidate = self._table(groups[-1] + [metric], first=len(groups) == 1, width=width)
                if Measurement.get(console, unbounded, candidate).maximum <= width:
                    groups[-1].append(metric)
                    continue
            groups.append([metric])
        groups = groups or [[]]
        return [
            self._table(metrics, first=i == 0, width=width, part=(i + 1, len(groups)) if len(groups) > 1 else None)
            for i, metrics in enumerate(groups)
        ]

    def _table(self, metrics: list[str], first: bool, width: int, part: tuple[int, int] | None = None) -> Table:
        title = self.title if first else self.grid.name
        title += f" ({part[0]}/{part[1]})" if part else ""
        out = Table(title=Text(title), title_justify="left")
        labels = [label for label, _, _ in self.rows]
        # A long label wraps within two fifths of the width rather than crowding out the metrics.
        label_width = max(12, 2 * width // 5)
        out.add_column(self.first_column, min_width=min(max(map(len, labels), default=4), label_width), max_width=label_width, overflow="fold")
        with_videos = first and any(videos is not None for _, videos, _ in self.rows)
        if with_videos:
            out.add_column("videos", justify="right")
        for metric in metrics:
            arrow = "↑" if METRICS.get(metric).higher_is_better else "↓"
            out.add_column(Text(f"{_short(metric)} {arrow}"), justify="right", no_wrap=True)
        for label, videos, entries in self.rows:
            values = [entries.get(m, Text("-")) for m in metrics]
            out.add_row(Text(label), *([Text(str(videos))] if with_videos else []), *values)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        parts = self.parts(console, options)
        yield from parts
        if len(parts) > 1:
            where = f"; in one table: {self.saved_at}" if self.saved_at else ""
            yield Text(f"(the metrics in {len(parts)} tables to fit {options.max_width} columns{where})")


def results_rich_table(grid: Grid, table: pd.DataFrame, saved_at: Path | str | None = None) -> ResultsTable:
    """The results table to print: see `ResultsTable`."""
    rows = [
        (
            str(row["cell"]), str(row["videos"]),
            {m: Text(format_estimate(row[m], row[f"{m}_low"], row[f"{m}_high"])) for m in grid.metrics if m in row},
        )
        for _, row in table.iterrows()
    ]
    return ResultsTable(grid, f"{grid.name}: {INTERVAL_NOTE}", rows, saved_at)


def differences_rich_table(grid: Grid, summary: pd.DataFrame, saved_at: Path | str | None = None) -> ResultsTable | None:
    """Each cell's paired difference from its reference cell (`bench.report.stats.summarize`), per
    metric `+d [low, high]`, bold where it is significant (interval excludes 0 and p < 0.05); None
    when no cell has a reference."""
    compared = summary[summary["reference"].notna()]
    if compared.empty:
        return None
    rows = []
    for (label, reference), frame in compared.groupby(["cell", "reference"], sort=False):
        entries = {}
        for _, row in frame.iterrows():
            if row["metric"] in grid.metrics and not pd.isna(row["diff"]):
                text = format_estimate(row["diff"], row["diff_low"], row["diff_high"], signed=True)
                entries[row["metric"]] = Text(text, style="bold" if is_significant(row) else "")
        rows.append((f"{label} - {reference}", None, entries))
    return ResultsTable(grid, f"{grid.name}: {DIFFERENCE_NOTE}", rows, saved_at, first_column="cells")


def failures_rich_table(failures: list[UnitFailure]) -> Table:
    out = Table(title=f"{len(failures)} unit(s) failed (details in failures.json)", title_justify="left")
    for column in ("phase", "unit", "error"):
        out.add_column(column, overflow="fold")
    for item in failures[:SHOWN_FAILURES]:
        out.add_row(Text(item.phase), Text(item.unit), Text(item.error))
    if len(failures) > SHOWN_FAILURES:
        out.add_row("", f"... {len(failures) - SHOWN_FAILURES} more", "")
    return out


def status_rich_table(grid: Grid, statuses: list[CellStatus]) -> Table:
    out = Table(title=Text(f"{grid.name}: what is done per cell"), title_justify="left")
    for column in ("cell", "id", "checkpoints", "videos", "scores"):
        out.add_column(column, justify="left" if column in ("cell", "id") else "right", overflow="fold")
    for s in statuses:
        out.add_row(
            Text(s.label + (" (baseline)" if s.is_baseline and s.label != "baseline" else "")),
            s.cell_id,
            "yes" if s.has_checkpoints else "-",
            f"{s.videos_done}/{s.videos_total}",
            f"{s.scores_done}/{s.scores_total}",
        )
    return out


def counts_line(summary: RunSummary) -> str:
    """`train 2 run, 6 cached | videos 18 made, 0 already done | scores 54 computed, 0 current`."""
    c = summary.counts
    parts = [
        f"train {c['train'].run} run, {c['train'].skipped} cached",
        f"videos {c['generate'].run} made, {c['generate'].skipped} already done",
        f"scores {c['score'].run} computed, {c['score'].skipped} current",
    ]
    failed = sum(counts.failed for counts in c.values())
    if failed:
        parts.append(f"{failed} failed")
    return " | ".join(parts) + f"  ({summary.wall_s.get('total', 0):.1f} s)"
