"""The "vbench" scoring backend: the official VBench 0.1.5 package, run in its isolated environment.

One scoring job = one subprocess (`worker.py` under the environment's python), so each model loads
once per job. The request lists the videos (with prompt and auxiliary info) and the dimensions that
can run; dimensions whose files are missing never reach the worker: they fail at once with the
doctor's line "unavailable: <reason>, fix: <how>", and the other dimensions go on.

VBench-Long (upstream `vbench2_beta_long/`): a video of 5 s or more is split into clips first, the way VBench-Long
does: clip length = the longest `clip_length_mix` entry among the VBench dimensions its prompt is
listed under (2 s for a prompt outside VBench's lists, as in VBench-Long's custom mode),
`fps = int(average fps)`, clips of fps x length frames back to back, the leftover tail extended
backwards to a full clip, a video shorter than one clip kept whole; clips are re-encoded (H.264).
Each clip is scored as a video and the per-video score is the clip mean (for dynamic degree: the
share of dynamic clips). Subject and background consistency use the in-clip scores only, which is
VBench-Long without `--dev_flag` (the slow-fast fusion with DINOv2 / DreamSim is not run), and the
aggregate over long videos is a plain mean, so their weight is 1 per long video.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from arlon.data.video_io import probe_video, read_video, write_video
from bench.metrics.backends import (
    SCORING_BACKENDS,
    MetricFailure,
    ScoringBackend,
    VideoScores,
    VideoToScore,
)
from bench.metrics.registry import MetricValue
from bench.metrics.vbench.dimensions import DIMENSIONS, vbench_cache_dir
from bench.metrics.vbench.doctor import DimensionStatus, check_dimensions
from arlon.training.cache import hash_json
from bench.metrics.vbench.env import SETUP_HINT, VBENCH_VERSION, WORKER, environment_dir

LONG_VIDEO_SECONDS = 5.0  # VBench for shorter videos, VBench-Long from here on (VBench's `README-FAQ.md`)
DEFAULT_CLIP_SECONDS = 2.0


def clip_ranges(num_frames: int, fps: float, seconds: float) -> list[tuple[int, int]]:
    """[start, end) frame ranges of VBench-Long's fixed-length clips of a video."""
    clip = max(1, int(fps) * int(seconds)) if seconds == int(seconds) else max(1, int(int(fps) * seconds))
    if num_frames <= clip:
        return [(0, num_frames)]
    ranges = [(start, start + clip) for start in range(0, num_frames - clip + 1, clip)]
    if ranges[-1][1] < num_frames:  # the tail, extended backwards to a full clip
        ranges.append((num_frames - clip, num_frames))
    return ranges


def clip_seconds_for(item: VideoToScore) -> float:
    listed = [DIMENSIONS[d].long_clip_seconds for d in item.prompt.dimensions if d in DIMENSIONS]
    return max(listed) if listed else DEFAULT_CLIP_SECONDS


def _dimension_paths(status: DimensionStatus) -> dict[str, str]:
    """The request's paths for one dimension, from the doctor's found files (in DIMENSIONS order)."""
    found = [str(f.found) for f in status.files]
    name = status.dimension
    if name == "subject_consistency":
        # VBench passes `path` on to DINO's hub entry, which ignores it and reads the torch hub cache
        # (docs/vbench-notes.md, 'Known pitfalls'); it is kept for the call's shape only.
        return {"hub_dir": found[0], "weights": str(vbench_cache_dir() / "dino_model" / "dino_vitbase16_pretrain.pth")}
    if name == "background_consistency":
        return {"clip": found[0]}
    if name == "aesthetic_quality":
        return {"clip": found[0], "head": found[1]}
    if name == "temporal_flickering":
        return {}
    return {"model": found[0]}


