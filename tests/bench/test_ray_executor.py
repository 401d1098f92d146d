"""The Ray executor makes exactly the videos the local one makes (issue 4: seeds never depend on the
executor or the number of workers). Runs when Ray is importable: `pip install 'arlon-bench[ray]'`."""

from __future__ import annotations

import json

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'arlon-bench[ray]'); CI installs .[test] only")

from bench.executors import make_executor  # noqa: E402
from bench.grids import load_grid  # noqa: E402
from bench.runner import run_grid  # noqa: E402
from bench.store import RunStore  # noqa: E402

from mini_run import write_mini_grid  # noqa: E402


def _videos(store: RunStore) -> dict[str, tuple[str, str]]:
    return {
        str(p.relative_to(store.root)): (json.loads(p.read_text())["sha256"], json.loads(p.read_text())["frames_sha256"])
        for p in sorted(store.root.glob("cells/*/videos/*.json"))
    }


def _checkpoints(store: RunStore) -> dict[str, str]:
    stages = {}
    for path in store.root.glob("cells/*/checkpoints.json"):
        stages.update({name: s["sha256"] for name, s in json.loads(path.read_text())["stages"].items()})
    return stages


def test_ray_with_two_workers_trains_and_generates_what_the_local_executor_does(tmp_path):
    grid = load_grid(write_mini_grid(tmp_path))
    local = RunStore(tmp_path / "local")
    # The workers run one torch thread each; bit-for-bit equality needs the same here, for training
    # too (thread counts change the order of float sums, so the weights would differ in their last bits).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_grid(grid, local, "local", cache_dir=tmp_path / "local-cache").ok
    finally:
        torch.set_num_threads(threads)

    executor = make_executor("ray", workers=2)
    try:
        remote = RunStore(tmp_path / "ray")
        # A fresh cache: Ray trains every stage too (in dependency waves), then generates and scores.
        summary = run_grid(grid, remote, executor, cache_dir=tmp_path / "ray-cache")
    finally:
        executor.close()
    assert summary.ok, summary.failures
    assert summary.counts["train"].run == 8 and summary.counts["generate"].run == 12

    assert _checkpoints(remote) == _checkpoints(local)
    assert _videos(remote) == _videos(local) and len(_videos(local)) == 12
    assert (tmp_path / "ray" / "results.csv").read_text() == (tmp_path / "local" / "results.csv").read_text()
