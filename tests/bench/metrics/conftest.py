"""Fixtures of the VBench tests: a stand-in environment folder (`fake_env`, for the plumbing around the
worker), and for the tests that run the official package, its isolated environment and random checkpoints in
its models' exact key layouts, made once per test session.

The environment is kept between runs in $ARLON_VBENCH_TEST_ENV (default ~/.cache/arlon-bench/vbench-env-test)
and reused when it imports. The checkpoints are written by `vbench_fake_weights.py` inside it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.metrics.vbench.env import create_environment, environment_report

FAKE_WEIGHTS = Path(__file__).with_name("vbench_fake_weights.py")


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def vbench_weights(vbench_env, tmp_path_factory, announce) -> tuple[Path, Path]:
    """(VBench cache, torch home) holding every checkpoint the nine offline dimensions read."""
    root = tmp_path_factory.mktemp("vbench-weights")
    announce("official VBench: writing random checkpoints in its models' exact key layouts")
    vbench_cache, torch_home = root / "vbench", root / "torch"
    subprocess.run([str(vbench_env / "bin" / "python"), "-W", "ignore", str(FAKE_WEIGHTS), str(vbench_cache), str(torch_home)],
                   check=True, capture_output=True)
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total < 64 * 2**20, f"fake weights take {total / 2**20:.0f} MiB"
    return vbench_cache, torch_home


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """An environment folder with an interpreter file and an empty VBench cache."""
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    monkeypatch.setenv("ARLON_VBENCH_ENV", str(env))
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vbench-cache"))
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(tmp_path / "score-cache"))
    return env
