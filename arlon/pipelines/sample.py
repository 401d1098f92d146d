"""One call from a prompt to an mp4 file: what `arlon-bench sample` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from arlon.config import ArlonConfig
from arlon.data.video_io import read_video, uint8_to_video_tensor, write_video
from arlon.errors import ConfigError
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


def split_frames(total: int, parts: int) -> list[int]:
    """`total` pixel frames shared by `parts` prompts as evenly as whole frames allow (earlier parts first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def sample_video(
    cfg: ArlonConfig,
    prompts: list[str],
    out: str | Path,
    *,
    seed: int = 0,
    baseline: bool = False,
    num_frames: int | None = None,
    reference_video: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    random_init: bool = False,
    num_steps: int | None = None,
    cfg_scale: float | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: ProgressFn | None = None,
) -> SampleResult:
    """Generate one video and write it as an H.264 mp4.

    One prompt and `num_frames` at most the clip length (`cfg.video.num_frames`, the default): a
    single clip. Several prompts, or more frames: a long video (`LongVideoPipeline`), the frames
    shared evenly by the prompts (a progressive-prompt video, section 4.5). `baseline`: the same
    without the AR model (Open-Sora v1.2's way). `reference_video`: a clip conditioned on the
    semantics of an existing video instead of AR codes (Figure 15).
    """
    device = device or default_device()
    clip_frames = cfg.video.num_frames
    num_frames = num_frames or clip_frames
    is_long = len(prompts) > 1 or num_frames > clip_frames
    if reference_video is not None and (is_long or baseline):
        raise ConfigError("--reference-video conditions one ARLON clip: drop --baseline, extra --prompt options and --frames")
    components = build_components(
        cfg, checkpoint_dir=checkpoint_dir, random_init=random_init, baseline_only=baseline, device=device, dtype=dtype
    )
    if is_long:
        parts = list(zip(prompts, split_frames(num_frames, len(prompts))))
        output = LongVideoPipeline(components, use_injection=not baseline)(
            parts, seed=seed, num_steps=num_steps, cfg_scale=cfg_scale, progress=progress,
        )
    else:
        pipeline = BaselinePipeline(components) if baseline else ArlonPipeline(components)
        reference = None if reference_video is None else read_reference_video(reference_video, cfg)
        output = pipeline(
            prompts, seed=seed, num_frames=num_frames, num_steps=num_steps, cfg_scale=cfg_scale,
            reference_video=reference, progress=progress,
        )
    frames = output.frames[0]  # (T, H, W, 3)
    path = write_video(out, frames, fps=output.fps)
    T, H, W, _ = frames.shape
    codes_shape = tuple(output.codes.shape) if output.codes is not None else None
    return SampleResult(path=path, num_frames=T, height=H, width=W, fps=output.fps, seed=seed, codes_shape=codes_shape)


def read_reference_video(path: str | Path, cfg: ArlonConfig) -> torch.Tensor:
    """The first `video.num_frames` frames of a video file, resized to the preset's size: (1, 3, T, H, W) in [-1, 1]."""
    video = cfg.video
    frames, _ = read_video(path)  # (T, H, W, 3) uint8
    if len(frames) < video.num_frames:
        raise ConfigError(
            f"--reference-video {path} has {len(frames)} frames; the preset's clips have {video.num_frames}: give a longer video"
        )
    tensor = uint8_to_video_tensor(frames[: video.num_frames])  # (3, T, H, W)
    if tensor.shape[2:] != (video.height, video.width):
        # Open-Sora reads references at the target size too (`collect_references_batch`)
        tensor = F.interpolate(tensor.transpose(0, 1), size=(video.height, video.width), mode="bilinear", antialias=True)
        tensor = tensor.transpose(0, 1).clamp(-1, 1)
    return tensor[None]
