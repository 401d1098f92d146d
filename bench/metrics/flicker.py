"""VBench's temporal-flickering formula as a weight-free metric (VBench `vbench/temporal_flickering.py`).

    temporal_flickering_formula = (255 - mean over consecutive frame pairs of MAE(f_i, f_i+1)) / 255

MAE is the mean absolute difference over H x W x 3 of the uint8 frames taken as floats; the
per-video value lies in [0, 1] (1: no pixel changes), the aggregate is the mean over videos, as in
VBench. It is not VBench's `temporal_flickering` score: VBench's protocol first keeps only videos
that its RAFT-based static filter (`static_filter.py`) judges static, and that filter needs RAFT's
weights; this metric scores every video and records `static_filter: "not applied"` in each score's
details, so a reader never mistakes it for the filtered dimension. Frames come from our PyAV decoder,
VBench reads them with OpenCV; the two may differ by a level or two per pixel (docs/vbench-notes.md, 'Video decoding').
"""

from __future__ import annotations

import numpy as np

from bench.metrics.registry import MetricValue, register_metric

BACKEND = "formula"
STATIC_FILTER_NOT_APPLIED = "not applied (VBench's static filter needs RAFT weights; every video is scored)"


def mean_frame_mae(video: np.ndarray) -> float:
    """Mean over consecutive pairs of the mean absolute difference of uint8 frames (T, H, W, 3)."""
    frames = np.asarray(video, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"temporal flickering needs at least 2 frames (T, H, W, 3), got shape {frames.shape}")
    differences = np.abs(frames[1:] - frames[:-1]).mean(axis=(1, 2, 3))  # (T-1,)
    return float(differences.mean())


@register_metric(
    "temporal_flickering_formula", backend=BACKEND, version=1, inputs=("video",), higher_is_better=True
)
def temporal_flickering_formula(video: np.ndarray) -> MetricValue:
    """VBench's flicker formula on all frames, without the static filter. Range [0, 1], higher is steadier."""
    value = (255.0 - mean_frame_mae(video)) / 255.0
    return MetricValue(value, details={"static_filter": STATIC_FILTER_NOT_APPLIED})
