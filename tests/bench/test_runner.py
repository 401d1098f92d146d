from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.executors import local as local_executor
from bench.executors.work import LATENTS, cell_stages, seed_for
from bench.grids import load_grid
from bench.runner import open_run, plan_training, plan_videos, report_run, run_grid, run_status
from bench.store import RunLockedError, RunStore

from mini_run import mini_cache, write_mini_grid  # noqa: F401  (mini_cache is a fixture)

METRICS = ["toy_colour_fidelity", "toy_layout_iou", "toy_temporal_flicker"]


@pytest.fixture
def grid(tmp_path):
    return load_grid(write_mini_grid(tmp_path))


def records(store: RunStore, cell_id: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((store.cell_dir(cell_id) / "videos").glob("*.json"))}


def mtimes(store: RunStore) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in store.root.glob("cells/*/*/*") if p.is_file()}


def test_a_run_writes_videos_scores_table_and_provenance(grid, mini_cache, tmp_path):
    store = RunStore(tmp_path / "run")
    summary = run_grid(grid, store, cache_dir=mini_cache)
    assert summary.ok, summary.failures
    assert (summary.counts["generate"].total, summary.counts["generate"].run) == (12, 12)  # 3 cells x 2 prompts x 2 samples
    assert (summary.counts["score"].total, summary.counts["score"].run) == (36, 36)
    assert summary.counts["train"].skipped == summary.counts["train"].total == 8  # every stage was in the cache

    baseline, first, last = grid.cells
    for cell in grid.cells:
        assert json.loads((store.cell_dir(cell.id) / "cell.json").read_text())["label"] == cell.label
        stages = json.loads((store.cell_dir(cell.id) / "checkpoints.json").read_text())["stages"]
        expected = {"vae", "backbone", "ar_vq", "ar"} | (set() if cell.is_baseline else {"dit_vq", "injector"})
        assert set(stages) == expected and all(s["source"].startswith(str(mini_cache)) for s in stages.values())
        assert sorted(records(store, cell.id)) == [f"toy_heldout_0_0000{i}-{k}" for i in range(2) for k in range(2)]
        assert len(store.read_scores(cell.id)) == 12
    # ARLON's videos differ from the baseline's; all three share the AR model's plan (reference video).
    b, f, l = (records(store, c.id)["toy_heldout_0_00000-0"] for c in grid.cells)
    assert len({b["frames_sha256"], f["frames_sha256"], l["frames_sha256"]}) == 3
    assert b["reference_sha256"] == f["reference_sha256"] == l["reference_sha256"]
    assert b["seed"] == f["seed"] == seed_for("toy_heldout_0_00000", 0, 0)

    table = pd.read_csv(store.root / "results.csv")
    assert list(table["cell"]) == ["baseline", "layers=first:1", "layers=last:1"]
    for metric in METRICS:
        assert (table[f"{metric}_low"] <= table[metric]).all() and (table[metric] <= table[f"{metric}_high"]).all()
    assert list(table["videos"]) == [4, 4, 4]
    assert "| baseline | 4 |" in (store.root / "results.md").read_text()
    assert len(pd.read_csv(store.root / "scores.csv")) == 36
    latest = store.read_json("manifest.json")["latest"]
    assert latest["status"] == "ok" and latest["seeds"]["base_seed"] == 0
    assert {"git_commit", "packages", "device", "torch_threads", "cpu_capability"} <= set(latest["provenance"])
    assert latest["provenance"]["packages"]["torch"]


def test_a_rerun_skips_finished_units_and_force_redoes_them_identically(grid, mini_cache, tmp_path):
    store = RunStore(tmp_path / "run")
    run_grid(grid, store, cache_dir=mini_cache)
    before, first_records = mtimes(store), records(store, grid.cells[1].id)

    again = run_grid(grid, store, cache_dir=mini_cache)
    assert (again.counts["generate"].skipped, again.counts["generate"].run) == (12, 0)
    assert (again.counts["score"].skipped, again.counts["score"].run) == (36, 0)
    assert again.counts["train"].total == 0  # nothing to generate, so nothing to load or train
    assert mtimes(store) == before

    forced = run_grid(grid, store, cache_dir=mini_cache, force=True)
    assert (forced.counts["generate"].run, forced.counts["score"].run) == (12, 36)
    after = records(store, grid.cells[1].id)
    assert {k: r["frames_sha256"] for k, r in after.items()} == {k: r["frames_sha256"] for k, r in first_records.items()}
    assert all(mtimes(store)[p] != t for p, t in before.items() if p.endswith(".mp4"))


