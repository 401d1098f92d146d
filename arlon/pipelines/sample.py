"""One call from a prompt to an mp4 file: what `arlon-bench sample` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from arlon.config import ArlonConfig
from arlon.data.video_io import write_video
from arlon.pipelines.arlon import ArlonPipeline, BaselinePipeline, ProgressFn
from arlon.pipelines.components import build_components
from arlon.pipelines.long_video import LongVideoPipeline


@dataclass
class SampleResult:
    path: Path
    num_frames: int
    height: int
    width: int
    fps: int
    seed: int
    codes_shape: tuple[int, ...] | None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sample_video(
    cfg: ArlonConfig,
    prompts: list[str],
    out: str | Path,
    *,
    seed: int = 0,
    baseline: bool = False,
    frames_per_prompt: int | None = None,
    checkpoint_dir: str | Path | None = None,
    random_init: bool = False,
    num_steps: int | None = None,
    cfg_scale: float | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: ProgressFn | None = None,
) -> SampleResult:
    """Generate one video and write it as an H.264 mp4.

    One prompt and no `frames_per_prompt`: a single clip of `cfg.video.num_frames` frames. Several
    prompts, or `frames_per_prompt` set: a long video (progressive prompts when there are several).
    """
    device = device or default_device()
    components = build_components(
        cfg, checkpoint_dir=checkpoint_dir, random_init=random_init, baseline_only=baseline, device=device, dtype=dtype
    )
    if len(prompts) > 1 or frames_per_prompt is not None:
        output = LongVideoPipeline(components)(
            prompts, frames_per_prompt or cfg.video.num_frames, seed=seed,
            num_steps=num_steps, cfg_scale=cfg_scale, progress=progress,
        )
    else:
        pipeline = BaselinePipeline(components) if baseline else ArlonPipeline(components)
        output = pipeline(prompts, seed=seed, num_steps=num_steps, cfg_scale=cfg_scale, progress=progress)
    frames = output.frames[0]  # (T, H, W, 3)
    path = write_video(out, frames, fps=output.fps)
    T, H, W, _ = frames.shape
    codes_shape = tuple(output.codes.shape) if output.codes is not None else None
    return SampleResult(path=path, num_frames=T, height=H, width=W, fps=output.fps, seed=seed, codes_shape=codes_shape)
