from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from arlon.data.video_io import write_video
from bench.errors import BenchError
from bench.grids import load_grid
from bench.prompts import load_prompts
from bench.store import (
    NOT_GENERATED,
    RunFileError,
    RunLockedError,
    RunMismatchError,
    RunStore,
    file_sha256,
    git_commit,
    resolve_run_dir,
)
from tests.bench.metrics.fake_run import make_fake_run


def test_a_second_holder_of_the_lock_is_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    with store.lock():
        with pytest.raises(RunLockedError, match=rf"{tmp_path / 'run'} is being written by pid {os.getpid()} on .*; wait"):
            with RunStore(tmp_path / "run").lock():
                pass
    with store.lock():  # released on exit
        pass


def _hold_lock(root: str, ready, release) -> None:
    with RunStore(root).lock():
        ready.set()
        release.wait(10)


def test_the_lock_is_refused_across_processes_and_freed_when_the_holder_dies(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            with RunStore(tmp_path).lock():
                pass
    finally:
        holder.kill()  # no clean exit: the kernel drops a dead process's flock
        holder.join()
    with RunStore(tmp_path).lock():
        pass


def test_partial_files_of_a_killed_writer_are_removed_under_the_lock(tmp_path):
    store = RunStore(tmp_path)
    videos = store.cell_dir("abc") / "videos"
    videos.mkdir(parents=True)
    (videos / ".toy_0-0.x1y2.mp4").write_bytes(b"half")
    (videos / "toy_0-0.mp4").write_bytes(b"whole")
    (tmp_path / ".manifest.json.tmp").write_text("{")
    with store.lock():
        pass
    assert sorted(p.name for p in videos.iterdir()) == ["toy_0-0.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "cells"]


def test_a_video_counts_only_with_its_record_its_seed_and_intact_bytes(tmp_path):
    store = RunStore(tmp_path)
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    path = write_video(store.video_path("c1", "p-0"), frames, fps=8)
    assert store.video_record("c1", "p-0") is None  # no record yet: not done
    store.write_video_record("c1", "p-0", {"seed": 7, "sha256": file_sha256(path)})
    assert store.video_record("c1", "p-0", seed=7)["seed"] == 7
    assert store.video_record("c1", "p-0", seed=8) is None  # another seed: regenerate
    path.write_bytes(path.read_bytes()[:-10])  # truncated behind the record's back
    assert store.video_record("c1", "p-0", seed=7) is None
    store.write_video_record("c1", "p-0", {"seed": 7, "sha256": file_sha256(path), "reference_sha256": "0" * 64})
    assert store.video_record("c1", "p-0", seed=7) is None  # its reference video is missing


def test_scores_merge_one_record_per_video_and_metric(tmp_path):
    store = RunStore(tmp_path)
    store.add_scores("c", [{"video": "a-0", "metric": "m", "value": 1.0, "key": "k1"}])
    store.add_scores("c", [{"video": "a-0", "metric": "m", "value": 2.0, "key": "k2"}, {"video": "b-0", "metric": "m", "value": 3.0, "key": "k3"}])
    records = store.read_scores("c")
    assert [(r["video"], r["value"]) for r in records] == [("a-0", 2.0), ("b-0", 3.0)]
    assert all(json.loads(line) for line in store.scores_path("c").read_text().splitlines())


def test_manifest_keeps_every_invocation(tmp_path):
    store = RunStore(tmp_path)
    store.record_invocation({"started": "t1", "status": "running"})
    store.record_invocation({"started": "t1", "status": "ok"})
    store.record_invocation({"started": "t2", "status": "interrupted"})
    manifest = store.read_json("manifest.json")
    assert [(e["started"], e["status"]) for e in manifest["invocations"]] == [("t1", "ok"), ("t2", "interrupted")]
    assert manifest["latest"]["started"] == "t2"


def test_git_commit_is_read_from_the_git_folder(tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    inner = repo / "pkg" / "module.py"
    inner.parent.mkdir()
    inner.write_text("")
    assert git_commit(inner) == sha
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs\n{sha} refs/heads/main\n")
    assert git_commit(inner) == sha
    (repo / ".git" / "HEAD").write_text(sha[::-1] + "\n")  # detached HEAD
    assert git_commit(inner) == sha[::-1]
    assert git_commit(Path("/")) is None


def test_runs_are_found_by_path_or_name(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "layers"
    run.mkdir(parents=True)
    (run / "grid.yaml").write_text("preset: tiny\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_run_dir(run) == run
    assert resolve_run_dir("layers") == Path("runs") / "layers"
    with pytest.raises(BenchError, match="no run at 'fusion'"):
        resolve_run_dir("fusion")


def _damage(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    "name, text, what",
    [
        ("run.json", '{"grid": "mini", "limit": ', "is damaged (not JSON"),
        ("run.json", '{"limit": "two"}', "is damaged (unexpected content)"),
        ("manifest.json", "[1, 2]", "is damaged (unexpected content)"),
        ("grid.yaml", "name: [\n", "is damaged ("),
    ],
)
def test_a_damaged_run_file_is_one_clear_error_naming_it_and_the_way_out(tmp_path, name, text, what):
    store, _ = make_fake_run(tmp_path, prompts=1, samples=1, single_cell=True)
    store.record_invocation({"started": "t1", "status": "ok", "phases": ["train", "generate"], "grid_source": "mini.yaml"})
    _damage(store.root / name, text)
    with pytest.raises(RunFileError) as caught:
        store.load_grid()
        store.read_json("manifest.json")
    message = str(caught.value)
    assert message.startswith(f"{store.root / name} {what}") and "\n" not in message
    remedy = {"run.json": "rewrite it by resuming the run: arlon-bench ablate --grid", "manifest.json": "move it aside",
              "grid.yaml": "--overwrite"}[name]
    assert remedy in message


def test_damaged_score_lines_and_video_records_are_derived_data_made_again(tmp_path):
    store, grid = make_fake_run(tmp_path, prompts=1, samples=1, single_cell=True)
    cell = grid.cells[0].id
    store.add_scores(cell, [{"video": "toy_heldout_0_00000-0", "metric": "m", "value": 0.5, "key": "k"}])
    with open(store.scores_path(cell), "a") as f:
        f.write('"x"\n{"video": 3, "metric": "m"}\n{"video": "a", "metric": "m", "value": "high"}\n{"video": "a", "metr\n')
    assert [(r["video"], r["value"]) for r in store.read_scores(cell)] == [("toy_heldout_0_00000-0", 0.5)]
    store.add_scores(cell, [{"video": "b", "metric": "m", "value": 1.0, "key": "k"}])  # rewrites the file whole
    assert len(store.scores_path(cell).read_text().splitlines()) == 2

    record = store.video_record_path(cell, "toy_heldout_0_00000-0")
    for text in ("[1]", '{"seed": 1}', "{"):
        record.write_text(text)
        assert store.check_video(cell, "toy_heldout_0_00000-0") == (None, "its record toy_heldout_0_00000-0.json is damaged")
    record.unlink()
    assert store.check_video(cell, "toy_heldout_0_00000-0")[1] == "its mp4 has no record (its generation was interrupted)"
    assert store.check_video(cell, "toy_heldout_0_00000-9") == (None, NOT_GENERATED)


def test_a_run_folder_is_claimed_by_one_grid_and_extended_by_a_larger_limit(tmp_path):
    store, grid = make_fake_run(tmp_path, prompts=2, samples=1)
    store.save_grid(grid, 1)
    source = tmp_path / "mini.yaml"
    assert store.claim(grid, 1) == () and store.claim(grid, 2) == () and store.claim(grid, None) == ()
    with pytest.raises(RunMismatchError, match=r"covers 2 prompt\(s\); --limit 1 would cut its tables to 1") as caught:
        store.save_grid(grid, None)
        store.claim(grid, 1)
    assert "resume it without --limit (or with --limit 2)" in str(caught.value)
    with pytest.raises(RunMismatchError, match=r"holds another run: seed 0 -> 1; --set options none -> --set seed=1\. Nothing was changed"):
        store.claim(load_grid(source, ["seed=1"]), None)
    with pytest.raises(RunMismatchError, match=r"'layers=last:1' configured differently \(config\.flow\.num_sampling_steps 2 -> 3\)"):
        store.claim(load_grid(source, ["flow.num_sampling_steps=3"]), None)
    edited = tmp_path / "edited" / "mini.yaml"
    edited.parent.mkdir()
    edited.write_text(source.read_text().replace("[first:1, last:1]", "[first:1]").replace("samples_per_prompt: 1", "samples_per_prompt: 2"))
    with pytest.raises(RunMismatchError, match=r"samples_per_prompt 1 -> 2; cell\(s\) 'layers=last:1' removed"):
        store.claim(load_grid(edited), None)

    # an edited prompt file: the run's prompts are not those of the grid any more
    prompts = load_prompts(grid.prompts)
    store.save_prompts([prompts[0], dataclasses.replace(prompts[1], id="p9", text="a blue cat")])
    with pytest.raises(RunMismatchError, match=r"1 of the run's 2 prompts are gone \('a blue cat'; was the prompt file edited\?\)"):
        store.claim(grid, None)
    store.save_prompts(prompts)

    # `score --metrics` added a metric: it stays in the run when the grid file (without it) resumes it
    store.save_grid(load_grid(source, ["metrics=[toy_colour_fidelity,toy_layout_iou,toy_temporal_flicker,temporal_flickering_formula]"]), None,
                    ("temporal_flickering_formula",))
    assert store.claim(grid, None) == ("temporal_flickering_formula",)
    # run.json lost: checked against grid.yaml and the cell folders instead
    (store.root / "run.json").unlink()
    assert store.claim(grid, None) == ("temporal_flickering_formula",)
    with pytest.raises(RunMismatchError, match=r"cell\(s\) 'baseline', 'layers=first:1', 'layers=last:1' configured differently"):
        store.claim(load_grid(source, ["flow.num_sampling_steps=3"]), None)


def test_a_folder_of_other_files_is_refused_and_clear_deletes_only_run_files(tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(RunMismatchError, match=r"notes is not a run folder \(it holds todo.txt\); write the run to a new or empty folder"):
        RunStore(foreign).check_folder()
    with pytest.raises(RunMismatchError, match="is a file; --out takes a folder"):
        RunStore(foreign / "todo.txt").check_folder()
    RunStore(tmp_path / "new").check_folder()

    store, _ = make_fake_run(tmp_path / "x", prompts=1, samples=1)
    (store.root / "notes.txt").write_text("mine")
    (store.root / "report").mkdir()
    store.check_folder()
    assert store.describe() == "grid 'mini', 3 cell(s), 3 finished video(s), 0 score(s)"
    assert sorted(store.clear()) == ["cells", "grid.yaml", "report", "run.json"]
    assert sorted(p.name for p in store.root.iterdir()) == ["notes.txt"]
