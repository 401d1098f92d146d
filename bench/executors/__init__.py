"""Executors of grid runs: `EXECUTORS` holds "local" (in this process), "processes" (worker processes
on this machine) and "ray" (Ray tasks); `make_executor("auto")` picks local or processes.

Importing this package registers them; the Ray executor imports Ray only when it is built, since
Ray is an optional dependency (`pip install 'arlon-bench[ray]'`).
"""

from __future__ import annotations

from bench.executors import local, processes, ray_executor
from bench.executors.base import AUTO, EXECUTORS, Executor, make_executor

__all__ = ["AUTO", "EXECUTORS", "Executor", "local", "make_executor", "processes", "ray_executor"]
