"""`arlon-bench compare`: exit 0 within tolerance, 1 on a regression, 2 on input that cannot be
compared (with what differs), the Markdown diff table, and --update-baseline from a real run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.compare import IncomparableError, Tolerance, compare_results, load_result_set, parse_tolerance
from bench.errors import BenchError
from bench.grids import load_grid
from bench.runner import run_grid
from tests.bench.mini_run import mini_cache, write_mini_grid  # noqa: F401  (mini_cache is a fixture)
from tests.bench.report.report_data import synthetic_scores
from tests.bench.cli_runner import run_main as _main



@pytest.fixture
def scores(tmp_path) -> pd.DataFrame:
    grid = load_grid(write_mini_grid(tmp_path))
    return synthetic_scores(grid, prompts=10, samples=2)


def write(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def shifted(frame: pd.DataFrame, cell: str, metric: str, by: float) -> pd.DataFrame:
    out = frame.copy()
    out.loc[(out["cell"] == cell) & (out["metric"] == metric), "value"] += by
    return out


def test_identical_results_pass_with_p_one(scores, tmp_path, capsys, monkeypatch):
    code, out, _ = _main(capsys, monkeypatch, "compare", write(scores, tmp_path / "a.csv"), write(scores, tmp_path / "b.csv"))
    assert code == 0, out
    assert "9 metric(s), no regression" in out and "| cell | metric | baseline | current | change |" in out
    assert out.count("✅ ok (same)") == 9 and "| 1 | significant |" in out


def test_a_significant_drop_is_a_regression_with_exit_1(scores, tmp_path, capsys, monkeypatch):
    worse = shifted(scores, "layers=first:1", "toy_colour_fidelity", -0.05)
    current, baseline = write(worse, tmp_path / "current.csv"), write(scores, tmp_path / "baseline.csv")
    code, out, err = _main(capsys, monkeypatch, "compare", current, baseline)
    assert code == 1 and "**1 regression(s)**" in out and "layers=first:1/toy_colour_fidelity" in err
    assert "| layers=first:1 | toy_colour_fidelity ↑ |" in out and "❌ regression (worse)" in out
    # A looser tolerance for that metric lets it pass; a stricter one for every metric does not.
    code, _, _ = _main(capsys, monkeypatch, "compare", current, baseline, "--tolerance", "toy_colour_fidelity=abs:0.06")
    assert code == 0
    code, _, _ = _main(capsys, monkeypatch, "compare", current, baseline, "--tolerance", "rel:0.01")
    assert code == 1
    # Better is never a regression, and a lower-is-better metric regresses upwards.
    code, _, _ = _main(capsys, monkeypatch, "compare", write(shifted(scores, "baseline", "toy_layout_iou", 0.1), tmp_path / "c.csv"), baseline)
    assert code == 0


def test_significant_needs_more_than_a_few_changed_prompts(scores):
    """Four of ten prompts worse: the percentile interval excludes 0, the sign-flip p-value (1/8) does not pass."""
    few = scores.copy()
    few.loc[(few["cell"] == "baseline") & (few["metric"] == "toy_layout_iou") & few["prompt_id"].isin(["p00", "p01", "p02", "p03"]), "value"] -= 0.05
    comparison = compare_results(load_result_set_from(few), load_result_set_from(scores))
    change = next(c for c in comparison.changes if (c.cell, c.metric) == ("baseline", "toy_layout_iou"))
    assert change.difference.high < 0 and change.difference.p_value == 0.125 and not change.is_regression


def test_direction_follows_the_metric(scores):
    base = load_result_set_from(scores)
    up = load_result_set_from(shifted(scores, "baseline", "toy_temporal_flicker", 0.02))
    assert not compare_results(up, base).regressions
    assert [c.metric for c in compare_results(base, up).regressions] == ["toy_temporal_flicker"]
    flipped = scores.assign(metric=scores["metric"].replace({"toy_temporal_flicker": "toy_trajectory_error"}))
    assert [c.metric for c in compare_results(load_result_set_from(shifted(flipped, "baseline", "toy_trajectory_error", 0.02)), load_result_set_from(flipped)).regressions] == ["toy_trajectory_error"]


def load_result_set_from(frame: pd.DataFrame):
    from bench.compare import ResultSet

    return ResultSet("memory", frame[["cell", "prompt_id", "sample", "metric", "value"]].astype({"prompt_id": str}))


def test_unusable_input_exits_2_and_says_what_differs(scores, tmp_path, capsys, monkeypatch):
    baseline = write(scores, tmp_path / "baseline.csv")
    cases = {
        "missing metric": (scores[scores["metric"] != "toy_layout_iou"], "the current run has no toy_layout_iou"),
        "prompt sets": (scores[scores["prompt_id"] != "p03"], "different prompt sets: 1 only in the baseline (p03), 0 only in the current run"),
        "samples": (scores[~((scores["prompt_id"] == "p01") & (scores["sample"] == 1) & (scores["metric"] == "toy_layout_iou"))],
                    "different videos scored (samples per prompt or unscored videos): p01-1"),
        "cells": (scores.replace({"cell": {"layers=last:1": "layers=last:2"}}), "only in the baseline: ['layers=last:1']; only in the current run: ['layers=last:2']"),
    }
    for name, (frame, message) in cases.items():
        code, _, err = _main(capsys, monkeypatch, "compare", write(frame, tmp_path / f"{name}.csv"), baseline)
        assert code == 2 and message in err.replace("\n", " ") and "Traceback" not in err, (name, err)
    for args, message in (
        (["--tolerance", "toy_nothing=abs:0.1"], "toy_nothing"),
        (["--tolerance", "toy_layout_iou=loose"], "unknown rule 'loose'"),
        (["--tolerance", "abs:x"], "abs needs a number"),
    ):
        code, _, err = _main(capsys, monkeypatch, "compare", baseline, baseline, *args)
        assert code == 2 and message in err, (args, err)
    code, _, err = _main(capsys, monkeypatch, "compare", str(tmp_path / "nowhere"), baseline)
    assert code == 2 and "no run or results at" in err


def test_a_hand_edited_scores_csv_is_one_line_naming_its_lines(scores, tmp_path, capsys, monkeypatch):
    baseline = write(scores, tmp_path / "baseline.csv")
    edited = scores.astype({"value": object, "sample": object})
    edited.loc[3, "value"] = "0.5?"
    edited.loc[7, "sample"] = "first"
    for current, other in ((write(edited, tmp_path / "edited.csv"), baseline), (baseline, str(tmp_path / "edited.csv"))):
        code, _, err = _main(capsys, monkeypatch, "compare", current, other)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: {tmp_path / 'edited.csv'}: value is not a number on line(s) 5 (e.g. '0.5?'); ")
        assert "sample is not a whole number >= 0 on line(s) 9 (e.g. 'first')" in err
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "scores.csv").write_bytes(b"\xff\xfe not text")
    code, _, err = _main(capsys, monkeypatch, "compare", str(folder), baseline)
    assert code == 2 and err.startswith(f"error: {folder / 'scores.csv'}: not a scores CSV"), err


def test_parse_tolerance():
    assert parse_tolerance("toy_layout_iou=abs:0.01") == ("toy_layout_iou", Tolerance("abs", 0.01))
    assert parse_tolerance("rel:0.05") == (None, Tolerance("rel", 0.05))
    assert parse_tolerance("significant") == (None, Tolerance("significant"))
    with pytest.raises(BenchError, match=">= 0"):
        parse_tolerance("abs:-1")


def test_update_baseline_from_a_run_then_compare_it_and_write_markdown(mini_cache, tmp_path, capsys, monkeypatch):
    grid = load_grid(write_mini_grid(tmp_path, prompts=2, samples=1))
    run = tmp_path / "run"
    assert run_grid(grid, run, cache_dir=mini_cache).ok
    baseline = tmp_path / "baselines" / "mini"
    code, out, _ = _main(capsys, monkeypatch, "compare", str(run), str(baseline), "--update-baseline")
    assert code == 0 and f"wrote {baseline / 'scores.csv'}" in out
    assert {p.name for p in baseline.iterdir()} >= {"scores.csv", "results.csv", "grid.yaml", "run.json", "prompts.json", "provenance.json"}
    code, out, _ = _main(capsys, monkeypatch, "compare", str(run), str(baseline), "--md", str(tmp_path / "diff.md"))
    assert code == 0 and "wrote" in out and "no regression" in (tmp_path / "diff.md").read_text()
    assert len(load_result_set(baseline).scores) == 3 * 2 * 3  # cells x prompts x metrics
    with pytest.raises(IncomparableError, match="no run or results"):
        load_result_set(tmp_path / "baselines" / "other")
