from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _private_score_cache(monkeypatch, tmp_path_factory):
    # Scores computed by tests neither land in nor come from the machine's shared score cache.
    monkeypatch.setenv("ARLON_SCORE_CACHE", str(tmp_path_factory.getbasetemp() / "score-cache"))
