"""Executors of grid runs: `EXECUTORS` holds "local" (in this process) and "ray" (Ray tasks).

Importing this package registers both; the Ray executor imports Ray only when it is built, since
Ray is an optional dependency (`pip install 'arlon-bench[ray]'`).
"""

from __future__ import annotations

from bench.executors import local, ray_executor
from bench.executors.base import EXECUTORS, Executor, make_executor

__all__ = ["EXECUTORS", "Executor", "local", "make_executor", "ray_executor"]
