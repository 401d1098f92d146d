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
    assert "mini: mean ± half the 95% bootstrap interval" in out
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
