"""export-vbench / import-vbench round trip and the leaderboard's Quality / Semantic / Total."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.errors import BenchError
from bench.metrics.vbench.results_io import LEADERBOARD, import_results, leaderboard_scores
from bench.prompts import load_prompts
from bench.runner import report_run
from fake_run import make_fake_run
from tests.bench.cli_runner import run_main


@pytest.fixture(autouse=True)
def score_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(tmp_path / "score-cache"))


def test_leaderboard_uses_vbench_constants():
    perfect = {d: high for d, (low, high, weight, group) in LEADERBOARD.items()}
    board = leaderboard_scores(perfect)
    assert board.quality == pytest.approx(1.0) and board.semantic == pytest.approx(1.0) and board.total == pytest.approx(1.0)
    assert board.missing == ()
    # dynamic degree weighs 0.5 of a dimension in the quality sum (divisor 6.5)
    half = leaderboard_scores({**perfect, "dynamic_degree": 0.0})
    assert half.quality == pytest.approx(6.0 / 6.5) and half.total == pytest.approx((4 * 6.0 / 6.5 + 1) / 5)
    # a missing dimension counts as 0 before normalising, as VBench's script does (so it can go negative)
    partial = leaderboard_scores({"subject_consistency": 0.9})
    assert partial.normalised["subject_consistency"] == pytest.approx((0.9 - 0.1462) / (1 - 0.1462))
    assert partial.normalised["motion_smoothness"] == pytest.approx((0 - 0.706) / (0.9975 - 0.706))
    assert "scene" in partial.missing and len(partial.missing) == len(LEADERBOARD) - 1


def test_export_then_import_lands_vbench_results_in_the_store(tmp_path):
    store, grid = make_fake_run(tmp_path / "r")
    out = tmp_path / "export"
    runner = CliRunner()
    result = runner.invoke(app, ["export-vbench", str(store.root), str(out)])
    assert result.exit_code == 0, result.output
    prompts = load_prompts(grid.prompts)
    cell = grid.cells[0]
    folder = out / cell.id
    names = sorted(p.name for p in folder.glob("*.mp4"))
    assert names == sorted(f"{p.text}-{k}.mp4" for p in prompts for k in range(2))  # VBench's {prompt}-{i}.mp4
    assert json.loads((folder / "prompt_file.json").read_text())[f"{prompts[0].text}-1.mp4"] == prompts[0].text

    # What VBench writes: dimension -> [aggregate, [per-video dicts]] (dynamic degree booleans,
    # imaging quality 0-100 per video, background with cnt_per_video).
    videos = [str(p) for cell_folder in sorted(out.iterdir()) for p in sorted(cell_folder.glob("*.mp4"))]
    results = {
        "imaging_quality": [0.5, [{"video_path": v, "video_results": 40.0 + i} for i, v in enumerate(videos)]],
        "dynamic_degree": [0.5, [{"video_path": v, "video_results": i % 2 == 0} for i, v in enumerate(videos)]],
        "background_consistency": [0.9, [{"video_path": v, "video_results": 0.9, "video_sim": 4.5, "cnt_per_video": 5}
                                         for v in videos]],
        "subject_consistency": [0.95, [{"video_path": v, "video_results": 0.95} for v in videos]],
        "human_action": [0.1, []],
    }
    results_path = tmp_path / "results_eval_results.json"
    results_path.write_text(json.dumps(results))
    imported = runner.invoke(app, ["import-vbench", str(results_path)])
    assert imported.exit_code == 0, imported.output
    assert f"imaging_quality: {len(videos)} per-video scores" in imported.output and "human_action: not a dimension" in imported.output
    assert "leaderboard" in imported.output

    records = {(r["video"], r["metric"]): r for r in store.read_scores(cell.id)}
    first = f"{prompts[0].id}-0"
    index = videos.index(str(folder / f"{prompts[0].text}-0.mp4"))
    assert records[(first, "imaging_quality")]["value"] == 40.0 + index
    assert records[(first, "dynamic_degree")]["value"] == (1.0 if index % 2 == 0 else 0.0)
    assert records[(first, "background_consistency")]["weight"] == 5.0
    assert records[(first, "subject_consistency")]["weight"] == 5.0  # 6 frames: 5 pairs
    assert all(r["backend"] == "vbench" for r in records.values())

    # the scores count as current for the run: its table shows them with VBench's aggregation rules
    grid_metrics = ("imaging_quality", "dynamic_degree", "background_consistency", "subject_consistency")
    from bench.runner import with_metrics

    store.save_grid(with_metrics(grid, grid_metrics), None)
    table, _ = report_run(store, with_metrics(grid, grid_metrics))
    row = table.set_index("cell_id").loc[cell.id]
    mine = [i for i, v in enumerate(videos) if v.startswith(str(folder))]
    assert row["imaging_quality"] == pytest.approx(sum(40 + i for i in mine) / len(mine) / 100)
    assert row["dynamic_degree"] == pytest.approx(0.5) and row["background_consistency"] == pytest.approx(0.9)


def test_import_reports_results_that_match_no_exported_video(tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"aesthetic_quality": [0.5, [{"video_path": "/elsewhere/a cat-0.mp4", "video_results": 0.5}]]}))
    summary = import_results(results)
    assert summary.unmatched == ["/elsewhere/a cat-0.mp4"] and summary.imported == {}
    result = CliRunner().invoke(app, ["import-vbench", str(results)])
    assert result.exit_code == 1 and "matched no exported video" in result.output


def test_import_of_a_missing_or_broken_file_is_one_line(tmp_path):
    with pytest.raises(BenchError, match="no such file"):
        import_results(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(BenchError, match="not JSON"):
        import_results(broken)


def exported(tmp_path):
    """A fake run exported for VBench: (store, its cell's export folder, the exported video paths)."""
    store, grid = make_fake_run(tmp_path / "r", prompts=1, samples=1, single_cell=True)
    out = tmp_path / "export"
    assert CliRunner().invoke(app, ["export-vbench", str(store.root), str(out)]).exit_code == 0
    folder = out / grid.cells[0].id
    return store, folder, sorted(str(p) for p in folder.glob("*.mp4"))


def test_malformed_results_are_one_line_and_nothing_is_imported(tmp_path, capsys, monkeypatch):
    store, folder, videos = exported(tmp_path)
    scores_before = sorted(p.read_bytes() for p in store.root.rglob("scores.jsonl"))
    good = {"video_path": videos[0], "video_results": 0.9}
    cases = {
        "no video_results": ({"subject_consistency": [0.9, [{"video_path": videos[0]}]]},
                             "subject_consistency entry 0: video_results None is not a number"),
        "text": ({"imaging_quality": [0.9, [good, {"video_path": videos[0], "video_results": "high"}]]},
                 "imaging_quality entry 1: video_results 'high' is not a number"),
        "not an object": ({"aesthetic_quality": [0.9, [good, "a.mp4"]]}, "aesthetic_quality entry 1: not an object but str"),
        "no video_path": ({"aesthetic_quality": [0.9, [{"video_results": 0.9}]]}, "aesthetic_quality entry 0: no video_path"),
        "weight": ({"background_consistency": [0.9, [{**good, "cnt_per_video": "five"}]]}, "cnt_per_video 'five' is not a number"),
        "no list": ({"dynamic_degree": 0.5}, "dynamic_degree: float instead of [aggregate, [...]]"),
        "no per-video list": ({"dynamic_degree": [0.5]}, "dynamic_degree: no list of per-video results"),
    }
    for name, (results, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"subject_consistency": [0.9, [good]], **results}))
        code, _, err = run_main(capsys, monkeypatch, "import-vbench", str(path))
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
        assert err.startswith(f"error: {path}: ") and "nothing imported" in err and message in err, (name, err)
    assert sorted(p.read_bytes() for p in store.root.rglob("scores.jsonl")) == scores_before


