"""End to end with the real VBench 0.1.5 package: its isolated environment, random-initialised
checkpoints with the exact key layouts it loads (`vbench_fake_weights.py`, written into a temporary
VBench cache and torch hub), and the nine dimensions that run offline on CPU, scored on small mp4s
of a run through `run_grid` like `arlon-bench score RUN --backend vbench`.

Slow (the environment's install, then VBench's models on CPU), so it runs in CI (CI=true) or when
ARLON_VBENCH_E2E=1, and is skipped otherwise. The environment is kept between runs in
$ARLON_VBENCH_TEST_ENV (default ~/.cache/arlon-bench/vbench-env-test) and reused when it imports.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.metrics.vbench.backend import OfficialVBenchBackend
from bench.metrics.vbench.env import create_environment, environment_report
from bench.runner import run_grid
from bench.store import file_sha256
from fake_run import make_fake_run

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("ARLON_VBENCH_E2E") != "1",
    reason="end-to-end VBench run (minutes): runs in CI, or with ARLON_VBENCH_E2E=1",
)

NINE = ("temporal_flickering", "motion_smoothness", "dynamic_degree", "subject_consistency", "imaging_quality",
        "background_consistency", "aesthetic_quality", "temporal_style", "overall_consistency")
FAKE_WEIGHTS = Path(__file__).with_name("vbench_fake_weights.py")


@pytest.fixture(scope="module")
def vbench_env(announce) -> Path:
    directory = Path(os.environ.get("ARLON_VBENCH_TEST_ENV") or "~/.cache/arlon-bench/vbench-env-test").expanduser()
    try:
        environment_report(directory)
        announce(f"official VBench: reusing its environment {directory}")
    except BenchError:
        import torch

        announce(f"official VBench: creating its environment in {directory} (vbench 0.1.5 and its pins; minutes)")
        # A CPU-only torch build (+cpu) has no torchvision build on PyPI: take PyPI's newest pair then.
        create_environment(directory, torch_version="latest" if "+cpu" in torch.__version__ else None, echo=announce)
    return directory


@pytest.fixture(scope="module")
def caches(vbench_env, tmp_path_factory, announce) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vbench-weights")
    announce("official VBench: writing random checkpoints in its models' exact key layouts")
    vbench_cache, torch_home = root / "vbench", root / "torch"
    subprocess.run([str(vbench_env / "bin" / "python"), "-W", "ignore", str(FAKE_WEIGHTS), str(vbench_cache), str(torch_home)],
                   check=True, capture_output=True)
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total < 64 * 2**20, f"fake weights take {total / 2**20:.0f} MiB"
    return vbench_cache, torch_home


def test_nine_dimensions_end_to_end(tmp_path, vbench_env, caches, monkeypatch, announce):
    vbench_cache, torch_home = caches
    monkeypatch.setenv("ARLON_VBENCH_ENV", str(vbench_env))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(vbench_cache))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(tmp_path / "score-cache"))
    # One cell (one worker call, so the models load once), three 16-frame 64x64 videos (AMT-S needs at
    # least 64 pixels for its four correlation levels), one of them garbage.
    store, grid = make_fake_run(tmp_path / "run", prompts=1, samples=3, frames=16, single_cell=True, size=64)
    (cell,) = grid.cells
    records = {r: store.video_record(cell.id, r) for r in [p.name[:-5] for p in store.cell_dir(cell.id).glob("videos/*.json")]}
    # one video of the first cell becomes garbage that still matches its record: reported, the others go on
    broken = sorted(records)[0]
    store.video_path(cell.id, broken).write_bytes(b"\x00" * 1000)
    record = dict(records[broken], sha256=file_sha256(store.video_path(cell.id, broken)))
    store.write_video_record(cell.id, broken, record)

    announce(f"official VBench: scoring nine dimensions on {len(records)} videos on CPU (about two minutes on 2 idle cores)")
    started = time.perf_counter()
    summary = run_grid(grid, store, "local", phases=("score",), score_metrics=NINE)
    wall = time.perf_counter() - started
    announce(f"official VBench: nine dimensions on 2 videos (+1 unreadable) in {wall:.0f} s")
    assert [f.unit for f in summary.failures] == [f"{broken} {d}" for d in NINE]
    assert all(f.error.startswith("cannot read the video: ") for f in summary.failures)

    scored = [r for c in grid.cells for r in store.read_scores(c.id)]
    assert len(scored) == 2 * len(NINE) and all(r["backend"] == "vbench" for r in scored)
    values = {d: [r["value"] for r in scored if r["metric"] == d] for d in NINE}
    for dimension in ("subject_consistency", "background_consistency", "motion_smoothness", "temporal_flickering"):
        assert all(0.0 <= v <= 1.0 for v in values[dimension]), (dimension, values[dimension])
    assert set(values["dynamic_degree"]) <= {0.0, 1.0}
    for dimension in ("temporal_style", "overall_consistency"):
        assert all(-1.0 <= v <= 1.0 for v in values[dimension]), (dimension, values[dimension])
    assert all(math.isfinite(v) for d in NINE for v in values[d])
    for dimension in ("subject_consistency", "background_consistency", "aesthetic_quality", "imaging_quality"):
        assert len(set(values[dimension])) > 1, f"{dimension}: every video scored the same"
    assert all(r["weight"] == 15.0 for r in scored if r["metric"] in ("subject_consistency", "background_consistency"))

    table = summary.table.set_index("cell_id")
    assert table.loc[cell.id, "imaging_quality"] == pytest.approx(sum(values["imaging_quality"]) / 2 / 100)
    assert table.loc[cell.id, "dynamic_degree"] == pytest.approx(sum(values["dynamic_degree"]) / 2)
    assert table.loc[cell.id, "subject_consistency"] == pytest.approx(sum(values["subject_consistency"]) / 2)

    # Scoring again computes nothing new: every score comes from the per-video cache.
    monkeypatch.setattr(OfficialVBenchBackend, "_run_worker", lambda *args: pytest.fail("the worker ran again"))
    again = run_grid(grid, store, "local", phases=("score",), force=True, score_metrics=NINE)
    assert all(r.get("cached") for c in grid.cells for r in store.read_scores(c.id))
    assert again.table.equals(summary.table)
