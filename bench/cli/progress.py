"""Rich progress bars behind the library's plain progress callbacks.

The descriptions are task names built from cell labels, which are user text: they are never read as
markup, and on a narrow terminal the bar shrinks and a long name loses its middle, so that the name's
both ends, the counts and the time stay readable (rich would otherwise cut the columns to "12… 0:0…").
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Column

# What a bar's row needs beside its description: the bar at its narrowest, "123/456", "loss 0.1234",
# "0:01:23" and the spaces between the columns.
MIN_BAR = 10
OTHER_COLUMNS = MIN_BAR + 7 + 11 + 7 + 4
MIN_DESCRIPTION = 12


def ellipsize_middle(text: str, limit: int) -> str:
    """`text` cut to `limit` characters by replacing its middle with "…" (both ends tell tasks apart:
    "train injector (layers=first:3)" and "... (layers=first:14)")."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    head = limit // 2
    tail = limit - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def description_limit(console: Console) -> int:
    """The longest description that leaves the other columns of a row their room."""
    return max(MIN_DESCRIPTION, console.width - OTHER_COLUMNS)


def _columns(with_loss: bool) -> list[ProgressColumn]:
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(bar_width=None, table_column=Column(min_width=MIN_BAR, max_width=40)),  # the part that shrinks
        MofNCompleteColumn(),
    ]
    if with_loss:
        columns.append(TextColumn("{task.fields[loss]}", markup=False))
    columns.append(TimeElapsedColumn())
    return columns


@contextmanager
def rich_progress(description: str, console: Console | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yield a `progress(done, total)` callback drawing one bar; a new pass restarts it."""
    with Progress(*_columns(with_loss=False), console=console, transient=False) as bar:
        task = bar.add_task(ellipsize_middle(description, description_limit(bar.console)), total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def task_bars(console: Console) -> Iterator[Callable[..., None]]:
    """One bar per task the library reports (training stages, latent pools, videos, scores), with
    the last loss of a training stage: a `bench.executors.work.Progress`."""
    with Progress(*_columns(with_loss=True), console=console) as bar:
        tasks: dict[str, int] = {}

        def update(task: str, done: int, total: int, loss: float | None = None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(ellipsize_middle(task, description_limit(bar.console)), total=total, loss="")
            text = f"loss {loss:.4f}" if loss is not None and math.isfinite(loss) else ""
            bar.update(tasks[task], completed=done, total=total, **({"loss": text} if text else {}))

        yield update