def test_a_missing_or_damaged_video_alone_is_redone(grid, mini_cache, tmp_path):
    store = RunStore(tmp_path / "run")
    run_grid(grid, store, cache_dir=mini_cache)
    cell = grid.cells[2]
    store.video_path(cell.id, "toy_heldout_0_00001-1").unlink()
    damaged = store.video_path(grid.cells[0].id, "toy_heldout_0_00000-0")
    damaged.write_bytes(damaged.read_bytes()[:100])
    summary = run_grid(grid, store, cache_dir=mini_cache)
    assert (summary.counts["generate"].run, summary.counts["generate"].skipped) == (2, 10)
    # The remade videos are the same bytes, so their scores (keyed by content) are still current.
    assert summary.counts["score"].run == 0 and summary.counts["score"].skipped == 36
    assert run_status(store, grid)[2].videos_done == 4


def test_seeds_depend_only_on_prompt_sample_and_base_seed(grid, tmp_path):
    assert seed_for("toy_heldout_0_00000", 0, 0) == seed_for("toy_heldout_0_00000", 0, 0)
    assert len({seed_for("p", k, s) for k in range(3) for s in range(3)}) == 9
    from bench.prompts import load_prompts

    store = RunStore(tmp_path / "empty")
    pending, _ = plan_videos(grid, load_prompts(grid.prompts), store)
    seeds = [{(u.name, u.seed) for u in units} for units in pending.values()]
    assert seeds[0] == seeds[1] == seeds[2]  # the same prompt and sample get the same noise in every cell
    limited, _ = plan_videos(grid, load_prompts(grid.prompts, limit=1), store)
    assert {(u.name, u.seed) for u in next(iter(limited.values()))} <= seeds[0]


def test_training_units_are_shared_between_cells():
    steps = load_grid("steps")
    units, needed = plan_training([(c, cell_stages(c, True)) for c in steps.cells])
    stages = [u.stage for u in units]
    assert stages == ["vae", LATENTS, "ar_vq", "dit_vq", "ar", "backbone", "injector"]  # one injector for every step count
    assert all(u.label == u.stage for u in units)
    injector = units[-1].id
    assert all((injector in needed[c.id]) != c.is_baseline for c in steps.cells)
    position = {u.id: i for i, u in enumerate(units)}
    assert all(position[need] < position[u.id] for u in units for need in u.needs)

    layers = load_grid("layers")
    units, _ = plan_training([(c, cell_stages(c, False)) for c in layers.cells])
    assert [u.label for u in units if u.stage == "injector"] == [
        "injector (layers=first:3)", "injector (layers=first:8)", "injector (layers=first:14)", "injector (layers=last:14)"
    ]
    assert sum(u.stage == "ar" for u in units) == 1


def test_a_failed_training_unit_fails_its_cell_and_spares_the_others(grid, mini_cache, tmp_path, monkeypatch):
    real = local_executor.run_train_unit

    def fail_last(unit, context, progress=None):
        if unit.label == "injector (layers=last:1)":
            raise RuntimeError("loss diverged")
        return real(unit, context, progress)

    monkeypatch.setattr(local_executor, "run_train_unit", fail_last)
    summary = run_grid(grid, tmp_path / "run", cache_dir=mini_cache)
    assert not summary.ok
    assert summary.failures[0].phase == "train" and summary.failures[0].error == "RuntimeError: loss diverged"
    assert [f.unit for f in summary.failures[1:]] == [f"layers=last:1: toy_heldout_0_0000{i}-{k}" for i in range(2) for k in range(2)]
    assert summary.counts["generate"].failed == 4 and summary.counts["generate"].run == 8
    assert list(summary.table["videos"]) == [4, 4, 0]
    assert json.loads((tmp_path / "run" / "failures.json").read_text())[0]["error"] == "RuntimeError: loss diverged"


def test_a_run_refuses_a_store_in_use(grid, tmp_path):
    store = RunStore(tmp_path / "run")
    with store.lock():
        with pytest.raises(RunLockedError):
            run_grid(grid, tmp_path / "run")


def test_phases_status_and_report_of_an_existing_run(mini_cache, tmp_path):
    grid = load_grid(write_mini_grid(tmp_path), ["prompts.n=1", "flow.num_sampling_steps=3"])
    store = RunStore(tmp_path / "run")
    generated = run_grid(grid, store, cache_dir=mini_cache, phases=("train", "generate"))
    assert generated.table is None and generated.counts["generate"].run == 6
    assert generated.counts["train"].run == 0  # sampling steps do not change what is trained
    reopened, same_grid, limit = open_run(store.root)
    assert [c.id for c in same_grid.cells] == [c.id for c in grid.cells] and same_grid.prompts.n == 1
    assert [(s.videos_done, s.videos_total, s.scores_done) for s in run_status(reopened, same_grid, limit)] == [(2, 2, 0)] * 3
    scored = run_grid(same_grid, reopened, phases=("score",), limit=limit, cache_dir=mini_cache)
    assert scored.counts["score"].run == 18 and scored.counts["generate"].total == 0
    table, files = report_run(reopened, same_grid, limit)
    pd.testing.assert_frame_equal(table, scored.table)
    assert set(files) >= {"results.csv", "results.md", "scores.csv"}
