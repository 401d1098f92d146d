"""Tables and bars fit the terminal: on 80 columns the results table keeps every metric (split into
several tables of whole columns, saying where the one-table version is), progress rows keep the
task's name, counts and time, and every interval prints as `mean [low, high]`."""

from __future__ import annotations

import math
import re

import pandas as pd
from rich.console import Console

from bench.cli.progress import ellipsize_middle, task_bars
from bench.cli.tables import results_rich_table
from bench.grids import load_grid
from bench.results import format_estimate, results_table
from tests.bench.cli_runner import run_main
from tests.bench.metrics.fake_run import make_fake_run
from tests.bench.report.report_data import synthetic_scores

INTERVAL = re.compile(r"-?\d+\.\d{3} \[-?\d+\.\d{3}, -?\d+\.\d{3}\]")


def _printed(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


def _assert_fits(text: str, width: int = 80) -> None:
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text  # nothing cut short


def test_results_table_on_80_columns_keeps_every_metric_and_prints_intervals():
    grid = load_grid("steps")  # ten cells with long labels, seven metrics
    table = results_table(grid, synthetic_scores(grid, prompts=3, samples=1))
    text = _printed(results_rich_table(grid, table, saved_at="runs/steps/results.md"))
    _assert_fits(text)
    for metric in grid.metrics:
        assert metric.removeprefix("toy_") in text
    for _, row in table.iterrows():
        assert row["cell"] in text
        for metric in grid.metrics:  # each value exactly as results.md has it
            assert format_estimate(row[metric], row[f"{metric}_low"], row[f"{metric}_high"]) in text
    parts = text.count("steps: mean") + text.count("steps (")
    assert parts > 1 and f"(the metrics in {parts} tables to fit 80 columns; in one table:" in text
    assert "runs/steps/results.md" in text.replace("\n", "")
    assert "±" not in text


def test_results_table_in_one_piece_on_a_wide_terminal():
    grid = load_grid("layers")
    table = results_rich_table(grid, results_table(grid, synthetic_scores(grid, prompts=3, samples=1)), "results.md")
    text = _printed(table, width=200)
    assert text.count("layers: mean [95% bootstrap interval over prompts]") == 1
    assert "tables to fit" not in text and len(INTERVAL.findall(text)) == len(grid.cells) * len(grid.metrics)


def test_a_lopsided_interval_prints_as_an_interval():
    grid = load_grid("layers", ["metrics=[toy_motion_accuracy]"])
    table = pd.DataFrame([{
        "cell": "baseline", "videos": 3, "toy_motion_accuracy": 0.125,
        "toy_motion_accuracy_low": 0.0, "toy_motion_accuracy_high": 1 / 3,
    }, {
        "cell": "layers=first:3", "videos": 3, "toy_motion_accuracy": math.nan,
        "toy_motion_accuracy_low": math.nan, "toy_motion_accuracy_high": math.nan,
    }])
    text = _printed(results_rich_table(grid, table))
    assert "0.125 [0.000, 0.333]" in text and "±" not in text
    assert re.search(r"layers=first:3 .* - ", text)


def test_results_table_through_report_on_80_columns(tmp_path, monkeypatch, capsys):
    store, _ = make_fake_run(tmp_path, prompts=2, samples=1)
    monkeypatch.setenv("COLUMNS", "80")
    metrics = ("toy_colour_fidelity", "toy_shape_accuracy", "toy_motion_accuracy", "toy_layout_iou", "toy_temporal_flicker",
               "temporal_flickering_formula")
    code, _, err = run_main(capsys, monkeypatch, "score", str(store.root), "--metrics", ",".join(metrics), "--executor", "local")
    assert code == 0, err
    code, out, err = run_main(capsys, monkeypatch, "report", str(store.root), "--videos", "0")
    assert code == 0, err
    tables = out[: out.index("wrote ")]
    _assert_fits(tables)
    results = pd.read_csv(store.root / "results.csv")
    for metric in metrics:
        assert metric.removeprefix("toy_") in tables
        for _, row in results.iterrows():
            assert format_estimate(row[metric], row[f"{metric}_low"], row[f"{metric}_high"]) in tables
    assert "tables to fit 80 columns; in one table:" in " ".join(tables.split())
    assert str(store.root / "results.md") in tables.replace("\n", "")


def test_progress_rows_on_80_columns_keep_name_ends_counts_loss_and_time():
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    long_task = "train injector (noise.strategy=uncertainty, injection.layers=first:14, fusion=controlnet)"
    with task_bars(console) as progress:
        progress(long_task, 3, 120, 0.1234)
        progress("videos", 12, 120)
    lines = console.export_text().splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    train, videos = lines
    assert train.startswith("train injector (") and "fusion=controlnet)" in train
    assert "…" in train and train.count("…") == 1  # only the name's middle is cut
    assert "3/120" in train and "loss 0.1234" in train and re.search(r"\d:\d\d:\d\d$", train.rstrip())
    assert videos.startswith("videos ") and "12/120" in videos and re.search(r"\d:\d\d:\d\d$", videos.rstrip())


def test_ellipsize_middle_keeps_both_ends():
    assert ellipsize_middle("short", 10) == "short"
    cut = ellipsize_middle("train injector (layers=first:14)", 20)
    assert len(cut) == 20 and cut.startswith("train inje") and cut.endswith("first:14)")
