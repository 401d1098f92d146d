"""Options shared by the grid-run commands (ablate, generate, score, report, status, validate)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

GridOpt = Annotated[
    str, typer.Option("--grid", help="A shipped grid (`arlon-bench grids` lists them) or the path of a grid YAML file.")
]
GridFileArg = Annotated[str, typer.Argument(help="A grid YAML file, or the name of a shipped grid.")]
RunArg = Annotated[str, typer.Argument(help="A run folder (runs/<name>), or a run name under ./runs.")]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="auto (local on a GPU, processes on several CPU cores), local (this process), "
        "processes (worker processes here) or ray (Ray tasks).",
    ),
]
AddressOpt = Annotated[
    Optional[str], typer.Option("--address", help="--executor ray: the cluster to join, e.g. auto (default: start one here).")
]
WorkersOpt = Annotated[
    Optional[int], typer.Option("--workers", help="--executor processes or ray: worker processes (default: the CPU cores here).")
]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="Only the first N prompts (a smoke run).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo every video and score of the run (cached checkpoints are kept).")]
OutOpt = Annotated[Optional[str], typer.Option("--out", help="Run folder (default: runs/<grid name>).")]
