"""Reading and writing videos with PyAV.

Frames are uint8 arrays of shape (T, H, W, 3) in RGB order. Writes go to a temporary file in the
target directory and are renamed into place, so an interrupted write never leaves a half video
under the final name.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from arlon.errors import VideoDecodeError


def video_tensor_to_uint8(video: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) or (3, T, H, W) in [-1, 1] -> uint8 (B, T, H, W, 3) or (T, H, W, 3)."""
    x = video.detach().float().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    if x.dim() == 5:
        return x.permute(0, 2, 3, 4, 1).cpu().numpy()  # (B, T, H, W, 3)
    return x.permute(1, 2, 3, 0).cpu().numpy()  # (T, H, W, 3)


def uint8_to_video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (3, T, H, W) in [-1, 1] (Open-Sora's mean 0.5, std 0.5 normalisation)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1
    return x.permute(3, 0, 1, 2)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 24, crf: int = 18) -> Path:
    """Write uint8 frames (T, H, W, 3) as an H.264 mp4 (yuv420p), atomically."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # yuv420p needs even sizes: pad by repeating the last row/column rather than resizing.
    T, H, W, _ = frames.shape
    if H % 2 or W % 2:
        frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of a video file: (uint8 frames (T, H, W, 3), fps)."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as err:
        raise VideoDecodeError(f"{path}: cannot decode video ({err}); re-encode it, e.g. with ffmpeg -i IN -c:v libx264 OUT.mp4") from None
    if not frames:
        raise VideoDecodeError(f"{path}: the file has no decodable video frames")
    return np.stack(frames), fps
