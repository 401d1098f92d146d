"""The Ray executor makes exactly the videos the local one makes (seeds never depend on the
executor or the number of workers). Runs when Ray is importable: `pip install 'arlon-bench[ray]'`."""

from __future__ import annotations


import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'arlon-bench[ray]'); CI installs .[test] only")

from bench.executors import make_executor  # noqa: E402
from bench.grids import load_grid  # noqa: E402
from bench.runner import run_grid  # noqa: E402
from bench.store import RunStore  # noqa: E402

from mini_run import checkpoint_hashes, run_on_one_thread, video_hashes, write_mini_grid  # noqa: E402


@pytest.mark.slow
def test_ray_with_two_workers_trains_and_generates_what_the_local_executor_does(tmp_path):
    grid = load_grid(write_mini_grid(tmp_path))
    local = run_on_one_thread(grid, tmp_path / "local", tmp_path / "local-cache")

    executor = make_executor("ray", workers=2)
    try:
        remote = RunStore(tmp_path / "ray")
        # A fresh cache: Ray trains every stage too (each as soon as its needs are done), then generates and scores.
        summary = run_grid(grid, remote, executor, cache_dir=tmp_path / "ray-cache")
    finally:
        executor.close()
    assert summary.ok, summary.failures
    assert summary.counts["train"].run == 8 and summary.counts["generate"].run == 12

    assert checkpoint_hashes(remote) == checkpoint_hashes(local)
    assert video_hashes(remote) == video_hashes(local) and len(video_hashes(local)) == 12
    assert (tmp_path / "ray" / "results.csv").read_text() == (tmp_path / "local" / "results.csv").read_text()
