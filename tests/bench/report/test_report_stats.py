from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.grids import load_grid
from bench.report.stats import reference_cell, summarize
from tests.bench.mini_run import write_mini_grid
from tests.bench.report.report_data import table3_grid, synthetic_scores


def test_every_cell_has_its_mean_interval_and_paired_difference_from_the_baseline():
    grid = table3_grid()
    scores = synthetic_scores(grid, shift={"layers_14": 0.05})
    summary = summarize(grid, scores, resamples=2000)
    assert len(summary) == len(grid.cells) * 6
    row = summary[(summary["cell"] == "layers_14") & (summary["metric"] == "aesthetic_quality")].iloc[0]
    mine = scores[(scores["cell"] == "layers_14") & (scores["metric"] == "aesthetic_quality")]["value"]
    base = scores[(scores["cell"] == "baseline") & (scores["metric"] == "aesthetic_quality")]["value"]
    assert row["value"] == pytest.approx(mine.mean()) and row["low"] < row["value"] < row["high"]
    assert (row["prompts"], row["videos"], row["pairs"], row["reference"]) == (12, 24, 24, "baseline")
    assert row["diff"] == pytest.approx(mine.mean() - base.mean()) and row["diff_low"] > 0 and row["p_value"] < 0.01
    baseline = summary[summary["cell"] == "baseline"]
    assert baseline["reference"].isna().all() and baseline["diff"].isna().all()


def test_vbench_aggregations_keep_their_rules_and_scale():
    grid = table3_grid()
    scores = synthetic_scores(grid)
    summary = summarize(grid, scores, resamples=500).set_index(["cell", "metric"])
    imaging = scores[(scores["cell"] == "baseline") & (scores["metric"] == "imaging_quality")]
    assert summary.loc[("baseline", "imaging_quality"), "value"] == pytest.approx(imaging["value"].mean() / 100)
    assert summary.loc[("baseline", "imaging_quality"), "high"] < 1.0  # the interval is on the aggregate's scale
    subject = scores[(scores["cell"] == "baseline") & (scores["metric"] == "subject_consistency")]
    weighted = np.average(subject["value"], weights=subject["weight"])
    row = summary.loc[("baseline", "subject_consistency")]
    assert row["value"] == pytest.approx(weighted) and row["low"] <= weighted <= row["high"]
    dynamic = summary.loc[("baseline", "dynamic_degree")]
    assert 0.0 <= dynamic["low"] <= dynamic["value"] <= dynamic["high"] <= 1.0


def test_identical_cells_differ_by_exactly_zero_with_p_one():
    grid = table3_grid()
    scores = synthetic_scores(grid)
    copy = scores[scores["cell"] == "baseline"].assign(cell="layers_3", cell_id=grid.cells[4].id)
    scores = pd.concat([scores[scores["cell"] != "layers_3"], copy], ignore_index=True)
    summary = summarize(grid, scores, resamples=500)
    same = summary[summary["cell"] == "layers_3"]
    assert (same["diff"] == 0).all() and (same["p_value"] == 1).all()


def test_the_reference_is_the_baseline_with_the_same_other_settings(tmp_path):
    steps = tmp_path / "steps.yaml"
    steps.write_text(write_mini_grid(tmp_path).read_text().replace(
        "rows:\n  - {name: baseline, baseline: true}\naxes:\n  injection.layers: [first:1, last:1]",
        "axes:\n  baseline: [false, true]\n  flow.num_sampling_steps: [2, 3]",
    ))
    grid = load_grid(steps)
    by_label = {cell.label: cell for cell in grid.cells}
    assert len(by_label) == 4
    for cell in grid.cells:
        reference = reference_cell(grid, cell)
        assert reference.is_baseline
        assert reference.config.flow.num_sampling_steps == cell.config.flow.num_sampling_steps
    layers = load_grid(write_mini_grid(tmp_path, layers="[first:1]"))
    assert reference_cell(layers, layers.cells[1]).label == "baseline"
