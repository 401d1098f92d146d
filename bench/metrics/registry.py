"""The metric registry: one `MetricSpec` record per metric, in `METRICS`.

A spec holds everything the harness needs to know about a score (lm-eval's `metric_list` entry in
one record): the name used in grid files and tables, the backend that computes it ("toyworld" for
the weight-free ground-truth judges, VBench later), a version bumped whenever the definition
changes so that cached scores of an older definition are never mixed with new ones, the inputs
the function reads, how per-video values aggregate, and which direction is better.

A metric function takes exactly the inputs its spec names, as keyword arguments, and returns a
float, or None when the metric does not apply to this video (e.g. no reference video was given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from arlon.registry import Registry
from bench.errors import BenchError

# What a metric may read: the generated video (uint8 (T, H, W, 3)), the prompt's toy scene
# (`SceneSpec`), the prompt text, a reference video of the same shape (for ARLON: the video decoded
# from its AR codes) and the frame rate.
METRIC_INPUTS: tuple[str, ...] = ("video", "scene", "prompt", "reference_video", "fps")

AGGREGATIONS: Registry[Callable[[Sequence[float]], float]] = Registry("aggregation")


@AGGREGATIONS.register("mean")
def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


@AGGREGATIONS.register("median")
def _median(values: Sequence[float]) -> float:
    return float(np.median(values))


@dataclass(frozen=True)
class MetricSpec:
    """One metric. `fn(**{name: value for name in inputs}) -> float | None`."""

    name: str
    backend: str
    version: int
    inputs: tuple[str, ...]
    aggregation: str
    higher_is_better: bool
    fn: Callable[..., float | None]

    def __post_init__(self):
        unknown = [name for name in self.inputs if name not in METRIC_INPUTS]
        if unknown:
            raise ValueError(f"metric {self.name!r}: unknown inputs {unknown} (choices: {', '.join(METRIC_INPUTS)})")
        if "video" not in self.inputs:
            raise ValueError(f"metric {self.name!r}: every metric reads the generated 'video'")
        AGGREGATIONS.get(self.aggregation)


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(
    name: str,
    *,
    backend: str,
    version: int,
    inputs: tuple[str, ...],
    higher_is_better: bool,
    aggregation: str = "mean",
) -> Callable[[Callable[..., float | None]], Callable[..., float | None]]:
    """Decorator: build the function's `MetricSpec` and register it in `METRICS` under `name`."""

    def decorator(fn: Callable[..., float | None]) -> Callable[..., float | None]:
        METRICS.register(name)(MetricSpec(name, backend, version, tuple(inputs), aggregation, higher_is_better, fn))
        return fn

    return decorator


def metrics_of_backend(backend: str) -> list[str]:
    """Names of the registered metrics that `backend` computes, in registration order."""
    return [name for name in METRICS if METRICS.get(name).backend == backend]


def compute_metric(spec: MetricSpec, inputs: dict[str, Any]) -> float | None:
    """Call the metric with the inputs it declares; None when one of them is missing (None)."""
    missing = [name for name in spec.inputs if inputs.get(name) is None]
    if missing:
        if "video" in missing:
            raise BenchError(f"metric {spec.name!r}: no video to score")
        return None
    value = spec.fn(**{name: inputs[name] for name in spec.inputs})
    return None if value is None else float(value)


def aggregate(values: Sequence[float | None], spec: MetricSpec) -> float | None:
    """Aggregate per-video values with the spec's aggregation; videos where the metric does not
    apply (None) are left out, and None comes back when none applies."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None
    if any(math.isnan(v) for v in kept):
        raise BenchError(f"metric {spec.name!r}: a per-video value is NaN; rescore the videos")
    return AGGREGATIONS.get(spec.aggregation)(kept)
