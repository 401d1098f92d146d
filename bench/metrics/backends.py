"""Scoring backends: who computes a metric's per-video values for one scoring job.

A backend gets the job's videos (file, prompt, fps) and the metrics to compute, and yields per-video
results as they come (`VideoScores`), plus `MetricFailure`s for metrics it cannot compute at all
(e.g. a VBench dimension whose weights are missing: "unavailable: <reason>, fix: <how>").

- `InProcessBackend` ("toyworld", "formula"): decodes each video once and calls every metric's own
  per-video function in this process.
- `bench.metrics.vbench.backend.OfficialVBenchBackend` ("vbench"): hands the whole batch to the
  official package in its isolated environment (one subprocess per job, so its models load once).

Every metric's `MetricSpec.backend` names a key of `SCORING_BACKENDS`; a native fast VBench scorer
slots in later as one more key (its metrics registered with that backend name).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from arlon.data.video_io import read_video
from arlon.registry import Registry
from bench.metrics.registry import METRICS, MetricValue, compute_metric_value
from bench.prompts import BenchPrompt


@dataclass(frozen=True)
class VideoToScore:
    video: str  # the video's name in the run (`<prompt-id>-<k>`)
    path: Path
    prompt: BenchPrompt
    reference_path: Path | None = None  # the AR-decoded reference video, when the run wrote one
    segments: tuple[tuple[int, int], ...] | None = None  # a long video's DiT segments (its record's "segments")


@dataclass
class VideoScores:
    """One video's results: values per metric, and one-line errors for the metrics that failed on it."""

    video: str
    values: dict[str, MetricValue] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricFailure:
    """A metric the backend could not compute for any video of the batch."""

    metric: str
    error: str  # one line, e.g. "unavailable: ViT-L-14.pt missing ..., fix: ..."
    videos: tuple[str, ...]


class ScoringBackend(ABC):
    """Computes metrics for a batch of videos (one scoring job)."""

    def fingerprint(self, metric: str) -> str | None:
        """What identifies the weights `metric` would be computed with (part of the score-cache key);
        None for weight-free metrics."""
        return None

    @abstractmethod
    def score(self, videos: Sequence[VideoToScore], metrics: Sequence[str]) -> Iterator[VideoScores | MetricFailure]:
        """Yield one `VideoScores` per video (as soon as it is done) and `MetricFailure`s."""


SCORING_BACKENDS: Registry[type[ScoringBackend]] = Registry("scoring backend")


def one_line(err: BaseException) -> str:
    message = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {message}"


@SCORING_BACKENDS.register("toyworld")
@SCORING_BACKENDS.register("formula")
class InProcessBackend(ScoringBackend):
    """Per-video metric functions, called here: each video (and its reference) is decoded once."""

    def score(self, videos: Sequence[VideoToScore], metrics: Sequence[str]) -> Iterator[VideoScores]:
        specs = [METRICS.get(name) for name in metrics]
        needs_reference = any("reference_video" in spec.inputs for spec in specs)
        for item in videos:
            result = VideoScores(item.video)
            try:
                frames, fps = read_video(item.path)
                reference = None
                if needs_reference and item.reference_path is not None and item.reference_path.is_file():
                    reference = read_video(item.reference_path)[0]
            except Exception as err:  # an unreadable video fails its own scores only
                result.errors = {spec.name: one_line(err) for spec in specs}
                yield result
                continue
            inputs = {
                "video": frames, "scene": item.prompt.scene, "prompt": item.prompt.text,
                "reference_video": reference, "fps": fps, "auxiliary": item.prompt.auxiliary or None,
                "timeline": item.prompt.toy_timeline(len(frames)), "segments": item.segments,
            }
            for spec in specs:
                try:
                    value = compute_metric_value(spec, inputs)
                    if value.value is not None and not math.isfinite(value.value):
                        raise ValueError(f"{spec.name} returned {value.value}")
                    result.values[spec.name] = value
                except Exception as err:
                    result.errors[spec.name] = one_line(err)
            yield result


def make_backend(name: str) -> ScoringBackend:
    # The VBench backend registers itself on import; imported here so that the registry is full.
    import bench.metrics.vbench  # noqa: F401

    return SCORING_BACKENDS.get(name)()
