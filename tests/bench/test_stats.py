from __future__ import annotations

import numpy as np
import pytest

from bench.errors import BenchError
from bench.stats import bootstrap_mean, paired_bootstrap_difference


def test_interval_contains_the_mean_and_narrows_with_more_videos():
    rng = np.random.default_rng(0)
    few = bootstrap_mean(rng.normal(0.5, 0.1, 10))
    many = bootstrap_mean(rng.normal(0.5, 0.1, 1000))
    assert few.low < few.mean < few.high and many.low < many.mean < many.high
    assert (many.high - many.low) < (few.high - few.low) / 5
    # The percentile interval of a normal mean is close to mean +- 1.96 sd / sqrt(n).
    assert many.high - many.low == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(1000), rel=0.15)


def test_interval_is_reproducible_and_constant_values_have_no_width():
    values = [0.2, 0.4, 0.9, 0.1, 0.5]
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    flat = bootstrap_mean([0.7] * 8)
    assert flat.low == flat.high == pytest.approx(0.7)


def test_paired_difference_sees_a_consistent_gain_that_unpaired_noise_hides():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0, 1, 40)  # per prompt, shared by both models
    a, b = difficulty + 0.05, difficulty
    diff = paired_bootstrap_difference(a, b)
    assert diff.mean == pytest.approx(0.05) and diff.excludes(0.0)
    assert not bootstrap_mean(a).excludes(float(np.mean(b)))  # the unpaired intervals overlap


def test_bad_inputs_are_clear_errors():
    with pytest.raises(BenchError, match="non-empty"):
        bootstrap_mean([])
    with pytest.raises(BenchError, match="not finite"):
        bootstrap_mean([0.1, float("nan")])
    with pytest.raises(BenchError, match="same prompts"):
        paired_bootstrap_difference([0.1, 0.2], [0.1])
