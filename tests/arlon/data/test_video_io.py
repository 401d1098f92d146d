from __future__ import annotations

import numpy as np
import pytest

from arlon.data.video_io import read_video, write_video
from arlon.errors import VideoDecodeError


def test_write_then_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.zeros((12, 32, 48, 3), dtype=np.uint8)
    frames[:, 8:24, 8:24] = rng.integers(100, 255, size=3, dtype=np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, fps=8)
    decoded, fps = read_video(path)
    assert decoded.shape == frames.shape
    assert fps == pytest.approx(8)
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 4  # lossy H.264, flat colours
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_odd_sizes_are_padded(tmp_path):
    frames = np.full((3, 15, 17, 3), 128, dtype=np.uint8)
    decoded, _ = read_video(write_video(tmp_path / "odd.mp4", frames))
    assert decoded.shape == (3, 16, 18, 3)


def test_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        read_video(bad)
    with pytest.raises(VideoDecodeError, match="no such"):
        read_video(tmp_path / "missing.mp4")
