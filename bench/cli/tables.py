"""Rich tables for the grid-run commands: results, failures, run status."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table

from bench.executors.work import UnitFailure
from bench.grids import Grid
from bench.metrics import METRICS
from bench.runner import CellStatus, RunSummary

SHOWN_FAILURES = 20


def _short(metric: str) -> str:
    return metric.removeprefix("toy_")


def _missing(value) -> bool:
    return value is None or isinstance(value, float) and math.isnan(value)


def results_rich_table(grid: Grid, table: pd.DataFrame) -> Table:
    """One row per cell: mean ± half the 95% interval per metric (full intervals are in results.csv)."""
    out = Table(title=f"{grid.name}: mean ± half the 95% bootstrap interval", title_justify="left", show_lines=True)
    out.add_column("cell", no_wrap=True, min_width=max((len(c.label) for c in grid.cells), default=4))
    out.add_column("videos", justify="right")
    for metric in grid.metrics:
        arrow = "↑" if METRICS.get(metric).higher_is_better else "↓"
        out.add_column(f"{_short(metric)} {arrow}", justify="right", overflow="fold", min_width=6)
    for _, row in table.iterrows():
        values = []
        for metric in grid.metrics:
            mean, low, high = row[metric], row[f"{metric}_low"], row[f"{metric}_high"]
            if _missing(mean):
                values.append("-")
            elif _missing(low) or _missing(high):
                values.append(f"{mean:.3f}")
            else:
                values.append(f"{mean:.3f}\n±{(high - low) / 2:.3f}")  # two short lines fit many metrics
        out.add_row(str(row["cell"]), str(row["videos"]), *values)
    return out


def failures_rich_table(failures: list[UnitFailure]) -> Table:
    out = Table(title=f"{len(failures)} unit(s) failed (details in failures.json)", title_justify="left")
    for column in ("phase", "unit", "error"):
        out.add_column(column, overflow="fold")
    for item in failures[:SHOWN_FAILURES]:
        out.add_row(item.phase, item.unit, item.error)
    if len(failures) > SHOWN_FAILURES:
        out.add_row("", f"... {len(failures) - SHOWN_FAILURES} more", "")
    return out


def status_rich_table(grid: Grid, statuses: list[CellStatus]) -> Table:
    out = Table(title=f"{grid.name}: what is done per cell", title_justify="left")
    for column in ("cell", "id", "checkpoints", "videos", "scores"):
        out.add_column(column, justify="left" if column in ("cell", "id") else "right")
    for s in statuses:
        out.add_row(
            s.label + (" (baseline)" if s.is_baseline and s.label != "baseline" else ""),
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