@SCORING_BACKENDS.register("vbench")
class OfficialVBenchBackend(ScoringBackend):
    """Scores with the official package (see the module docstring)."""

    def __init__(self, env_dir: str | os.PathLike | None = None, device: str = "auto", keep_dir: str | None = None):
        self.env_dir = environment_dir(env_dir)
        self.device = device
        self.keep_dir = keep_dir or os.environ.get("ARLON_VBENCH_WORK_DIR")
        self.last_seconds: dict[str, float] = {}  # per dimension, of the last job's worker (for benchmarks)

    def fingerprint(self, metric: str) -> str | None:
        """VBench's version and each weight file's name and size (sizes, not hashes: hashing gigabytes
        per job would cost more than some dimensions; a replaced file of another size is caught)."""
        files = []
        for status in check_dimensions([metric], self.env_dir):
            files = [(f.what, f.found.name, f.found.stat().st_size) if f.found else (f.what, None, None) for f in status.files]
        return hash_json({"vbench": VBENCH_VERSION, "files": files})

    def score(self, videos: Sequence[VideoToScore], metrics: Sequence[str]) -> Iterator[VideoScores | MetricFailure]:
        names = tuple(v.video for v in videos)
        python = self.env_dir / "bin" / "python"
        if not python.exists():
            for metric in metrics:
                yield MetricFailure(metric, f"unavailable: no VBench environment at {self.env_dir}, fix: {SETUP_HINT}", names)
            return
        runnable = {}
        for status in check_dimensions(list(metrics), self.env_dir):
            reason = status.unavailable_reason()
            if reason is not None:
                yield MetricFailure(status.dimension, reason, names)
            else:
                runnable[status.dimension] = {"paths": _dimension_paths(status)}
        if not runnable:
            return
        if self.keep_dir:
            work = Path(self.keep_dir)
            work.mkdir(parents=True, exist_ok=True)
            yield from self._score_in(work, videos, runnable, python)
        else:
            with tempfile.TemporaryDirectory(prefix="arlon-vbench-") as tmp:
                yield from self._score_in(Path(tmp), videos, runnable, python)

    def _score_in(self, work: Path, videos: Sequence[VideoToScore], runnable: dict, python: Path) -> Iterator:
        requested, clips_of, errors = [], {}, {}
        for item in videos:
            try:
                parts = self._prepare(item, work)
            except Exception as err:  # unreadable file: its own error, the batch goes on
                errors[item.video] = f"cannot read the video: {type(err).__name__}: {' '.join(str(err).split())}"
                continue
            clips_of[item.video] = [part["id"] for part in parts]
            requested.extend(parts)
        request = {
            "device": self.device, "output_dir": str(work / "vbench"), "vbench_cache": str(vbench_cache_dir()),
            "videos": requested, "dimensions": runnable,
        }
        response = self._run_worker(request, work, python) if requested else {}
        self.last_seconds = dict(response.get("seconds", {})) if response else {}
        failed_dimensions = response.get("errors", {}) if response else {}
        worker_failure = response.get("worker_failure") if response else None
        for dimension in runnable:
            if worker_failure or dimension in failed_dimensions:
                message = worker_failure or failed_dimensions[dimension]
                yield MetricFailure(dimension, f"VBench failed: {message}", tuple(clips_of))
        results = response.get("results", {}) if response else {}
        video_errors = response.get("video_errors", {}) if response else {}
        per_dimension_errors = response.get("dimension_video_errors", {}) if response else {}
        for item in videos:
            scores = VideoScores(item.video)
            if item.video in errors:
                scores.errors = {d: errors[item.video] for d in runnable}
                yield scores
                continue
            clip_ids = clips_of[item.video]
            for dimension in runnable:
                if worker_failure or dimension in failed_dimensions:
                    continue
                broken = [video_errors.get(c) or per_dimension_errors.get(dimension, {}).get(c) for c in clip_ids]
                broken = [b for b in broken if b]
                got = [results.get(dimension, {}).get(c) for c in clip_ids]
                if broken:
                    scores.errors[dimension] = broken[0]
                elif dimension in ("scene", "object_class") and not (item.prompt.auxiliary or {}).get(dimension):
                    scores.errors[dimension] = (
                        f"{dimension} needs the prompt's VBench auxiliary info (use a VBench prompt list)"
                    )
                elif any(g is None for g in got):
                    scores.errors[dimension] = "VBench returned no result for this video"
                else:
                    scores.values[dimension] = combine_clip_results(dimension, got, len(clip_ids) > 1 or clip_ids[0] != item.video)
            yield scores

    def _prepare(self, item: VideoToScore, work: Path) -> list[dict]:
        """The worker's entries for one video: the file itself, or its VBench-Long clips."""
        base = {"prompt": item.prompt.text, "auxiliary": item.prompt.auxiliary or {}}
        clip_paths = long_video_clips(item, work / "clips")
        if clip_paths is None:
            return [{**base, "id": item.video, "path": str(Path(item.path).resolve())}]
        return [{**base, "id": f"{item.video}#clip{n:03d}", "path": str(path)} for n, path in enumerate(clip_paths)]

    def _run_worker(self, request: dict, work: Path, python: Path) -> dict:
        request_path, response_path, log_path = work / "request.json", work / "response.json", work / "worker.log"
        request_path.write_text(json.dumps(request, indent=2))
        env = dict(os.environ, VBENCH_CACHE_DIR=str(vbench_cache_dir()))
        with open(log_path, "w") as log:
            completed = subprocess.run(
                [str(python), str(WORKER), str(request_path), str(response_path)], stdout=log, stderr=subprocess.STDOUT,
                env=env,
            )
        if completed.returncode != 0 or not response_path.is_file():
            tail = " ".join(log_path.read_text(errors="replace").split()[-30:])
            return {"worker_failure": f"the worker exited with {completed.returncode} ({tail}); log: {log_path}"}
        return json.loads(response_path.read_text())


def long_video_clips(item: VideoToScore, folder: Path) -> list[Path] | None:
    """None for a video shorter than 5 s; else its VBench-Long clips, written (re-encoded, as VBench-Long's
    `split_video_into_clips` does) to folder/<video>/<video>_<NNN>.mp4."""
    num_frames, fps = probe_video(item.path)
    if not fps or num_frames / fps < LONG_VIDEO_SECONDS:
        return None
    frames, fps = read_video(item.path)
    paths = []
    for n, (start, end) in enumerate(clip_ranges(len(frames), fps, clip_seconds_for(item))):
        clip_path = folder / item.video / f"{item.video}_{n:03d}.mp4"
        write_video(clip_path, np.ascontiguousarray(frames[start:end]), fps=max(1, int(fps)))
        paths.append(clip_path)
    return paths


def combine_clip_results(dimension: str, clips: list[dict], is_long: bool) -> MetricValue:
    """One video's value from its clips' results (a short video has one 'clip': itself)."""
    if not is_long:
        only = clips[0]
        return MetricValue(only["value"], only.get("weight"), only.get("details"))
    values = [c["value"] for c in clips]
    value = float(np.mean(values))
    assert math.isfinite(value)
    weight = 1.0 if DIMENSIONS[dimension].aggregation in ("pair_weighted_mean", "frame_weighted_mean") else None
    return MetricValue(value, weight, {"vbench_long": {"clips": len(clips), "clip_values": values}})
