"""End to end with the real VBench 0.1.5 package: its isolated environment, random-initialised
checkpoints with the exact key layouts it loads (`vbench_fake_weights.py`, written into a temporary
VBench cache and torch hub), and the nine dimensions that run offline on CPU, scored on small mp4s
of a run through `run_grid` like `arlon-bench score RUN --backend vbench`.

Slow (the environment's install, then VBench's models on CPU), so it runs in CI (CI=true) or when
ARLON_VBENCH_E2E=1, and is skipped otherwise. The environment and the checkpoints are this folder's
conftest.py fixtures.
"""

from __future__ import annotations

import math
import time

import pytest

from bench.metrics.vbench.backend import OfficialVBenchBackend
from bench.runner import run_grid
from bench.store import file_sha256
from fake_run import make_fake_run
from vbench_e2e import OFFICIAL_VBENCH_E2E

pytestmark = OFFICIAL_VBENCH_E2E

NINE = ("temporal_flickering", "motion_smoothness", "dynamic_degree", "subject_consistency", "imaging_quality",
        "background_consistency", "aesthetic_quality", "temporal_style", "overall_consistency")


def test_nine_dimensions_end_to_end(tmp_path, vbench_env, vbench_weights, monkeypatch, announce):
    vbench_cache, torch_home = vbench_weights
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
