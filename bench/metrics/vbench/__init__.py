"""VBench scored by the official package in its own environment (docs/vbench-notes.md).

Importing this package registers one metric per VBench dimension of `DIMENSIONS`, under the
dimension's own name (`subject_consistency`, ...) with backend "vbench" and VBench's aggregation
rule (computed by the "native" backend too where it has a scorer), and the "vbench" and "native" scoring
backends. Modules:

- `dimensions`: per dimension, its inputs, aggregation and the files it reads (paths, URLs).
- `env`: `arlon-bench vbench setup`, the isolated environment (vbench==0.1.5 and its pins).
- `doctor`: `arlon-bench vbench doctor`, which files are present or missing, and the fixes.
- `backend`: the scoring backend (one worker subprocess per job; VBench-Long splitting).
- `worker.py`: the script that runs inside the environment (imports nothing from this project).
- `native/`: the "native" backend, VBench's algorithms in this process (`--backend native`).
- `results_io`: export-vbench / import-vbench and the leaderboard's Quality / Semantic / Total.
"""

from __future__ import annotations

from bench.metrics.registry import METRICS, MetricSpec
from bench.metrics.vbench import backend
from bench.metrics.vbench.dimensions import DIMENSIONS
from bench.metrics.vbench.native import NATIVE_SCORERS

BACKEND = "vbench"
VERSION = 1  # of how the harness calls VBench 0.1.5; bump when the worker's handling changes

for _dimension in DIMENSIONS.values():
    if _dimension.name not in METRICS:
        METRICS.register(_dimension.name)(
            MetricSpec(_dimension.name, BACKEND, VERSION, _dimension.inputs, _dimension.aggregation, True,
                       other_backends=("native",) if _dimension.name in NATIVE_SCORERS.keys() else ())
        )

__all__ = ["BACKEND", "DIMENSIONS", "VERSION", "backend"]
