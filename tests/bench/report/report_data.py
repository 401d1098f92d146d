"""Synthetic per-video scores for report and compare tests: a known mean per (cell, metric), a
shared per-prompt difficulty (so videos of a prompt correlate), and VBench-style weights."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.grids import Grid, load_grid

TABLE3_METRICS = (
    "subject_consistency", "background_consistency", "motion_smoothness",
    "dynamic_degree", "aesthetic_quality", "imaging_quality",
)
TABLE2_METRICS = (
    "dynamic_degree", "aesthetic_quality", "imaging_quality", "subject_consistency", "background_consistency",
    "motion_smoothness", "temporal_flickering", "temporal_style", "overall_consistency", "scene", "object_class",
)


def table3_grid(metrics=TABLE3_METRICS, extra: list[str] | None = None) -> Grid:
    return load_grid("table3", [f"metrics=[{', '.join(metrics)}]", *(extra or [])])


def synthetic_scores(grid: Grid, prompts: int = 12, samples: int = 2, shift: dict[str, float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Long scores (bench.results.SCORE_COLUMNS) with value = base + shift[cell] + prompt difficulty + noise.

    Dynamic degree is 0/1 per video, imaging quality on VBench's per-video 0-100 scale, weighted
    dimensions carry a weight (frame pairs) per video."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    difficulty = rng.normal(0.0, 0.02, prompts)
    rows = []
    for cell_index, cell in enumerate(grid.cells):
        for metric in grid.metrics:
            for p in range(prompts):
                for k in range(samples):
                    value = 0.6 + 0.01 * cell_index + shift.get(cell.label, 0.0) + difficulty[p] + rng.normal(0.0, 0.01)
                    weight = None
                    if metric == "dynamic_degree":
                        value = float(value > 0.6)
                    elif metric == "imaging_quality":
                        value = value * 100
                    elif metric in ("subject_consistency", "background_consistency", "scene", "object_class"):
                        weight = float(15 + (p % 3))
                    rows.append((cell.label, cell.id, f"p{p:02d}-{k}", f"p{p:02d}", k, metric, float(value), weight))
    return pd.DataFrame(rows, columns=["cell", "cell_id", "video", "prompt_id", "sample", "metric", "value", "weight"])
