"""Metrics: the `METRICS` registry and its backends. Importing a backend module registers its
metrics; every backend is imported here, so `METRICS` is complete once `bench.metrics` is imported."""

from __future__ import annotations

from bench.metrics import flicker, toylong, toyworld, vbench
from bench.metrics.registry import METRICS, MetricSpec, MetricValue, aggregate, compute_metric, register_metric

__all__ = ["METRICS", "MetricSpec", "MetricValue", "aggregate", "compute_metric", "register_metric", "flicker", "toylong", "toyworld", "vbench"]