def test_a_damaged_export_manifest_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    store, folder, videos = exported(tmp_path)
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"subject_consistency": [0.9, [{"video_path": videos[0], "video_results": 0.9}]]}))
    manifest = folder / "arlon_export.json"
    for damaged, message in (('{"run": ', "not valid JSON"), ('{"run": "x", "cell_id": "y"}', "its videos lack")):
        manifest.write_text(damaged)
        code, _, err = run_main(capsys, monkeypatch, "import-vbench", str(results))
        assert code == 2 and err.startswith(f"error: {manifest}: {message}") and "export-vbench" in err, err


def test_importing_into_a_read_only_run_is_one_line_and_keeps_its_scores(tmp_path, capsys, monkeypatch):
    store, folder, videos = exported(tmp_path)
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"subject_consistency": [0.9, [{"video_path": v, "video_results": 0.9} for v in videos]]}))
    cells = [p for p in (store.root / "cells").iterdir()]
    before = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # the cells' folders refuse new files (root ignores chmod)
        if flags & os.O_CREAT and any(Path(path).parent == cell for cell in cells):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, _, err = run_main(capsys, monkeypatch, "import-vbench", str(results))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: cannot write {cells[0] / 'scores.jsonl'}: Read-only file system"), err
    assert {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file() and p.name != ".lock"} == {
        p: b for p, b in before.items() if p.name != ".lock"
    }


def test_export_into_a_run_folder_is_refused_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from tests.bench.cli_runner import run_main

    store, _ = make_fake_run(tmp_path / "r")
    before = sorted(str(p) for p in store.root.rglob("*"))
    for target in (store.root, store.root / "vbench-export"):
        code, _, err = run_main(capsys, monkeypatch, "export-vbench", str(store.root), str(target))
        assert code == 2 and err.startswith(f"error: {target} is inside the run {store.root.resolve()}"), err
    assert sorted(str(p) for p in store.root.rglob("*")) == before


def test_a_run_with_imported_vbench_scores_rescores_natively(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(tmp_path / "score-cache"))
    store, folder, videos = exported(tmp_path)
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"temporal_flickering": [0.5, [{"video_path": v, "video_results": 0.5} for v in videos]]}))
    import_results(results)
    (cell,) = [p.name for p in (store.root / "cells").iterdir()]
    assert {r["backend"] for r in store.read_scores(cell)} == {"vbench"}
    code, _, err = run_main(capsys, monkeypatch, "score", str(store.root), "--backend", "native",
                            "--metrics", "temporal_flickering", "--executor", "local")
    assert code == 0, err
    records = store.read_scores(cell)
    assert {r["backend"] for r in records} == {"native"} and all(r["value"] != 0.5 for r in records)
