"""Confidence intervals for per-video scores: percentile bootstrap over videos or over prompts.

A benchmark score is a mean over a few dozen prompts, so two models are only told apart when the
gap is larger than the resampling noise of that mean. `bootstrap_mean` gives the mean of one set of
per-video values with its percentile interval; `paired_bootstrap_difference` resamples prompts
jointly for two models scored on the same prompts (same seeds), which is the fair comparison when
both were generated from the same prompts: prompt difficulty cancels out.

With several videos per prompt the videos of one prompt are not independent (they share its
difficulty), so the unit to resample is the prompt: `cluster_bootstrap_mean` resamples prompts with
all their videos (a cluster bootstrap), and `paired_difference` does the same for the per-video
differences of two models on the same (prompt, sample) and adds a p-value from a sign-flip
permutation test over prompts (exact when there are few prompts).

Resampling is seeded, so an interval is reproducible from its inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from bench.errors import BenchError

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95


class _Interval:
    """What every estimate with an interval [low, high] offers."""

    low: float
    high: float

    def to_dict(self) -> dict:
        return asdict(self)

    def excludes(self, value: float) -> bool:
        """True when `value` lies outside the interval (e.g. 0 for a difference)."""
        return value < self.low or value > self.high


@dataclass(frozen=True)
class Estimate(_Interval):
    """A mean with its bootstrap interval [low, high] at `confidence`, over `n` values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE

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


# ---------------------------------------------------------------------------------------------
# Over prompts: cluster bootstrap and paired differences
# ---------------------------------------------------------------------------------------------

# Up to this many prompts every sign pattern is enumerated (2**12 = 4096 patterns): an exact p-value.
EXACT_PERMUTATION_PROMPTS = 12


@dataclass(frozen=True)
class PairedDifference(_Interval):
    """mean(a - b) over paired videos with its cluster-bootstrap interval and a two-sided p-value
    (sign-flip permutation over prompts) for "no difference"; `n` counts prompts, `videos` pairs."""

    mean: float
    low: float
    high: float
    n: int
    videos: int
    p_value: float
    confidence: float = DEFAULT_CONFIDENCE

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] p={self.p_value:.3g}"


def _cluster_sums(
    values: np.ndarray, clusters: Sequence, name: str, weights: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(per-cluster weighted sums, per-cluster total weights), clusters in first-seen order; the
    pooled mean is sums.sum() / counts.sum() (a weighted mean when `weights` are given)."""
    labels = list(clusters)
    if len(labels) != values.size:
        raise BenchError(f"{name}: {values.size} values but {len(labels)} prompt ids")
    weight = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    if weight.shape != values.shape or not (weight > 0).all():
        raise BenchError(f"{name}: need one positive weight per video; rescore the videos")
    index = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    codes = np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))
    sums = np.bincount(codes, weights=values * weight, minlength=len(index))
    counts = np.bincount(codes, weights=weight, minlength=len(index))
    return sums, counts


def _cluster_interval(
    sums: np.ndarray, counts: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of the pooled mean when whole clusters are resampled with replacement."""
    if not 0 < confidence < 1:
        raise BenchError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, sums.size, size=(resamples, sums.size))  # (R, G)
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)  # (R,)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def cluster_bootstrap_mean(
    values: Sequence[float],
    clusters: Sequence,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    name: str = "scores",
    weights: Sequence[float] | None = None,
) -> Estimate:
    """Mean of per-video `values` with the interval from resampling prompts (`clusters`: one prompt
    id per value) with all their videos; `n` is the number of prompts. With `weights` (e.g. VBench's
    frame pairs per video), the weighted mean and its interval."""
    array = _checked(values, name)
    sums, counts = _cluster_sums(array, clusters, name, weights)
    low, high = _cluster_interval(sums, counts, confidence, resamples, seed)
    # The percentile bounds are quantiles of means of the same numbers: clamp rounding noise.
    mean = float(sums.sum() / counts.sum())
    return Estimate(mean, min(low, mean), max(high, mean), int(sums.size), confidence)


def sign_flip_p_value(sums: np.ndarray, counts: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value of "a and b are exchangeable within each prompt": the pooled mean
    difference against the means with each prompt's differences sign-flipped. Exact enumeration up
    to EXACT_PERMUTATION_PROMPTS prompts, else `resamples` random patterns (+1 smoothing)."""
    observed = abs(sums.sum() / counts.sum())
    if sums.size <= EXACT_PERMUTATION_PROMPTS:
        patterns = ((np.arange(2**sums.size)[:, None] >> np.arange(sums.size)) & 1) * 2.0 - 1.0  # (2^G, G)
    else:
        patterns = np.random.default_rng(seed).choice([-1.0, 1.0], size=(resamples, sums.size))  # (R, G)
    flipped = np.abs(patterns @ sums) / counts.sum()  # (P,)
    # A relative tolerance so that float noise never counts a tie as a smaller statistic.
    extreme = int((flipped >= observed - 1e-12 * max(1.0, observed)).sum())
    if sums.size <= EXACT_PERMUTATION_PROMPTS:
        return extreme / patterns.shape[0]
    return (extreme + 1) / (patterns.shape[0] + 1)


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    clusters: Sequence,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    name: str = "scores",
    weights: Sequence[float] | None = None,
) -> PairedDifference:
    """mean(a - b) over videos paired by (prompt, sample), `clusters` naming each pair's prompt:
    cluster-bootstrap interval and sign-flip permutation p-value (weighted by `weights` if given)."""
    first, second = _checked(a, name), _checked(b, name)
    if first.shape != second.shape:
        raise BenchError(f"{name}: a paired comparison needs the same videos for both models ({first.size} vs {second.size})")
    differences = first - second
    sums, counts = _cluster_sums(differences, clusters, name, weights)
    low, high = _cluster_interval(sums, counts, confidence, resamples, seed)
    mean = float(sums.sum() / counts.sum())
    p_value = sign_flip_p_value(sums, counts, resamples, seed)
    return PairedDifference(mean, min(low, mean), max(high, mean), int(sums.size), int(differences.size), p_value, confidence)
