"""Report tables: layouts, paper columns only where configurations match, best marks, and the
Markdown / LaTeX / CSV renderings (golden files; regenerate on purpose with ARLON_UPDATE_GOLDEN=1
and read the diff)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from bench.cli.tables import results_rich_table
from bench.grids import load_grid
from bench.report.stats import summarize
from bench.report.tables import (
    Column, Entry, ReportTable, TableRow, build_tables, entry_text, table1, table2, table3, table3_row_matches, table5,
    to_latex, to_markdown, to_records,
)
from bench.results import format_estimate
from tests.bench.mini_run import write_mini_grid
from tests.bench.report.report_data import TABLE2_METRICS, TABLE3_METRICS, synthetic_scores, table3_grid

GOLDEN = Path(__file__).parent / "golden"
PAPER_TABLE3 = pd.read_csv(Path(__file__).resolve().parents[3] / "reports" / "reference" / "table3_ablation.csv")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ARLON_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; if on purpose, rerun with ARLON_UPDATE_GOLDEN=1 and read the diff"


@pytest.fixture(scope="module")
def table3_run():
    grid = table3_grid()
    return grid, summarize(grid, synthetic_scores(grid, prompts=4, samples=1), resamples=500)


def test_table3_rows_match_the_paper_rows_by_their_settings():
    grid = table3_grid()
    for cell in grid.cells:
        matches = [row["row"] for row in PAPER_TABLE3.to_dict("records") if table3_row_matches(row, cell)]
        assert matches == [cell.label]  # the shipped grid's rows are the paper's, one to one
    # Rows that do not set the layers themselves now inject into 12 block pairs: no paper row has that.
    changed = {cell.label: cell for cell in table3_grid(extra=["injection.layers=first:12"]).cells}
    paper = {row["row"]: row for row in PAPER_TABLE3.to_dict("records")}
    assert not table3_row_matches(paper["noise_gaussian"], changed["noise_gaussian"])
    assert table3_row_matches(paper["layers_14"], changed["layers_14"])
    assert not table3_row_matches(paper["layers_14"], changed["baseline"])


def test_table3_layout_in_percent_with_paper_columns_best_marks_and_golden_renderings(table3_run):
    grid, summary = table3_run
    tables = build_tables(grid, summary)
    assert [t.key for t in tables] == ["table3"]  # the layout already covers every cell and metric
    table = tables[0]
    assert table.percent and table.reported_columns
    row = next(r for r in table.rows if r.label == "compress_4x8x8")
    assert row.paper_row == "compress_4x8x8" and row.reported["dynamic_degree"] == 42.0
    markdown = to_markdown(table)
    assert "| row | subject_consistency ↑ | paper |" in markdown and "compare the direction" in markdown
    best = table.best()["aesthetic_quality"]
    assert best == {summary.loc[summary["metric"] == "aesthetic_quality"].sort_values("value").iloc[-1]["cell"]}
    assert markdown.count("**") >= 2 * len(table.columns)
    latex = to_latex(table)
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex and "\\textbf{" in latex
    assert "↑" not in latex and "$\\uparrow$" in latex and "compress\\_4x8x8" in latex
    check_golden("table3.md", markdown)
    check_golden("table3.tex", latex)
    records = to_records(table)
    assert len(records) == 9 * 6 and records["is_best"].sum() >= 6
    first = records[(records["row"] == "baseline") & (records["metric"] == "subject_consistency")].iloc[0]
    assert first["paper_value"] == 97.79 and first["unit"] == "percent" and first["value"] > 50


def test_table3_grid_with_other_metrics_shows_no_paper_numbers(tmp_path):
    grid = load_grid("table3", ["metrics=[toy_colour_fidelity, toy_trajectory_error]"])
    summary = summarize(grid, synthetic_scores(grid, prompts=3, samples=1, shift={"baseline": -0.2}), resamples=200)
    table = table3(grid, summary)
    assert not table.percent and not table.reported_columns and all(not r.reported for r in table.rows)
    assert "no paper numbers" in table.caption
    assert "toy_trajectory_error ↓" in to_markdown(table)
    assert table.best()["toy_trajectory_error"] == {"baseline"}  # lower is better: the smallest mean
    layers = load_grid(write_mini_grid(tmp_path))
    assert table3(layers, summarize(layers, synthetic_scores(layers, prompts=2), resamples=200)) is None


def test_generic_table_of_any_grid_has_one_row_per_cell_and_differences(tmp_path):
    grid = load_grid(write_mini_grid(tmp_path))
    summary = summarize(grid, synthetic_scores(grid, prompts=3, samples=2), resamples=200)
    tables = build_tables(grid, summary)
    assert [t.key for t in tables] == ["results"]
    markdown = to_markdown(tables[0])
    assert [r.label for r in tables[0].rows] == ["baseline", "layers=first:1", "layers=last:1"]
    assert "Δ against the reference cell" in markdown and "| layers=last:1 | baseline |" in markdown
    assert " p=" in markdown and "toy_temporal_flicker ↑" in markdown


def test_table2_and_table1_layouts_append_the_paper_rows(tmp_path):
    grid = load_grid(write_mini_grid(tmp_path), [f"metrics=[{', '.join(TABLE2_METRICS)}]"])
    summary = summarize(grid, synthetic_scores(grid, prompts=3, samples=1), resamples=200)
    table = table2(grid, summary)
    assert [r.label for r in table.rows][:3] == ["baseline", "layers=first:1", "layers=last:1"]
    paper = [r for r in table.rows if r.is_paper_row]
    assert len(paper) == 11 and paper[-1].label == "ARLON (paper)" and paper[-1].reported["scene"] == 54.4
    markdown = to_markdown(table)
    assert "| ARLON (paper) | 52.80 |" in markdown
    assert all(label not in table.best()["scene"] for label in ("ARLON (paper)", "Kling (paper)"))
    assert table1(grid, summary) is None  # not a long-video grid
    long_grid = load_grid(write_mini_grid(tmp_path), [f"metrics=[{', '.join(TABLE2_METRICS)}]", "long.frames=16", "video.num_frames=8"])
    long_table = table1(long_grid, summarize(long_grid, synthetic_scores(long_grid, prompts=3, samples=1), resamples=200))
    assert long_table is not None and len(long_table.columns) == 7 and long_table.reported_columns
    reproduced = {r.label: r.paper_row for r in long_table.rows if not r.is_paper_row}
    assert reproduced == {"baseline": "OpenSora-V1.2", "layers=first:1": "ARLON", "layers=last:1": "ARLON"}
    baseline_row = long_table.rows[0]
    assert baseline_row.reported["subject_consistency"] == 96.30 and baseline_row.entries
    assert [r.label for r in long_table.rows if r.is_paper_row] == [
        "FreeNoise (paper, reported only)", "StreamingT2V (paper, reported only)",
    ]
    assert "Each video: 16 frames (the paper's: 600 frames)" in long_table.caption


def test_table5_layout_for_a_grid_that_varies_the_training_data(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text(write_mini_grid(tmp_path).read_text().replace(
        "rows:\n  - {name: baseline, baseline: true}\naxes:\n  injection.layers: [first:1, last:1]",
        "axes:\n  data.num_train_clips: [8, 16]",
    ))
    grid = load_grid(path, [f"metrics=[{', '.join(TABLE3_METRICS)}]"])
    summary = summarize(grid, synthetic_scores(grid, prompts=2, samples=1), resamples=200)
    table = next(t for t in build_tables(grid, summary) if t.key == "table5")
    assert [r.label for r in table.rows] == [
        "num_train_clips=8", "num_train_clips=16",
        "Openvid-1M (paper)", "Openvid-HQ 0.4M (paper)", "Openvid-HQ 0.4M + Mixkit 0.3M (paper)",
    ]
    assert table.percent and "context only" in table.caption
    assert table3(grid, summary) is not None and table5(table3_grid(), summary) is None


def _one_metric_table(entries: dict[str, Entry]) -> ReportTable:
    rows = [TableRow(label, {"toy_motion_accuracy": entry}) for label, entry in entries.items()]
    return ReportTable("results", "labels: a grid", "caption", [Column("toy_motion_accuracy", "toy_motion_accuracy", True)], rows, percent=False)


def test_labels_are_literal_text_in_markdown_and_latex():
    best = Entry(0.9, 0.8, 1.0)
    table = _one_metric_table({"[values] first": best, "left | right": Entry(0.5, 0.25, 0.75), "line\nbreak": Entry(0.5, 0.25, 0.75)})
    rows = [line for line in to_markdown(table).splitlines() if line.startswith("| ") and "0." in line]
    assert rows == [
        "| [values] first | **0.900 [0.800, 1.000]** |",
        "| left \\| right | 0.500 [0.250, 0.750] |",  # one cell for the label, not two
        "| line break | 0.500 [0.250, 0.750] |",  # a line break would end the row
    ]
    latex = to_latex(table)
    # After `\\` or `\midrule`, a `[` opens their optional argument: braced, it is only a bracket.
    assert "\\midrule\n{[}values{]} first & " in latex
    assert not re.search(r"(\\\\|\\midrule)\s*\[", latex)


def test_a_lopsided_interval_reads_the_same_in_every_format():
    """`mean [low, high]` in the terminal, results.md, the report's Markdown and LaTeX, and low/high in CSV."""
    entry = Entry(0.125, 0.0, 1 / 3)
    table = _one_metric_table({"baseline": entry, "better": Entry(0.9, 0.8, 1.0)})
    expected = "0.125 [0.000, 0.333]"
    assert entry_text(table, entry) == format_estimate(0.125, 0.0, 1 / 3) == expected
    assert f"| baseline | {expected} |" in to_markdown(table)
    assert "0.125\\,{\\scriptsize[0.000, 0.333]}" in to_latex(table)
    record = to_records(table).iloc[0]
    assert (record["value"], record["low"], round(record["high"], 3)) == (0.125, 0.0, 0.333)
    grid = load_grid("layers", ["metrics=[toy_motion_accuracy]"])
    results = pd.DataFrame([{"cell": "baseline", "videos": 4, "toy_motion_accuracy": 0.125,
                             "toy_motion_accuracy_low": 0.0, "toy_motion_accuracy_high": 1 / 3}])
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(results_rich_table(grid, results))
    assert expected in console.export_text()
