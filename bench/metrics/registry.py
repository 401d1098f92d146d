"""The metric registry: one `MetricSpec` record per metric, in `METRICS`.

A spec holds everything the harness needs to know about a score (lm-eval's `metric_list` entry in
one record): the name used in grid files and tables, the backend that computes it ("toyworld" for
the weight-free ground-truth judges, VBench later), a version bumped whenever the definition
changes so that cached scores of an older definition are never mixed with new ones, the inputs
the function reads, how per-video values aggregate, and which direction is better.

A metric function takes exactly the inputs its spec names, as keyword arguments, and returns a
float, a `MetricValue` (a value with the per-video weight its aggregation needs and details worth
keeping, such as whether a filter ran), or None when the metric does not apply to this video (e.g.
no reference video was given). Metrics of a batch backend (VBench's official package scores a whole
job in another process, `bench.metrics.backends`) have no per-video function: `fn` is None.

Aggregations (`AGGREGATIONS`) take the per-video values and their weights (None for unweighted
rules). VBench's own rules are kept (docs/vbench-notes.md, 'Aggregation rules'): a frame-pair weighted
mean for subject and background consistency (weight = frame pairs of the video), a frame-weighted mean
for scene and object class (weight = frames), the imaging quality divided by 100 on the aggregate only,
and the dynamic degree as the fraction of dynamic videos (per-video values 1.0 / 0.0).
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
# from its AR codes), the frame rate, and the prompt's VBench `auxiliary_info` (a dict keyed by
# dimension, e.g. {"scene": {"scene": "alley"}}; only VBench's prompt lists carry it). For long
# videos: `timeline`, the toy ground truth part by part (`arlon.data.toyworld.ToyTimeline`; a toy
# prompt of one scene gets a one-part timeline as long as the video), and `segments`, the
# (first new frame, end) pixel frames of each DiT segment of a long video (None for a clip).
METRIC_INPUTS: tuple[str, ...] = ("video", "scene", "prompt", "reference_video", "fps", "auxiliary", "timeline", "segments")

# fn(values, weights) -> aggregate; weights is None unless the rule is weighted.
Aggregation = Callable[[Sequence[float], "Sequence[float] | None"], float]
AGGREGATIONS: Registry[Aggregation] = Registry("aggregation")
WEIGHTED_AGGREGATIONS = ("pair_weighted_mean", "frame_weighted_mean")


@AGGREGATIONS.register("mean")
def _mean(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    return float(np.mean(values))


@AGGREGATIONS.register("median")
def _median(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    return float(np.median(values))


def _weighted_mean(values: Sequence[float], weights: Sequence[float] | None, unit: str) -> float:
    if weights is None or len(weights) != len(values) or any(w is None or w <= 0 for w in weights):
        raise BenchError(f"a {unit}-weighted mean needs a positive weight ({unit}s) for every video; rescore the videos")
    return float(np.dot(values, weights) / np.sum(weights))


@AGGREGATIONS.register("pair_weighted_mean")
def _pair_weighted_mean(values: Sequence[float], weights: Sequence[float] | None) -> float:
    """VBench's subject/background consistency: sum over videos of (per-video mean x pairs) / total pairs."""
    return _weighted_mean(values, weights, "frame pair")


@AGGREGATIONS.register("frame_weighted_mean")
def _frame_weighted_mean(values: Sequence[float], weights: Sequence[float] | None) -> float:
    """VBench's scene / object class: total successful frames / total frames."""
    return _weighted_mean(values, weights, "frame")


@AGGREGATIONS.register("mean_over_100")
def _mean_over_100(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """VBench's imaging quality: per-video MUSIQ scores stay on 0-100, the aggregate is /100."""
    return float(np.mean(values)) / 100.0


@AGGREGATIONS.register("fraction_true")
def _fraction_true(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """VBench's dynamic degree: per-video booleans (1.0 / 0.0), the aggregate the share of 1.0; a
    VBench-Long video's value is already the share of its dynamic clips, in [0, 1]."""
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise BenchError("a fraction of videos needs per-video values in [0, 1]")
    return float(np.mean(values))


@dataclass(frozen=True)
class MetricValue:
    """One video's score with what its aggregation and its reader need: `weight` (frame pairs or
    frames, for weighted aggregations) and `details` (JSON-able, e.g. {"static_filter": "not applied"})."""

    value: float | None
    weight: float | None = None
    details: dict | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One metric. `fn(**{name: value for name in inputs}) -> float | MetricValue | None`, or None
    for a metric its backend computes for a whole batch of videos."""

    name: str
    backend: str
    version: int
    inputs: tuple[str, ...]
    aggregation: str
    higher_is_better: bool
    fn: Callable[..., float | MetricValue | None] | None = None
    # Other backends that compute the same values by the same algorithm (parity-tested), e.g. "native" for
    # a VBench dimension; a score record names the backend that made it.
    other_backends: tuple[str, ...] = ()

    @property
    def backends(self) -> tuple[str, ...]:
        return (self.backend, *self.other_backends)

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
    """Names of the registered metrics that `backend` computes (as their default or another backend)."""
    return [name for name in METRICS if backend in METRICS.get(name).backends]


def compute_metric_value(spec: MetricSpec, inputs: dict[str, Any]) -> MetricValue:
    """Call the metric with the inputs it declares; a None value when one of them is missing."""
    if spec.fn is None:
        raise BenchError(f"metric {spec.name!r} is computed by its backend {spec.backend!r} for a batch of videos")
    missing = [name for name in spec.inputs if inputs.get(name) is None]
    if missing:
        if "video" in missing:
            raise BenchError(f"metric {spec.name!r}: no video to score")
        return MetricValue(None)
    result = spec.fn(**{name: inputs[name] for name in spec.inputs})
    if isinstance(result, MetricValue):
        return result if result.value is None else MetricValue(float(result.value), result.weight, result.details)
    return MetricValue(None if result is None else float(result))


def compute_metric(spec: MetricSpec, inputs: dict[str, Any]) -> float | None:
    """The value of `compute_metric_value` alone."""
    return compute_metric_value(spec, inputs).value


def aggregate(
    values: Sequence[float | None], spec: MetricSpec, weights: Sequence[float | None] | None = None
) -> float | None:
    """Aggregate per-video values with the spec's aggregation (`weights` per video, for the weighted
    rules); videos where the metric does not apply (None) are left out, and None comes back when
    none applies."""
    if weights is not None and len(weights) != len(values):
        raise BenchError(f"metric {spec.name!r}: {len(values)} values but {len(weights)} weights")
    kept = [i for i, v in enumerate(values) if v is not None]
    if not kept:
        return None
    kept_values = [float(values[i]) for i in kept]
    if any(math.isnan(v) for v in kept_values):
        raise BenchError(f"metric {spec.name!r}: a per-video value is NaN; rescore the videos")
    kept_weights = None if weights is None else [weights[i] for i in kept]
    if spec.aggregation in WEIGHTED_AGGREGATIONS and kept_weights is None:
        raise BenchError(f"metric {spec.name!r}: its {spec.aggregation} needs the per-video weights of its score records")
    return AGGREGATIONS.get(spec.aggregation)(kept_values, kept_weights)
