"""Reading and writing videos with PyAV.

Frames are uint8 arrays of shape (T, H, W, 3) in RGB order. Writes go through `atomic_path`
(arlon/checkpoints/io.py): a temporary file in the target directory, renamed into place, so an
interrupted or failed write never leaves a half video under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import torch

from arlon.checkpoints.io import atomic_path
from arlon.errors import ArlonError, VideoDecodeError

if TYPE_CHECKING:
    import av


def _av():
    """PyAV, imported where a video file is read or written: everything else (models, training on
    latents, `arlon-bench gpu-check`) runs where it is not installed."""
    try:
        import av
    except ImportError:
        raise ArlonError("reading and writing video files needs PyAV: pip install av") from None
    return av


@contextmanager
def _open_video_stream(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """(container, first video stream) of `path`; FFmpeg failures inside the block become VideoDecodeError."""
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such video file")
    av = _av()
    try:
        with av.open(str(path)) as container:
            yield container, container.streams.video[0]
    except (av.error.FFmpegError, IndexError) as err:
        raise VideoDecodeError(f"{path}: cannot decode video ({err}); re-encode it, e.g. with ffmpeg -i IN -c:v libx264 OUT.mp4") from None


def _frame_rate(stream: av.video.stream.VideoStream) -> float:
    """The stream's average frame rate, else FFmpeg's guess, else 0.0 when the file records none."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


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


def _convert(frame: av.VideoFrame, pixel_format: str) -> av.VideoFrame:
    """`frame` in another pixel format, converted on one thread. PyAV 17+ converts on several threads
    by default, and the result varied from process to process: decoding the same mp4 could give other
    pixels, and re-encoding 40 toy videos gave other mp4 bytes for 3 to 40 of them. Converted on one
    thread (and encoded as `write_video` does), 16 processes re-encoding 40 videos agreed to the byte."""
    try:
        return frame.reformat(format=pixel_format, threads=1)
    except TypeError:  # PyAV < 17: no `threads`, and its conversion is single-threaded anyway
        return frame.reformat(format=pixel_format)


def _rgb24(frame: av.VideoFrame) -> np.ndarray:
    return _convert(frame, "rgb24").to_ndarray()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 24, crf: int = 18) -> Path:
    """Write uint8 frames (T, H, W, 3) as an H.264 mp4 (yuv420p), atomically."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    path = Path(path)
    # yuv420p needs even sizes: pad by repeating the last row/column rather than resizing.
    T, H, W, _ = frames.shape
    if H % 2 or W % 2:
        frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    av = _av()
    with atomic_path(path, ".mp4") as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # x264's output depends on its thread count, and without cpu-independent its CPU-specific
        # code paths still made about 1 in 300 re-encodes differ between processes (0 in 640 with it).
        stream.options = {"crf": str(crf), "x264-params": "cpu-independent=1"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            yuv = _convert(av.VideoFrame.from_ndarray(frame, format="rgb24"), "yuv420p")
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of a video file: (uint8 frames (T, H, W, 3), fps)."""
    path = Path(path)
    with _open_video_stream(path) as (container, stream):
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        frames = [_rgb24(frame) for frame in container.decode(stream)]
    if not frames:
        raise VideoDecodeError(f"{path}: the file has no decodable video frames")
    return np.stack(frames), fps


def probe_video(path: str | os.PathLike) -> tuple[int, float]:
    """Frame count and fps of a video from its container header, decoding frames only as a last resort.

    The count comes from the stream's frame total, else from its duration times its frame rate; a
    container with neither is decoded once to count. Header counts can be off by a frame or two,
    which `read_video_frames` tolerates. fps is 0.0 when the file records no frame rate.
    """
    path = Path(path)
    with _open_video_stream(path) as (container, stream):
        fps = _frame_rate(stream)
        num_frames = stream.frames
        if not num_frames and stream.duration and stream.time_base and fps:
            num_frames = round(float(stream.duration * stream.time_base) * fps)
        if not num_frames:
            num_frames = sum(1 for _ in container.decode(stream))
    if num_frames <= 0:
        raise VideoDecodeError(f"{path}: the file has no decodable video frames")
    return int(num_frames), fps


def read_video_frames(path: str | os.PathLike, indices: list[int]) -> tuple[np.ndarray, float]:
    """Decode only the frames at `indices` (any order, repeats allowed): (uint8 (len(indices), H, W, 3), fps).

    Frames are decoded in order from the start and decoding stops after the largest index, so a
    clip near the start of a long file is cheap; seeking is avoided because keyframe-based seeks
    land on different frames in different containers. An index past the last frame gets the last
    frame, so a header frame count that is slightly too large cannot fail a read.
    """
    if not indices or min(indices) < 0:
        raise ValueError(f"expected a non-empty list of non-negative frame indices, got {indices}")
    path = Path(path)
    wanted = set(indices)
    last_wanted = max(indices)
    decoded: dict[int, np.ndarray] = {}
    last_index, last_frame = -1, None
    with _open_video_stream(path) as (container, stream):
        fps = _frame_rate(stream)
        for last_index, last_frame in enumerate(container.decode(stream)):
            if last_index in wanted:
                decoded[last_index] = _rgb24(last_frame)
            if last_index >= last_wanted:
                break
        if last_frame is not None and last_index not in decoded:
            # The file ended before `last_wanted`: its last frame stands in for the missing ones.
            decoded[last_index] = _rgb24(last_frame)
    if last_frame is None:
        raise VideoDecodeError(f"{path}: the file has no decodable video frames")
    return np.stack([decoded[min(i, last_index)] for i in indices]), fps
