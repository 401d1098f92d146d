from __future__ import annotations

import contextlib
import os

import pytest
import torch

# End-to-end checks of ten seconds or more that a plain local `pytest` skips, so that the README's test
# command stays within five minutes on two cores; `.ci/run` sets ARLON_SLOW_TESTS=1 and runs them.
SLOW_TESTS_RUN = os.environ.get("ARLON_SLOW_TESTS") == "1" or os.environ.get("CI") == "true"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: an end-to-end check that only .ci/run runs (or ARLON_SLOW_TESTS=1)")
    config.addinivalue_line("markers", "cuda: needs a GPU; skipped without one (`pytest -m cuda`, run by `arlon-bench gpu-check`)")


def pytest_collection_modifyitems(config, items):
    if SLOW_TESTS_RUN:
        return
    skip = pytest.mark.skip(reason="slow end-to-end check: runs in .ci/run, or with ARLON_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _private_score_cache(monkeypatch, tmp_path_factory):
    # Scores computed by tests neither land in nor come from the machine's shared score cache.
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(tmp_path_factory.getbasetemp() / "score-cache"))


@pytest.fixture(scope="session")
def announce(pytestconfig):
    """`announce(text)` writes a line to the terminal at once, past pytest's output capture, so that a test
    running for minutes (the official-VBench end-to-end test) shows what it is doing under `pytest -q`."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(text: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"  ... {text}")

    return say
