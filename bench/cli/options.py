"""Options shared by several commands, declared once as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

PresetOpt = Annotated[str, typer.Option("--preset", help="Preset configuration: tiny (embedded default) or paper.")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config field, e.g. --set injection.layers=first:8 (repeatable)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Base seed: the same seed gives the same video.")]
CheckpointOpt = Annotated[
    Optional[str],
    typer.Option("--checkpoint", help="Directory of trained component checkpoints (written by `arlon-bench train`)."),
]
RandomInitOpt = Annotated[
    bool,
    typer.Option(
        "--random-init",
        help="Run with untrained, randomly initialised weights (smoke tests and speed checks; the video is noise).",
    ),
]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda if available).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Model dtype: fp32 or bf16 (bf16 on GPU).")]
