from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from arlon.data.video_io import write_video
from bench.errors import BenchError
from bench.store import RunLockedError, RunStore, file_sha256, git_commit, resolve_run_dir


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
