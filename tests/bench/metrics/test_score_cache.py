"""The per-video score cache: keys, atomic entries, and re-scoring that computes nothing new."""

from __future__ import annotations

import errno
import json
import logging
import os

import pytest

import bench.metrics.flicker as flicker
from bench.cli.app import app
from bench.metrics import METRICS
from bench.metrics.cache import ScoreCache, score_cache_key, score_cache_root
from bench.metrics.registry import MetricValue
from bench.runner import open_run, run_grid
from bench.store import RunStore
from fake_run import make_fake_run
from typer.testing import CliRunner


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    root = tmp_path / "score-cache"
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(root))
    return root


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(tmp_path / "c"))
    assert score_cache_root() == tmp_path / "c"
    monkeypatch.setenv("ARLON_SCORE_CACHE", "off")
    assert score_cache_root() is None and not ScoreCache().enabled and ScoreCache().get("ab" * 32) is None
    monkeypatch.delenv("ARLON_SCORE_CACHE")
    assert str(score_cache_root()).endswith(".cache/arlon-bench/scores")


def test_key_reads_the_prompt_only_for_metrics_that_read_it():
    plain, prompted = METRICS.get("aesthetic_quality"), METRICS.get("overall_consistency")
    assert score_cache_key(plain, "a" * 64, prompt_id="p1", prompt_text="x") == score_cache_key(plain, "a" * 64, prompt_id="p2")
    assert score_cache_key(prompted, "a" * 64, prompt_text="x") != score_cache_key(prompted, "a" * 64, prompt_text="y")
    assert score_cache_key(plain, "a" * 64) != score_cache_key(plain, "b" * 64)
    assert score_cache_key(plain, "a" * 64) != score_cache_key(METRICS.get("imaging_quality"), "a" * 64)
    scene = METRICS.get("scene")
    assert score_cache_key(scene, "a" * 64, auxiliary={"scene": {"scene": "alley"}}) != score_cache_key(
        scene, "a" * 64, auxiliary={"scene": {"scene": "beach"}}
    )


def test_entries_round_trip_and_leave_no_temporary_files(cache_dir):
    cache = ScoreCache()
    key = "cd" * 32
    assert cache.get(key) is None
    cache.put(key, MetricValue(0.5, 15.0, {"frames": 16}), "subject_consistency")
    assert cache.get(key) == MetricValue(0.5, 15.0, {"frames": 16})
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.json"]
    cache.path(key).write_text("{half")  # a damaged entry reads as absent and is rescored
    assert cache.get(key) is None


def test_a_damaged_entry_is_moved_aside_with_a_warning_and_rescored(cache_dir, caplog):
    cache = ScoreCache()
    key = "ef" * 32
    for damaged in ("{}", '{"value": "high"}', '{"value": 0.5, "weight": "x"}', "[1, 2]"):
        cache.path(key).parent.mkdir(parents=True, exist_ok=True)
        cache.path(key).write_text(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert cache.get(key) is None, damaged
        (warning,) = [r.getMessage() for r in caplog.records]
        assert warning.startswith(f"warning: {cache.path(key)}: not a score entry") and "scoring the video again" in warning
        assert not cache.path(key).exists()
    assert len(list(cache.path(key).parent.glob(f"{key}.json.corrupt-*"))) == 4
    cache.put(key, MetricValue(0.5), "toy_layout_iou")
    assert cache.get(key) == MetricValue(0.5)


def test_a_cache_that_cannot_be_written_is_one_warning_and_scoring_goes_on(cache_dir, monkeypatch, caplog):
    real_open = os.open

    def full(path, flags, *args, **kwargs):  # the disk holding the cache is full
        if flags & os.O_CREAT and str(path).startswith(str(cache_dir)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", full)
    cache = ScoreCache()
    with caplog.at_level(logging.WARNING):
        for key in ("aa" * 32, "bb" * 32):
            cache.put(key, MetricValue(0.5), "toy_layout_iou")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"warning: cannot write {cache.path('aa' * 32)}: No space left on device")
    assert cache.get("aa" * 32) is None


def test_rescoring_any_run_with_the_same_videos_computes_nothing_new(tmp_path, cache_dir, monkeypatch):
    calls = []
    original = flicker.mean_frame_mae
    monkeypatch.setattr(flicker, "mean_frame_mae", lambda video: calls.append(1) or original(video))
    store, grid = make_fake_run(tmp_path / "a")
    videos = len(grid.cells) * 2 * 2
    first = run_grid(grid, store, "local", phases=("score",), score_metrics=("temporal_flickering_formula",))
    assert first.ok and len(calls) == videos
    records = [r for cell in grid.cells for r in store.read_scores(cell.id)]
    assert len(records) == videos and all("cached" not in r for r in records)
    assert all(r["details"]["static_filter"].startswith("not applied") for r in records)
    # --force in the same run, and a second run folder holding copies of the same videos: all from the cache
    again = run_grid(grid, store, "local", phases=("score",), force=True, score_metrics=("temporal_flickering_formula",))
    assert again.ok and again.counts["score"].run == videos and len(calls) == videos
    assert all(r.get("cached") for cell in grid.cells for r in store.read_scores(cell.id))
    table = again.table.set_index("cell")["temporal_flickering_formula"]
    assert table.between(0.5, 1.0).all()
    other, other_grid = make_fake_run(tmp_path / "b")  # the same videos, byte for byte, in another run
    third = run_grid(other_grid, other, "local", phases=("score",), score_metrics=("temporal_flickering_formula",))
    assert third.ok and len(calls) == videos
    assert third.table.set_index("cell")["temporal_flickering_formula"].tolist() == table.tolist()


def test_score_command_takes_metrics_and_backend(tmp_path, cache_dir):
    store, grid = make_fake_run(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(store.root), "--metrics", "temporal_flickering_formula"])
    assert result.exit_code == 0, result.output
    _, saved, _ = open_run(store.root)
    assert saved.metrics[-1] == "temporal_flickering_formula" and saved.metrics[0] == grid.metrics[0]
    scored = {r["metric"] for r in RunStore(store.root).read_scores(grid.cells[0].id)}
    assert scored == {"temporal_flickering_formula"}  # the grid's own metrics were not scored
    bad = runner.invoke(app, ["score", str(store.root), "--metrics", "toy_layout_iou", "--backend", "vbench"])
    assert bad.exit_code != 0 and "not computed by the vbench backend" in str(bad.exception)
    results = json.loads((store.root / "manifest.json").read_text())["latest"]
    assert results["phases"] == ["score"]
