"""Per-cell statistics of a run over its prompts: each metric's mean with a 95% cluster-bootstrap
interval (prompts resampled with all their videos), and each cell's paired difference from its
reference cell on the same (prompt, sample) videos, with its interval and a sign-flip p-value.

The reference of a cell is the grid's baseline cell that agrees with it on every other setting
(in the `steps` grid: the baseline at the same number of steps), else the first baseline cell, else
the first cell of the grid. A reference cell has no difference of its own.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.grids import Cell, Grid
from bench.metrics import METRICS, aggregate
from bench.stats import DEFAULT_RESAMPLES, cluster_bootstrap_mean, paired_difference

# Aggregations whose aggregate is a (weighted) mean of per-video values, so that prompts can be
# resampled: {aggregation: (scale of the per-video values, whether per-video weights apply)}.
MEAN_LIKE_AGGREGATIONS = {
    "mean": (1.0, False),
    "fraction_true": (1.0, False),  # VBench's dynamic degree: the mean of 1.0 / 0.0 per video
    "mean_over_100": (0.01, False),  # VBench's imaging quality: per-video 0-100, aggregate /100
    "pair_weighted_mean": (1.0, True),  # VBench's subject/background consistency
    "frame_weighted_mean": (1.0, True),  # VBench's scene / object class
}

SIGNIFICANCE_LEVEL = 0.05  # with the 95% intervals: `compare`'s default `significant` tolerance

SUMMARY_COLUMNS = (
    "cell", "cell_id", "is_baseline", "metric", "value", "low", "high", "prompts", "videos",
    "reference", "diff", "diff_low", "diff_high", "p_value", "pairs",
)


def reference_cell(grid: Grid, cell: Cell) -> Cell:
    """The cell whose videos `cell`'s are compared with (see the module docstring)."""
    baselines = [other for other in grid.cells if other.is_baseline]
    if not baselines:
        return grid.cells[0]
    mine = {key: value for key, value in cell.settings if key != "baseline"}
    for other in baselines:
        if {key: value for key, value in other.settings if key != "baseline"} == mine:
            return other
    return baselines[0]


def interval_inputs(aggregation: str, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series | None] | None:
    """(per-video values on the aggregate's scale, per-video weights or None) of the videos in
    `frame` (columns value and, when weighted, weight); None when the aggregation is not a mean."""
    if aggregation not in MEAN_LIKE_AGGREGATIONS:
        return None
    scale, is_weighted = MEAN_LIKE_AGGREGATIONS[aggregation]
    weights = frame["weight"].astype(float) if is_weighted and "weight" in frame.columns else None
    return frame["value"].astype(float) * scale, weights


def summarize(grid: Grid, scores: pd.DataFrame, resamples: int = DEFAULT_RESAMPLES) -> pd.DataFrame:
    """One row per (cell, metric) of the grid (SUMMARY_COLUMNS), from the long per-video `scores`
    of `bench.results.collect_scores`. Metrics other than mean-aggregated ones get no interval."""
    scored = scores[scores["value"].notna()].astype({"value": float})
    rows = []
    for cell in grid.cells:
        reference = reference_cell(grid, cell)
        for metric in grid.metrics:
            spec = METRICS.get(metric)
            mine = scored[(scored["cell_id"] == cell.id) & (scored["metric"] == metric)]
            row = dict.fromkeys(SUMMARY_COLUMNS, math.nan)
            row.update(cell=cell.label, cell_id=cell.id, is_baseline=cell.is_baseline, metric=metric)
            row.update(prompts=int(mine["prompt_id"].nunique()), videos=len(mine), pairs=0)
            row["reference"] = None if reference.id == cell.id else reference.label
            inputs = interval_inputs(spec.aggregation, mine)
            if len(mine):
                row["value"] = aggregate(list(mine["value"]), spec, _weights(mine))
                if inputs is not None:
                    values, weights = inputs
                    estimate = cluster_bootstrap_mean(values, mine["prompt_id"], resamples=resamples, name=metric, weights=weights)
                    row.update(low=estimate.low, high=estimate.high)
            if row["reference"] is not None and inputs is not None:
                theirs = scored[(scored["cell_id"] == reference.id) & (scored["metric"] == metric)]
                pairs = mine.merge(theirs, on=["prompt_id", "sample"], suffixes=("", "_reference"))
                if len(pairs):
                    values, weights = interval_inputs(spec.aggregation, pairs)
                    reference_values, _ = interval_inputs(
                        spec.aggregation, pairs.rename(columns={"value_reference": "value", "value": "value_mine"})
                    )
                    difference = paired_difference(
                        values, reference_values, pairs["prompt_id"], resamples=resamples, name=metric, weights=weights
                    )
                    row.update(
                        diff=difference.mean, diff_low=difference.low, diff_high=difference.high,
                        p_value=difference.p_value, pairs=difference.videos,
                    )
            rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def is_significant(row) -> bool:
    """Whether a summary row's paired difference from its reference cell is significant: its 95%
    interval excludes 0 and its sign-flip p-value is below 0.05, the rule `arlon-bench compare`
    gates on (`bench.compare.Tolerance`), here in either direction."""
    if _missing(row["diff_low"]) or _missing(row["diff_high"]) or _missing(row["p_value"]):
        return False
    return (row["diff_low"] > 0 or row["diff_high"] < 0) and row["p_value"] < SIGNIFICANCE_LEVEL


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _weights(frame: pd.DataFrame) -> list[float] | None:
    """Per-video weights for the aggregation, when the scores carry any."""
    if "weight" not in frame.columns or frame["weight"].isna().all():
        return None
    return [float(w) for w in frame["weight"]]
