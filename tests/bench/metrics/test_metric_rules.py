"""The registry's VBench aggregation rules, MetricValue plumbing and the weight-free flicker formula."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import BenchError
from bench.metrics import METRICS, aggregate
from bench.metrics.flicker import STATIC_FILTER_NOT_APPLIED, temporal_flickering_formula
from bench.metrics.registry import AGGREGATIONS, MetricValue, compute_metric, compute_metric_value
from bench.metrics.vbench import DIMENSIONS

NINE = ("temporal_flickering", "motion_smoothness", "dynamic_degree", "subject_consistency", "imaging_quality",
        "background_consistency", "aesthetic_quality", "temporal_style", "overall_consistency")


def test_every_vbench_dimension_is_a_metric_with_vbench_rules():
    rules = {name: METRICS.get(name).aggregation for name in DIMENSIONS}
    assert set(NINE) | {"scene", "object_class"} == set(rules)
    assert rules["subject_consistency"] == rules["background_consistency"] == "pair_weighted_mean"
    assert rules["scene"] == rules["object_class"] == "frame_weighted_mean"
    assert rules["imaging_quality"] == "mean_over_100" and rules["dynamic_degree"] == "fraction_true"
    assert METRICS.get("temporal_style").inputs == ("video", "prompt")
    assert METRICS.get("scene").inputs == ("video", "auxiliary") and METRICS.get("dynamic_degree").inputs == ("video", "fps")
    assert all(METRICS.get(name).backend == "vbench" and METRICS.get(name).fn is None for name in DIMENSIONS)
    # the toy-world metrics are untouched
    assert METRICS.get("toy_layout_iou").aggregation == "mean" and METRICS.get("toy_layout_iou").backend == "toyworld"


def test_pair_weighted_mean_is_total_pairs_weighted_not_the_mean_of_videos():
    spec = METRICS.get("subject_consistency")
    # video A: 3 pairs of 1.0; video B: 1 pair of 0.0 -> VBench: 3/4, the plain mean would say 1/2
    assert aggregate([1.0, 0.0], spec, [3, 1]) == pytest.approx(0.75)
    assert aggregate([1.0, None, 0.0], spec, [3, None, 1]) == pytest.approx(0.75)  # None: does not apply
    with pytest.raises(BenchError, match="weights of its score records"):
        aggregate([1.0, 0.0], spec)
    with pytest.raises(BenchError, match="positive weight"):
        aggregate([1.0, 0.0], spec, [3, 0])


def test_frame_weighted_mean_is_successful_frames_over_frames():
    spec = METRICS.get("scene")
    # 16 frames with 4 successes (0.25) and 8 frames with 8 successes (1.0): 12 / 24
    assert aggregate([0.25, 1.0], spec, [16, 8]) == pytest.approx(0.5)


def test_imaging_quality_divides_only_the_aggregate_by_100():
    spec = METRICS.get("imaging_quality")
    assert aggregate([56.5, 63.5], spec) == pytest.approx(0.6)


def test_dynamic_degree_is_the_fraction_of_dynamic_videos():
    spec = METRICS.get("dynamic_degree")
    assert aggregate([1.0, 0.0, 1.0, 1.0], spec) == pytest.approx(0.75)
    assert aggregate([0.5, 1.0], spec) == pytest.approx(0.75)  # VBench-Long: share of dynamic clips per video
    with pytest.raises(BenchError, match=r"in \[0, 1\]"):
        aggregate([2.0], spec)


def test_mean_and_median_ignore_weights():
    assert AGGREGATIONS.get("mean")([1.0, 2.0], [1.0, 100.0]) == pytest.approx(1.5)
    assert AGGREGATIONS.get("median")([1.0, 2.0, 10.0], None) == pytest.approx(2.0)


def test_batch_backend_metrics_have_no_per_video_function():
    with pytest.raises(BenchError, match="backend 'vbench'"):
        compute_metric(METRICS.get("aesthetic_quality"), {"video": np.zeros((2, 4, 4, 3), np.uint8)})


def test_flicker_formula_matches_vbench_formula_and_records_the_static_filter():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    expected = (255.0 - np.mean([np.abs(video[i + 1].astype(float) - video[i]).mean() for i in range(4)])) / 255.0
    result = temporal_flickering_formula(video)
    assert isinstance(result, MetricValue) and result.value == pytest.approx(expected, abs=1e-6)
    assert result.details == {"static_filter": STATIC_FILTER_NOT_APPLIED} and "not applied" in STATIC_FILTER_NOT_APPLIED
    static = np.repeat(video[:1], 4, axis=0)
    assert temporal_flickering_formula(static).value == 1.0
    spec = METRICS.get("temporal_flickering_formula")
    assert spec.backend == "formula" and spec.aggregation == "mean" and spec.higher_is_better
    assert compute_metric_value(spec, {"video": video}).details["static_filter"] == STATIC_FILTER_NOT_APPLIED
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_flickering_formula(video[:1])
