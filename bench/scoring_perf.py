"""Scoring speed, side by side: the same videos and the same VBench weight files through the official backend
(VBench 0.1.5 in its environment) and the native one, in one call; `arlon-bench perf --scoring`.

    from bench.scoring_perf import benchmark_scoring, synthetic_videos
    report = benchmark_scoring(synthetic_videos("/tmp/videos"), ["subject_consistency", "temporal_flickering"])
    print(report.to_markdown())

Seconds per dimension are each backend's own: the official worker times each dimension's VBench call (its model
loading and its own decoding included); the native backend times each dimension's network loading and scoring,
and its one decode of every video is a row of its own. The totals are wall seconds of the whole job (the official
one includes starting its environment's interpreter and importing VBench). The largest per-video difference
between the two backends is reported beside each dimension, so a speed figure never hides a parity loss.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from arlon.data.video_io import write_video
from bench.errors import BenchError
from bench.metrics.backends import MetricFailure, ScoringBackend, VideoToScore
from bench.metrics.vbench.backend import OfficialVBenchBackend
from bench.metrics.vbench.native import NATIVE_SCORERS, NativeVBenchBackend
from bench.prompts import BenchPrompt
from bench.store import git_commit


@dataclass
class BackendRun:
    total_s: float
    seconds: dict[str, float]  # per dimension (and "decode" for the native backend)
    values: dict[tuple[str, str], float]  # (video, dimension) -> per-video value
    failures: list[str]


@dataclass
class ScoringPerfReport:
    videos: str  # in words: how many, frames, size
    device: str
    threads: int
    dimensions: list[str]
    official: BackendRun
    native: BackendRun
    commit: str | None = None
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def rows(self) -> list[dict]:
        """Per dimension: official s, native s, speed-up, largest per-video |native - official|."""
        rows = []
        for dimension in self.dimensions:
            theirs, ours = self.official.seconds.get(dimension), self.native.seconds.get(dimension)
            diffs = [abs(v - self.official.values[k]) for k, v in self.native.values.items()
                     if k[1] == dimension and k in self.official.values]
            # Under 0.05 s a ratio means nothing (temporal flickering; overall consistency, whose ViCLIP
            # embeddings temporal style already computed): "-".
            timed = theirs is not None and ours is not None and ours >= 0.05
            rows.append({"dimension": dimension, "official_s": theirs, "native_s": ours,
                         "speedup": theirs / ours if timed else None, "max_abs_diff": max(diffs) if diffs else None})
        rows.append({"dimension": "decode (native, once per video)", "official_s": None,
                     "native_s": self.native.seconds.get("decode"), "speedup": None, "max_abs_diff": None})
        rows.append({"dimension": "all (wall, whole job)", "official_s": self.official.total_s, "native_s": self.native.total_s,
                     "speedup": self.official.total_s / self.native.total_s if self.native.total_s else None,
                     "max_abs_diff": None})
        return rows

    def to_markdown(self) -> str:
        lines = [
            f"# Scoring speed: official VBench 0.1.5 vs native, {self.videos}",
            "",
            f"Device: {self.device}, {self.threads} CPU thread(s); commit {self.commit or 'unknown'}; {self.date}.",
            "Made by `arlon-bench perf --scoring` (bench/scoring_perf.py): the same videos and weight files through both",
            "backends in one call; seconds include each dimension's model loading.",
            "",
            "| dimension | official s | native s | speed-up | max per-video abs. difference |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in self.rows():
            lines.append(
                f"| {row['dimension']} | {_fmt(row['official_s'], '{:.1f}')} | {_fmt(row['native_s'], '{:.1f}')} | "
                f"{_fmt(row['speedup'], '{:.2f}x')} | {_fmt(row['max_abs_diff'], '{:.1e}')} |"
            )
        for name, run in (("official", self.official), ("native", self.native)):
            lines.extend(f"\n{name} failed: {failure}" for failure in run.failures)
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        data = asdict(self)
        for run in ("official", "native"):
            data[run]["values"] = {f"{video} {dimension}": v for (video, dimension), v in getattr(self, run).values.items()}
        data["rows"] = self.rows()
        return data


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def synthetic_videos(folder: str | Path, count: int = 3, frames: int = 16, size: int = 128, fps: int = 8) -> list[VideoToScore]:
    """`count` mp4s of drifting coloured stripes with noise (each dimension has something to measure)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    yy, xx = np.mgrid[0:size, 0:size]
    for n in range(count):
        rng = np.random.default_rng(n)
        colour = rng.uniform(-1, 1, 3)
        video = np.stack([
            120 + 80 * np.sin((xx + (3 + n) * t) / 7.0)[..., None] * colour + 40 * np.cos((yy - 2 * t) / 5.0)[..., None]
            + rng.normal(0, 6, (size, size, 3))
            for t in range(frames)
        ])
        path = write_video(folder / f"video-{n}.mp4", np.clip(video, 0, 255).astype(np.uint8), fps=fps)
        items.append(VideoToScore(f"video-{n}", path, BenchPrompt(f"video-{n}", f"coloured stripes drifting, take {n}")))
    return items


def folder_videos(folder: str | Path) -> list[VideoToScore]:
    """Every .mp4 of a folder, its prompt from the file name as VBench's custom mode reads it (the stem without
    a trailing -<digits>)."""
    paths = sorted(Path(folder).glob("*.mp4"))
    if not paths:
        raise BenchError(f"{folder}: no .mp4 files to score (give a folder of videos, or leave --videos out for synthetic ones)")
    return [VideoToScore(path.stem, path, BenchPrompt(path.stem, re.sub(r"-\d+$", "", path.stem))) for path in paths]


def _run(backend: ScoringBackend, videos: Sequence[VideoToScore], dimensions: Sequence[str], task: str,
         progress: Callable[[str, int, int], None] | None) -> BackendRun:
    started = time.perf_counter()
    values, failures, done = {}, [], 0
    if progress:
        progress(task, 0, len(videos))  # the official backend answers for the whole batch at once
    for result in backend.score(videos, dimensions):
        if isinstance(result, MetricFailure):
            failures.append(f"{result.metric}: {result.error}")
            continue
        values.update({(result.video, d): v.value for d, v in result.values.items()})
        failures.extend(f"{result.video} {d}: {e}" for d, e in result.errors.items())
        done += 1
        if progress:
            progress(task, done, len(videos))
    return BackendRun(time.perf_counter() - started, dict(backend.last_seconds), values, failures)


def benchmark_scoring(
    videos: Sequence[VideoToScore],
    dimensions: Sequence[str] | None = None,
    env_dir: str | Path | None = None,
    device: str | None = None,
    description: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ScoringPerfReport:
    """Score `videos` with both backends (official first), every dimension the native backend has by default;
    `progress(task, videos done, videos)` per backend."""
    dimensions = list(dimensions or NATIVE_SCORERS.keys())
    missing = [d for d in dimensions if d not in NATIVE_SCORERS.keys()]
    if missing:
        raise BenchError(f"{', '.join(missing)}: no native scorer to compare with (choices: {', '.join(NATIVE_SCORERS.keys())})")
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    official = _run(OfficialVBenchBackend(env_dir, device=chosen.type), videos, dimensions, "official VBench", progress)
    native = _run(NativeVBenchBackend(str(chosen)), videos, dimensions, "native", progress)
    name = torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else "CPU"
    return ScoringPerfReport(
        description or f"{len(videos)} videos", name, torch.get_num_threads(), dimensions, official, native,
        git_commit(Path(__file__).resolve().parent),
    )
