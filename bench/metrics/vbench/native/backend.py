"""The "native" scoring backend: VBench's dimensions computed in this process, on the same weight files.

Where the official backend hands a batch to VBench 0.1.5 in its own environment (which decodes every video
again per dimension, runs most networks one frame at a time and loads each model per dimension), this one
decodes each video once for all dimensions, loads each network once per scoring job, batches frames through
it under `torch.inference_mode`, and shares what two dimensions compute alike. The algorithm per dimension is
VBench's (`scorers.py`); per-video values agree with the official package within 1e-4 in fp32 on CPU
(tests/bench/metrics/test_vbench_native_parity.py), which is what lets them carry VBench's dimension names.
Each score record says which backend made it, and `arlon-bench compare` does not mix the two.

Videos of 5 s or more are split into VBench-Long clips exactly as the official backend does (re-encoded,
`bench.metrics.vbench.backend.long_video_clips`), each clip scored as a video, the clip values combined alike.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from arlon.data.video_io import read_video
from arlon.training.cache import hash_json
from bench.metrics.backends import SCORING_BACKENDS, MetricFailure, ScoringBackend, VideoScores, VideoToScore, one_line
from bench.metrics.vbench.backend import combine_clip_results, long_video_clips
from bench.metrics.vbench.doctor import DimensionStatus, file_status
from bench.metrics.vbench.native.scorers import NATIVE_SCORERS, DecodedVideo, DimensionScorer, Runtime

VERSION = 1  # of the native algorithms; bump when one changes what it computes
BACKEND = "native"


def native_status(dimension: str) -> DimensionStatus:
    """The doctor's status of the files the native scorer of `dimension` reads."""
    return DimensionStatus(dimension, tuple(file_status(w) for w in NATIVE_SCORERS.get(dimension).files))


def official_only_message(dimension: str) -> str:
    return (f"unavailable: {dimension} is computed by the official VBench package only (no native scorer), "
            f"fix: score it with --backend vbench")


def default_runtime(device: str | None = None) -> Runtime:
    """fp32, the precision parity is measured in; ARLON_NATIVE_VBENCH_PRECISION=fp16 or bf16 autocasts the networks
    on a GPU for speed (the official package itself runs CLIP in fp16 there), at the cost of the parity bound."""
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = os.environ.get("ARLON_NATIVE_VBENCH_PRECISION", "fp32")
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"ARLON_NATIVE_VBENCH_PRECISION={precision!r}: choose one of {', '.join(dtypes)}")
    # Measured on 2 CPU cores: a ViT-L/14 runs 10% faster per frame in batches of 8 than of 32 (cache-bound).
    return Runtime(chosen, dtypes[precision], batch_frames=8 if chosen.type == "cpu" else 32)


@SCORING_BACKENDS.register(BACKEND)
class NativeVBenchBackend(ScoringBackend):
    """VBench's dimensions in this process (see the module docstring)."""

    def __init__(self, device: str | None = None, runtime: Runtime | None = None):
        self.runtime = runtime or default_runtime(device)
        # Wall seconds of the last job per dimension (loading its networks included) and "decode" (for benchmarks).
        self.last_seconds: dict[str, float] = {}

    def fingerprint(self, metric: str) -> str | None:
        """This backend's version, its precision, and each weight file's name and size (as the official
        backend's fingerprint, so replacing a file rescores)."""
        if metric not in NATIVE_SCORERS.keys():
            return None
        files = [(f.what, f.found.name, f.found.stat().st_size) if f.found else (f.what, None, None)
                 for f in native_status(metric).files]
        return hash_json({"native": VERSION, "autocast": str(self.runtime.autocast), "files": files})

    def score(self, videos: Sequence[VideoToScore], metrics: Sequence[str]) -> Iterator[VideoScores | MetricFailure]:
        names = tuple(v.video for v in videos)
        scorers: dict[str, DimensionScorer] = {}
        shared: dict = {}  # networks (and their outputs) two dimensions have in common
        self.last_seconds = {}
        for metric in metrics:
            if metric not in NATIVE_SCORERS.keys():
                yield MetricFailure(metric, official_only_message(metric), names)
                continue
            status = native_status(metric)
            reason = status.unavailable_reason()
            if reason is not None:
                yield MetricFailure(metric, reason, names)
                continue
            started = time.perf_counter()
            try:
                scorers[metric] = NATIVE_SCORERS.get(metric)(tuple(f.found for f in status.files), self.runtime, shared)
                self.last_seconds[metric] = time.perf_counter() - started
            except Exception as err:  # a file that is there but is not the expected checkpoint
                yield MetricFailure(metric, f"cannot load its weights: {one_line(err)}", names)
        if not scorers:
            return
        with tempfile.TemporaryDirectory(prefix="arlon-native-vbench-") as work:
            for item in videos:
                yield self._score_video(item, scorers, Path(work))

    def _score_video(self, item: VideoToScore, scorers: dict[str, DimensionScorer], work: Path) -> VideoScores:
        scores = VideoScores(item.video)
        started = time.perf_counter()
        try:
            decoded, is_long = decoded_clips(item, work)
        except Exception as err:  # unreadable file: its own error, the batch goes on
            scores.errors = {d: f"cannot read the video: {one_line(err)}" for d in scorers}
            return scores
        finally:
            self._add_seconds("decode", started)
        clips = [DecodedVideo(frames, fps, item.prompt.text) for frames, fps in decoded]
        for dimension, scorer in scorers.items():
            started = time.perf_counter()
            try:
                results = [scorer.score(clip) for clip in clips]
                scores.values[dimension] = combine_clip_results(dimension, results, is_long)
            except Exception as err:
                scores.errors[dimension] = one_line(err)
            self._add_seconds(dimension, started)
        return scores

    def _add_seconds(self, key: str, started: float) -> None:
        self.last_seconds[key] = self.last_seconds.get(key, 0.0) + time.perf_counter() - started


def decoded_clips(item: VideoToScore, work: Path) -> tuple[list[tuple], bool]:
    """([(uint8 frames, fps)], whether it was split): the video itself, or its VBench-Long clips, decoded from
    their re-encoded files as the official backend hands them to VBench."""
    clip_paths = long_video_clips(item, work / "clips")
    if clip_paths is None:
        return [read_video(item.path)], False
    return [read_video(path) for path in clip_paths], True
