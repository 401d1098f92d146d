"""What a grid run needs from this machine before it starts: the released weights its cells load
(Open-Sora v1.2's VAE and STDiT3, T5), the data sets its cells train on, and the weights of the VBench
dimensions it scores.

A paper-preset grid on a machine without those weights would otherwise get as far as its first
training unit or video and fail there, one cell at a time. `check_run_inputs` stops the run before
anything is trained or generated, with one line naming everything missing at once. VBench's weights
alone never stop a run (its videos are still made; those dimensions' scores fail with their fix, as
`arlon-bench vbench doctor` lists them); they are named in the same line when the run stops anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from arlon.errors import MissingWeightsError
from arlon.pipelines.components import missing_pretrained
from bench.grids import Cell, Grid
from bench.metrics import METRICS

FIX = (
    "point each setting at a local copy or a downloaded Hugging Face id (--set vae.pretrained=DIR; "
    "docs/opensora-v1.2-notes.md), put each data set where data.source says (or --set it), and get "
    "VBench's files as `arlon-bench vbench doctor` lists them"
)


def missing_vbench_files(metrics: Sequence[str]) -> list[str]:
    """The weight files (and the environment) the VBench dimensions among `metrics` lack."""
    from bench.metrics.vbench.doctor import doctor

    dimensions = [metric for metric in metrics if METRICS.get(metric).backend == "vbench"]
    if not dimensions:
        return []
    report = doctor(dimensions)
    missing = [] if report.environment_ready else [f"VBench environment {report.environment}"]
    for status in report.dimensions:
        missing += [f"VBench {status.dimension}: {file.expected}" for file in status.files if not file.present]
    return list(dict.fromkeys(missing))


def missing_run_inputs(grid: Grid, cells: Sequence[Cell]) -> tuple[list[str], list[str]]:
    """(released weights and training data the cells lack, VBench files the grid's metrics lack)."""
    weights: list[str] = []
    for cell in cells:
        weights += missing_pretrained(cell.config)
    return list(dict.fromkeys(weights + missing_training_data(cells))), missing_vbench_files(grid.metrics)


def missing_training_data(cells: Sequence[Cell]) -> list[str]:
    """The data.source of each cell that trains (not the baseline) when it is neither the toy world nor
    an existing CSV or prepared folder (paper Table 5 names three data sets)."""
    missing = []
    for cell in cells:
        source = cell.data.source
        if not cell.is_baseline and source != "toyworld" and not Path(source).exists():
            missing.append(f"data.source {source!r} (cell {cell.label}: a CSV of videos and captions, or a prepared folder)")
    return missing


def check_run_inputs(grid: Grid, cells: Sequence[Cell]) -> None:
    """MissingWeightsError naming every missing file when a cell's released weights or data are missing."""
    weights, vbench = missing_run_inputs(grid, cells)
    if weights:
        named = "; ".join(weights + vbench)
        raise MissingWeightsError(f"grid {grid.name!r} cannot run here, weights or data missing: {named}. Fix: {FIX}")
