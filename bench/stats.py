"""Confidence intervals for per-video scores: percentile bootstrap over videos.

A benchmark score is a mean over a few dozen prompts, so two models are only told apart when the
gap is larger than the resampling noise of that mean. `bootstrap_mean` gives the mean of one set of
per-video values with its percentile interval; `paired_bootstrap_difference` resamples prompts
jointly for two models scored on the same prompts (same seeds), which is the fair comparison when
both were generated from the same prompts: prompt difficulty cancels out.

Resampling is seeded, so an interval is reproducible from its inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from bench.errors import BenchError

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap interval [low, high] at `confidence`, over `n` values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE

    def to_dict(self) -> dict:
        return asdict(self)

    def excludes(self, value: float) -> bool:
        """True when `value` lies outside the interval (e.g. 0 for a difference)."""
        return value < self.low or value > self.high

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _checked(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise BenchError(f"{name}: need a non-empty list of per-video values, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise BenchError(f"{name}: a per-video value is not finite; rescore the videos")
    return array


def _percentile_interval(
    values: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap of the mean: resample the n values with replacement `resamples` times."""
    if not 0 < confidence < 1:
        raise BenchError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(resamples, values.size))  # (R, n)
    means = values[picks].mean(axis=1)  # (R,)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_mean(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    name: str = "scores",
) -> Estimate:
    """Mean of per-video `values` with its percentile-bootstrap interval."""
    array = _checked(values, name)
    low, high = _percentile_interval(array, confidence, resamples, seed)
    return Estimate(float(array.mean()), low, high, int(array.size), confidence)


def paired_bootstrap_difference(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    name: str = "scores",
) -> Estimate:
    """mean(a - b) over prompts scored for both models, with its paired bootstrap interval."""
    first, second = _checked(a, name), _checked(b, name)
    if first.shape != second.shape:
        raise BenchError(f"{name}: a paired comparison needs the same prompts for both models ({first.size} vs {second.size})")
    return bootstrap_mean(first - second, confidence, resamples, seed, name)
