"""The skip rule of the tests that run the official VBench package (its environment takes minutes to build)."""

from __future__ import annotations

import os

import pytest

OFFICIAL_VBENCH_E2E = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("ARLON_VBENCH_E2E") != "1",
    reason="end-to-end VBench run (minutes): runs in CI, or with ARLON_VBENCH_E2E=1",
)
