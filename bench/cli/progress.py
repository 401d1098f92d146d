"""Rich progress bars behind the library's plain progress callbacks."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def rich_progress(description: str, console: Console | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yield a `progress(done, total)` callback drawing one bar; a new pass restarts it."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def task_bars(console: Console) -> Iterator[Callable[..., None]]:
    """One bar per task the library reports (training stages, latent pools, videos, scores), with
    the last loss of a training stage: a `bench.executors.work.Progress`."""
    with Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(task: str, done: int, total: int, loss: float | None = None) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total, loss="")
            text = f"loss {loss:.4f}" if loss is not None and math.isfinite(loss) else ""
            bar.update(tasks[task], completed=done, total=total, **({"loss": text} if text else {}))

        yield update
