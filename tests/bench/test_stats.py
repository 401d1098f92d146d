from __future__ import annotations

import numpy as np
import pytest

from bench.errors import BenchError
from bench.stats import bootstrap_mean, cluster_bootstrap_mean, paired_bootstrap_difference, paired_difference


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


# -- over prompts: cluster bootstrap, paired differences, sign-flip p-values ------------------


def _clustered(rng, prompts: int, samples: int, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-video values whose prompts share a random difficulty (so videos of a prompt correlate)."""
    difficulty = rng.normal(0.0, 0.2, prompts)  # (P,)
    values = mean + difficulty[:, None] + rng.normal(0.0, 0.1, (prompts, samples))  # (P, S)
    return values.ravel(), np.repeat(np.arange(prompts), samples)


def test_cluster_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    covered = 0
    for repetition in range(400):
        values, prompts = _clustered(rng, prompts=40, samples=3, mean=0.6)
        estimate = cluster_bootstrap_mean(values, prompts, resamples=1000, seed=repetition)
        covered += estimate.low <= 0.6 <= estimate.high
    assert 0.92 <= covered / 400 <= 0.975


def test_resampling_videos_instead_of_prompts_undercovers_clustered_data():
    """Why the report resamples prompts: the per-video interval is too narrow when videos of one prompt correlate."""
    rng = np.random.default_rng(8)
    covered = 0
    for repetition in range(200):
        values, _ = _clustered(rng, prompts=40, samples=3, mean=0.6)
        estimate = bootstrap_mean(values, resamples=1000, seed=repetition)
        covered += estimate.low <= 0.6 <= estimate.high
    assert covered / 200 < 0.85


def test_cluster_interval_with_one_video_per_prompt_is_the_plain_bootstrap():
    values = np.random.default_rng(2).uniform(0, 1, 30)
    assert cluster_bootstrap_mean(values, range(30), seed=4) == bootstrap_mean(values, seed=4)
    assert cluster_bootstrap_mean(values, range(30)).n == 30
    assert cluster_bootstrap_mean(values, np.arange(30) // 3).n == 10  # n counts prompts


def test_paired_difference_is_exact_on_a_shift_and_p_is_one_on_identical_inputs():
    values, prompts = _clustered(np.random.default_rng(3), prompts=30, samples=2, mean=0.5)
    shifted = paired_difference(values + 0.125, values, prompts)
    assert shifted.mean == pytest.approx(0.125) and shifted.low == pytest.approx(0.125) and shifted.high == pytest.approx(0.125)
    assert shifted.p_value < 0.001 and shifted.n == 30 and shifted.videos == 60
    same = paired_difference(values, values, prompts)
    assert (same.mean, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_sign_flip_p_value_is_exact_for_few_prompts_and_uniform_under_the_null():
    # Four prompts all better: 2 of the 16 sign patterns are as extreme (all + or all -).
    assert paired_difference([1.0, 2.0, 3.0, 4.0], [0.0] * 4, ["a", "b", "c", "d"]).p_value == pytest.approx(2 / 16)
    rng = np.random.default_rng(5)
    p_values = []
    for repetition in range(200):
        a, prompts = _clustered(rng, prompts=30, samples=2, mean=0.5)
        b = a + rng.normal(0.0, 0.1, a.size)  # the same model up to noise: no true difference
        p_values.append(paired_difference(a, b, prompts, resamples=500, seed=repetition).p_value)
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09


def test_paired_inputs_must_line_up():
    with pytest.raises(BenchError, match="same videos"):
        paired_difference([0.1, 0.2], [0.1], ["a", "b"])
    with pytest.raises(BenchError, match="prompt ids"):
        cluster_bootstrap_mean([0.1, 0.2], ["a"])
