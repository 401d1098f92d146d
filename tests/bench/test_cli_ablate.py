"""The grid-run commands through the real entry point: ablate, generate, score, report, status,
grids, validate; interruption (the process killed mid-generation) and two runs on one store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from arlon.data.video_io import read_video
from bench.cli.app import app
from bench.executors import local as local_executor
from bench.executors.work import UnitFailure
from bench.grids import load_grid
from bench.runner import run_grid, run_status
from bench.store import RunStore, file_sha256

from mini_run import mini_cache, write_mini_grid  # noqa: F401  (mini_cache is a fixture)
from tests.bench.cli_runner import run_main as _main
from tests.bench.metrics.fake_run import make_fake_run

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
SLOW = ["--set", "flow.num_sampling_steps=20"]  # about 0.15 s a video: time to act while a run generates



def _start_run(grid: Path, run: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "ARLON_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli.app", "ablate", "--grid", str(grid), "--out", str(run), *SLOW, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for_videos(run: Path, count: int, process: subprocess.Popen, timeout_s: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = sorted(run.glob("cells/*/videos/*.json"))
        if len(done) >= count:
            return done
        if process.poll() is not None:
            pytest.fail(f"the run ended before {count} videos: {process.stdout.read()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail("no video appeared in time")


def test_ablate_prints_the_table_and_writes_the_files(tmp_path, mini_cache, monkeypatch, capsys):
    grid = write_mini_grid(tmp_path, prompts=1, samples=1)
    monkeypatch.setenv("ARLON_CACHE_DIR", str(mini_cache))
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = _main(capsys, monkeypatch, "ablate", "--grid", str(grid), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "mini: mean [95% bootstrap interval over prompts]" in out
    assert "│ baseline       │      1 │" in out and "layers=last:1" in out
    assert "videos 3 made, 0 already done | scores 9 computed, 0 current" in out
    assert f"wrote {tmp_path / 'run' / 'results.csv'}" in out

    code, out, _ = _main(capsys, monkeypatch, "ablate", "--grid", str(grid), "--out", str(tmp_path / "run"))
    assert code == 0 and "videos 0 made, 3 already done | scores 0 computed, 9 current" in out

    code, out, _ = _main(capsys, monkeypatch, "status", str(tmp_path / "run"))
    assert code == 0 and "train: 3/3 cells trained | generate: 3/3 videos | score: 9/9 scores" in out
    assert "last invocation:" in out and "(ok)" in out
    code, out, _ = _main(capsys, monkeypatch, "report", str(tmp_path / "run"))
    assert code == 0 and f"wrote {tmp_path / 'run' / 'results.md'}" in out
    code, out, _ = _main(capsys, monkeypatch, "score", str(tmp_path / "run"), "--force")
    assert code == 0 and "scores 9 computed, 0 current" in out


def test_generate_then_score(tmp_path, mini_cache):
    grid = write_mini_grid(tmp_path, prompts=1, samples=1)
    env = {"ARLON_CACHE_DIR": str(mini_cache)}
    result = runner.invoke(app, ["generate", "--grid", str(grid), "--out", str(tmp_path / "run")], env=env)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "run" / "results.csv").exists()
    result = runner.invoke(app, ["score", str(tmp_path / "run")], env=env)
    assert result.exit_code == 0 and (tmp_path / "run" / "results.csv").is_file()


def test_grids_and_validate(tmp_path, capsys, monkeypatch):
    code, out, _ = _main(capsys, monkeypatch, "grids")
    assert code == 0
    assert "layers  Which STDiT3 block pairs" in out
    assert "5 cells: baseline, layers=first:3, layers=first:8, layers=first:14, layers=last:14" in out

    code, out, _ = _main(capsys, monkeypatch, "validate", "table3")
    assert code == 0 and "ok, 9 cells: baseline, compress_4x8x8" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nbase:\n  injection.fusion: adaptive-norm\naxes:\n  noise.strategy: [none, loud]\n")
    code, _, err = _main(capsys, monkeypatch, "validate", str(bad))
    assert code == 2 and "Traceback" not in err
    assert err.splitlines() == [
        f"error: {bad}:3: base.injection.fusion: injection.fusion: unknown fusion 'adaptive-norm'; did you mean "
        "'adaptive_norm'? (choices: adaptive_norm, controlnet, mlp_adapter)",
        f"error: {bad}:5: axes.noise.strategy[1]: noise.strategy: unknown noise strategy 'loud' (choices: none, gaussian, uncertainty, "
        "uncertainty_mean_preserving)",
        f"2 problem(s) in {bad}",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["ablate", "--grid", "layer"], "error: unknown grid 'layer'; did you mean 'layers'?"),
        (["ablate", "--grid", "layers", "--set", "injection.layers=first:8"], "injection.layers is an axis of this grid"),
        (["ablate", "--grid", "layers", "--executor", "local", "--address", "auto"], "error: --address is an option of --executor ray"),
        (["ablate", "--grid", "layers", "--executor", "local", "--workers", "2"], "error: --executor local runs in this process"),
        (["ablate", "--grid", "layers", "--executor", "processes", "--workers", "0"], "error: --workers must be at least 1, got 0"),
        (["ablate", "--grid", "layers", "--executor", "slurm"], "error: --executor: unknown executor 'slurm'"),
        (["ablate", "--grid", "layers", "--limit", "0"], "error: --limit must be at least 1, got 0"),
        (["status", "nowhere"], "error: no run at 'nowhere'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(capsys, monkeypatch, *args)
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_failed_units_are_listed_and_exit_1(tmp_path, mini_cache, capsys, monkeypatch):
    real = local_executor.run_generation_job

    def out_of_memory_for_last(job, context, on_video=None):
        if job.cell.label != "layers=last:1":
            return real(job, context, on_video)
        return [UnitFailure("generate", f"{job.cell.label}: {u.name}", "RuntimeError: out of memory") for u in job.units]

    monkeypatch.setattr(local_executor, "run_generation_job", out_of_memory_for_last)
    monkeypatch.setenv("ARLON_CACHE_DIR", str(mini_cache))
    monkeypatch.setenv("COLUMNS", "200")
    grid = write_mini_grid(tmp_path, prompts=1, samples=1)
    # In this process, where the patched function is.
    code, out, _ = _main(capsys, monkeypatch, "ablate", "--grid", str(grid), "--out", str(tmp_path / "run"), "--executor", "local")
    assert code == 1
    assert "1 unit(s) failed (details in failures.json)" in out
    assert "layers=last:1: toy_heldout_0_00000-0" in out and "RuntimeError: out of memory" in out


def test_a_killed_run_resumes_without_redoing_or_corrupting_anything(tmp_path, mini_cache):
    grid_path = write_mini_grid(tmp_path, layers="[first:1]", prompts=12, samples=1)
    run = tmp_path / "run"
    # In-process: a killed worker pool would leave its workers finishing their current videos.
    process = _start_run(grid_path, run, mini_cache, "--executor", "local")
    _wait_for_videos(run, 2, process)
    process.send_signal(signal.SIGKILL)  # no clean-up of any kind
    process.wait()
    process.stdout.close()

    store = RunStore(run)
    finished = sorted(run.glob("cells/*/videos/*.json"))
    assert 2 <= len(finished) < 24, "the kill should land mid-generation"
    kept = {}
    for record_path in finished:
        record = json.loads(record_path.read_text())
        video = record_path.with_suffix(".mp4")
        assert file_sha256(video) == record["sha256"]  # a record exists only for a whole video
        kept[video] = video.stat().st_mtime_ns

    grid = load_grid(grid_path, SLOW[1:])
    summary = run_grid(grid, store, cache_dir=mini_cache)
    assert summary.ok, summary.failures
    assert summary.counts["generate"].skipped == len(finished)
    assert summary.counts["generate"].run == 24 - len(finished)
    assert summary.counts["train"].run == 0  # every checkpoint came from the cache
    assert {v: v.stat().st_mtime_ns for v in kept} == kept  # finished videos were not rewritten
    assert not [p for p in run.rglob(".*") if p.name != ".lock"]  # no temporary file left behind
    for video in run.glob("cells/*/videos/*.mp4"):
        frames, _ = read_video(video)
        assert frames.shape == (4, 16, 16, 3)
    assert [(s.videos_done, s.scores_done) for s in run_status(store, grid)] == [(12, 36)] * 2


@pytest.mark.slow
def test_a_second_run_on_the_same_store_is_refused_and_the_first_finishes_intact(tmp_path, mini_cache, capsys, monkeypatch):
    grid_path = write_mini_grid(tmp_path, layers="[first:1]", prompts=8, samples=1)
    run = tmp_path / "run"
    first = _start_run(grid_path, run, mini_cache)
    _wait_for_videos(run, 1, first)
    monkeypatch.setenv("ARLON_CACHE_DIR", str(mini_cache))
    code, _, err = _main(capsys, monkeypatch, "ablate", "--grid", str(grid_path), "--out", str(run), *SLOW)
    assert code == 2 and f"error: {run} is being written by pid {first.pid}" in err
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    assert "videos 16 made, 0 already done" in output
    store = RunStore(run)
    for record_path in run.glob("cells/*/videos/*.json"):
        assert file_sha256(record_path.with_suffix(".mp4")) == json.loads(record_path.read_text())["sha256"]
    assert len(list(run.glob("cells/*/videos/*.mp4"))) == 16
    assert store.read_json("manifest.json")["latest"]["status"] == "ok"


def _snapshot(run: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run (its lock aside): content and modification time."""
    return {str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_a_finished_run_is_never_overwritten_by_other_settings(tmp_path, mini_cache, capsys, monkeypatch):
    monkeypatch.setenv("ARLON_CACHE_DIR", str(mini_cache))
    monkeypatch.setenv("COLUMNS", "200")
    grid, run = write_mini_grid(tmp_path, prompts=2, samples=1), tmp_path / "run"
    ablate = ["ablate", "--grid", str(grid), "--out", str(run), "--executor", "local"]
    assert run_grid(load_grid(grid), run, limit=1, cache_dir=mini_cache).ok  # as `ablate --limit 1`, without its report
    before = _snapshot(run)
    (tmp_path / "edited").mkdir()
    other_grid = write_mini_grid(tmp_path / "edited", layers="[first:1, last:2]", prompts=2, samples=1)  # same name, edited
    refusals = [
        (ablate + ["--set", "seed=1"], "holds another run: seed 0 -> 1; --set options none -> --set seed=1. Nothing was changed"),
        (ablate + ["--set", "flow.num_sampling_steps=3"], "configured differently (config.flow.num_sampling_steps 2 -> 3)"),
        (["generate", "--grid", str(grid), "--out", str(run), "--set", "samples_per_prompt=2"], "samples_per_prompt 1 -> 2"),
        (["ablate", "--grid", str(other_grid), "--out", str(run)], "cell(s) 'layers=last:2' added; cell(s) 'layers=last:1' removed"),
        (["ablate", "--grid", "layers", "--out", str(run)], "grid 'mini' -> 'layers'"),
    ]
    for args, difference in refusals:
        code, out, err = _main(capsys, monkeypatch, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert out.strip() == "", out  # refused before the run's header or any bar is shown
        assert difference in err and "--out" in err and "--overwrite" in err
        assert f"resume the run with its own grid and options (arlon-bench ablate --grid {grid} --out {run} --limit 1)" in err
        assert _snapshot(run) == before, args

    # A larger limit extends the run: the finished videos stay as they are.
    extended = run_grid(load_grid(grid), run, limit=2, cache_dir=mini_cache)
    assert (extended.counts["generate"].run, extended.counts["generate"].skipped) == (3, 3)
    assert {k: v for k, v in _snapshot(run).items() if k.endswith(".mp4") and k in before} == {
        k: v for k, v in before.items() if k.endswith(".mp4")
    }
    code, _, err = _main(capsys, monkeypatch, *ablate, "--limit", "1")
    assert code == 2 and f"error: {run} covers 2 prompt(s); --limit 1 would cut its tables to 1" in err

    # --overwrite replaces the run, and says what it replaces.
    code, out, err = _main(capsys, monkeypatch, *ablate, "--set", "seed=1", "--limit", "1", "--overwrite")
    assert code == 0, err
    assert f"--overwrite: replacing the run in {run}: grid 'mini', 3 cell(s), 6 finished video(s), 18 score(s)" in out
    assert "videos 3 made, 0 already done" in out and len(list(run.glob("cells/*/videos/*.mp4"))) == 3
    assert json.loads((run / "run.json").read_text())["overrides"] == ["seed=1"]


def test_a_folder_that_is_not_a_run_is_not_written_into(tmp_path, mini_cache, capsys, monkeypatch):
    monkeypatch.setenv("ARLON_CACHE_DIR", str(mini_cache))
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "results.csv").write_text("mine\n")
    grid = write_mini_grid(tmp_path, prompts=1, samples=1)
    for overwrite in ([], ["--overwrite"]):  # --overwrite replaces a run, never other files
        code, _, err = _main(capsys, monkeypatch, "ablate", "--grid", str(grid), "--out", str(folder), *overwrite)
        assert code == 2 and f"error: {folder} is not a run folder (it holds results.csv)" in err
        assert [p.name for p in folder.iterdir()] == ["results.csv"] and (folder / "results.csv").read_text() == "mine\n"


def test_score_and_report_name_a_damaged_video_and_count_honestly(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ARLON_SCORE_CACHE", "off")
    store, grid = make_fake_run(tmp_path)
    run = str(store.root)
    code, _, err = _main(capsys, monkeypatch, "report", run)  # generated, never scored
    assert code == 2 and err.strip().splitlines() == [
        f"error: {run} has no scores to report (12 of 12 videos generated, 0 of 36 scores); run `arlon-bench score {run}` first"
    ]
    assert not (store.root / "report").exists()

    code, out, _ = _main(capsys, monkeypatch, "score", run, "--executor", "local")
    assert code == 0 and "scores 36 computed, 0 current" in out
    damaged = store.video_path(grid.cells[0].id, "toy_heldout_0_00001-0")
    damaged.write_bytes(damaged.read_bytes()[:-50])

    code, out, err = _main(capsys, monkeypatch, "report", run)
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[0] == (
        f"warning: 1 of 12 videos cannot be read and are left out of the tables: baseline toy_heldout_0_00001-0 (its mp4 "
        f"does not match its record: damaged or replaced); `arlon-bench ablate --grid {tmp_path / 'mini.yaml'} --out {run}` makes them again"
    )
    assert err.splitlines()[1] == "warning: the tables rest on 11 of 12 videos and 33 of 36 scores"
    assert "│ baseline       │      3 │" in out and "│ layers=first:1 │      4 │" in out
    assert "(n=3)" in (store.root / "results.md").read_text()  # the short mean says so in the saved table too
    table = pd.read_csv(store.root / "results.csv")
    assert list(table["toy_colour_fidelity_videos"]) == [3, 4, 4]

    code, out, _ = _main(capsys, monkeypatch, "score", run, "--executor", "local")
    assert code == 1 and "scores 0 computed, 33 current | 3 failed" in out
    assert "baseline: toy_heldout_0_00001-0" in out and "does not match its record" in out


def test_scoring_without_the_vbench_environment_counts_nothing_and_adds_no_empty_column(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ARLON_SCORE_CACHE", "off")
    monkeypatch.setenv("ARLON_VBENCH_ENV", str(tmp_path / "no-env"))
    store, grid = make_fake_run(tmp_path, prompts=1, samples=2)
    run = str(store.root)
    grid_yaml = (store.root / "grid.yaml").read_text()
    code, out, _ = _main(capsys, monkeypatch, "score", run, "--backend", "vbench", "--executor", "local")
    assert code == 1
    assert "scores 0 computed, 0 current | 36 failed" in out  # 6 videos x the 6 dimensions of Table 3
    assert "not added to the run's tables, no video got a value: subject_consistency, background_consistency" in out
    assert "no VBench environment at" in out
    assert (store.root / "grid.yaml").read_text() == grid_yaml
    assert "subject_consistency" not in pd.read_csv(store.root / "results.csv").columns

    code, out, _ = _main(capsys, monkeypatch, "score", run, "--metrics", "temporal_flickering_formula", "--executor", "local")
    assert code == 0 and "temporal_flickering_formula" in out
    assert "temporal_flickering_formula" in load_grid(store.root / "grid.yaml").metrics
    assert RunStore(store.root).claim(grid, None) == ("temporal_flickering_formula",)  # resuming keeps it


def test_hand_damaged_run_files_are_one_line_and_derived_ones_are_recomputed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ARLON_SCORE_CACHE", "off")
    store, grid = make_fake_run(tmp_path, prompts=1, samples=1)
    run = str(store.root)
    ablate = ["ablate", "--grid", str(tmp_path / "mini.yaml"), "--out", run, "--executor", "local"]
    code, out, err = _main(capsys, monkeypatch, *ablate)  # every video is there: nothing to train
    assert code == 0 and "videos 0 made, 3 already done | scores 9 computed" in out, err
    settings = (store.root / "run.json").read_text()

    damaged = {
        "run.json": ('{"grid": "mini", "limit": ', "it records the run's --set options and --limit; restore it, or rewrite it by resuming the run: arlon-bench ablate"),
        "grid.yaml": ("name: [\n", "it is the grid as run; restore it from a copy, or start the run again with --overwrite"),
        "manifest.json": ('{"invocations": 3}', "it is the run's history of invocations; restore it, or move it aside"),
    }
    for name, (text, remedy) in damaged.items():
        kept = (store.root / name).read_text()
        (store.root / name).write_text(text)
        for command in (["status", run], ["report", run], ["score", run]):
            code, _, err = _main(capsys, monkeypatch, *command)
            assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, command, err)
            assert err.startswith(f"error: {store.root / name} is damaged") and remedy in err
        (store.root / name).write_text(kept)

    # run.json is rebuilt by resuming the run, checked against grid.yaml and the cell folders
    (store.root / "run.json").write_text("{")
    code, _, err = _main(capsys, monkeypatch, *ablate, "--set", "seed=1")
    assert code == 2 and "holds another run: seed 0 -> 1" in err
    code, out, err = _main(capsys, monkeypatch, *ablate)
    assert code == 0 and "videos 0 made, 3 already done" in out, err
    assert json.loads((store.root / "run.json").read_text()) == json.loads(settings)

    # a damaged score line is scored again; a damaged video record makes its video again
    scores = store.scores_path(grid.cells[0].id)
    scores.write_text(scores.read_text().replace('"metric": "toy_layout_iou"', '"metric": ', 1))
    code, _, err = _main(capsys, monkeypatch, "report", run)
    assert code == 1 and "1 scores of finished videos are missing (baseline toy_layout_iou: 1)" in err
    code, out, _ = _main(capsys, monkeypatch, "score", run, "--executor", "local")
    assert code == 0 and "scores 1 computed, 8 current" in out
    code, _, err = _main(capsys, monkeypatch, "report", run)
    assert code == 0 and not err


def test_a_report_is_not_written_into_another_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARLON_SCORE_CACHE", "off")
    mine, _ = make_fake_run(tmp_path / "a", prompts=1, samples=1, single_cell=True)
    theirs, _ = make_fake_run(tmp_path / "b", prompts=1, samples=1, single_cell=True)
    assert _main(capsys, monkeypatch, "score", str(mine.root), "--executor", "local")[0] == 0
    before = _snapshot(theirs.root)
    code, _, err = _main(capsys, monkeypatch, "report", str(mine.root), "--out", str(theirs.root / "report"))
    assert code == 2 and f"error: {theirs.root / 'report'} is inside the run {theirs.root}; write the report of {mine.root} elsewhere" in err
    assert _snapshot(theirs.root) == before
