"""Video-text pairs from a CSV and a folder of video files, for training on real data.

The CSV layouts of Open-Sora v1.2 (`path,text,...`, its `VariableVideoTextDataset`) and OpenVid-1M
(`video,caption,...`, file names relative to the video folder) both work: the path and caption
columns are detected by name or given explicitly. Each item is a clip of `num_frames` frames taken
every `frame_interval` source frames (or at `target_fps`) from a random start, resized so that it
covers `height` x `width`, centre-cropped, and normalised to [-1, 1] with mean 0.5 and std 0.5,
as Open-Sora's training data is (`opensora/datasets/utils.py`).

Sampling is a pure function of (seed, epoch, index), so every DataLoader worker and every DDP rank
draws the same clip for the same index; call `set_epoch` once per epoch, as with DistributedSampler.
A video shorter than the clip span is padded by repeating its last frame rather than dropped, so
short clips still train at the configured length.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from arlon.data.video_io import probe_video, read_video_frames
from arlon.errors import ConfigError, VideoDecodeError

PATH_COLUMNS = ("path", "video", "file")  # Open-Sora, OpenVid-1M, generic; the first one present wins
CAPTION_COLUMNS = ("text", "caption")  # Open-Sora, OpenVid-1M
MAX_REPLACEMENT_DRAWS = 32  # skip_bad: rows tried in place of a bad one before giving up

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadRow:
    """A CSV row whose video could not be read (recorded when `skip_bad=True`)."""

    row: int  # 0-based data row, as pandas numbers it
    path: str
    reason: str


class _StringTable:
    """Strings packed into one UTF-8 buffer plus offsets.

    A million Python strings would be copied page by page into every forked DataLoader worker as
    their reference counts change; two numpy buffers are shared read-only.
    """

    def __init__(self, strings: list[str]):
        encoded = [s.encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.buffer[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")


def stride_for_fps(source_fps: float, target_fps: float) -> int:
    """Source frames between sampled frames so the clip plays at about `target_fps`: src / target rounded half up, at least 1."""
    return max(1, int(source_fps / target_fps + 0.5))  # half up: round() would send 30 -> 12 fps to a stride of 2


def sample_frame_indices(num_source_frames: int, num_frames: int, stride: int, rng: np.random.Generator | None) -> list[int]:
    """`num_frames` indices `stride` apart from a start drawn uniformly by `rng` (0 when `rng` is None).

    The start is drawn among positions where the whole span (num_frames - 1) * stride + 1 fits. A
    video shorter than the span starts at 0, and its indices past the end repeat its last frame.
    """
    span = (num_frames - 1) * stride + 1
    latest_start = max(0, num_source_frames - span)
    start = int(rng.integers(0, latest_start + 1)) if rng is not None else 0
    return [min(start + k * stride, num_source_frames - 1) for k in range(num_frames)]


def resize_and_center_crop(frames: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize (T, H, W, 3) frames to cover height x width, then crop the centre: (T, height, width, 3).

    The scale is the smallest that covers both target sides (the shorter side, relative to the target
    aspect, lands exactly on its target), with bilinear antialiased interpolation. Returns a tensor of
    the input's dtype (uint8 in, rounded uint8 out); frames already covering the target at scale 1 are
    only cropped, bit-exactly.
    """
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # torch cannot share memory with read-only arrays (decoded or broadcast frames)
    x = torch.as_tensor(frames)
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(x.shape)}")
    source_height, source_width = x.shape[1], x.shape[2]
    scale = max(height / source_height, width / source_width)
    resized_height = max(height, round(source_height * scale))
    resized_width = max(width, round(source_width * scale))
    if (resized_height, resized_width) != (source_height, source_width):
        y = x.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        y = F.interpolate(y, size=(resized_height, resized_width), mode="bilinear", align_corners=False, antialias=True)
        y = y.permute(0, 2, 3, 1)  # (T, H', W', 3)
        x = y.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else y.to(x.dtype)
    top = (resized_height - height) // 2
    left = (resized_width - width) // 2
    return x[:, top : top + height, left : left + width].contiguous()


def collate_videos(batch: list[dict]) -> dict:
    """Stack items of `VideoTextDataset`: video (B, 3, T, H, W), fps (B,), index (B,); captions and paths as lists."""
    return {
        "video": torch.stack([item["video"] for item in batch]),
        "caption": [item["caption"] for item in batch],
        "path": [item["path"] for item in batch],
        "fps": torch.tensor([item["fps"] for item in batch], dtype=torch.float32),
        "index": torch.tensor([item["index"] for item in batch], dtype=torch.long),
    }


def _pick_column(header: list[str], explicit: str | None, candidates: tuple[str, ...], role: str, argument: str, csv_path: Path) -> str:
    if explicit is not None:
        if explicit not in header:
            raise ConfigError(f"{csv_path}: no column {explicit!r} for the {role} ({argument}); the columns are {header}")
        return explicit
    for name in candidates:
        if name in header:
            return name
    raise ConfigError(
        f"{csv_path}: no {role} column; expected one of {list(candidates)} but the columns are {header}; "
        f"pass {argument}= to name it"
    )


def _read_rows(csv_path: Path, path_column: str | None, caption_column: str | None) -> tuple[list[str], list[str]]:
    """(video paths, captions) of every data row, in file order."""
    if not csv_path.is_file():
        raise ConfigError(f"{csv_path}: no such CSV file; pass the path of a CSV with a video path and a caption column")
    # utf-8-sig: spreadsheet exports often start with a byte-order mark that would rename the first column.
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        path_name = _pick_column(header, path_column, PATH_COLUMNS, "video path", "path_column", csv_path)
        caption_name = _pick_column(header, caption_column, CAPTION_COLUMNS, "caption", "caption_column", csv_path)
        path_at, caption_at = header.index(path_name), header.index(caption_name)
        paths, captions = [], []
        for record in reader:
            if not record:
                continue
            if len(record) <= max(path_at, caption_at):
                raise ConfigError(f"{csv_path}:{reader.line_num}: the row has {len(record)} fields but the header has {len(header)}")
            paths.append(record[path_at].strip())
            captions.append(record[caption_at])
    if not paths:
        raise ConfigError(f"{csv_path}: the CSV has a header but no rows")
    return paths, captions


class VideoTextDataset(Dataset):
    """(video, caption) items from a CSV of video paths and captions.

    Relative paths resolve against `root`, or against the CSV's folder when `root` is None; absolute
    paths are used as they are. `frame_interval` and `target_fps` are alternatives: the second picks
    the stride per video as source fps / target fps, rounded half up. Items are dicts: video float
    (3, num_frames, height, width) in [-1, 1], caption str, path str (resolved), fps float (the clip's
    frame rate, source fps / stride, which Open-Sora feeds the fps embedder), index int (the row read).

    With `skip_bad=True` a row whose video is missing or corrupt is logged, appended to `bad_rows`
    and replaced by another row drawn from (seed, epoch, index); `index` then names the row read.
    Each DataLoader worker keeps its own `bad_rows`.
    """

    def __init__(
        self,
        csv_path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        num_frames: int = 16,
        height: int = 256,
        width: int = 256,
        frame_interval: int = 1,
        target_fps: float | None = None,
        path_column: str | None = None,
        caption_column: str | None = None,
        seed: int = 0,
        random_start: bool = True,
        skip_bad: bool = False,
    ):
        for name, value in (("num_frames", num_frames), ("height", height), ("width", width), ("frame_interval", frame_interval)):
            if value < 1:
                raise ConfigError(f"VideoTextDataset: {name} must be at least 1, got {value}")
        if target_fps is not None and target_fps <= 0:
            raise ConfigError(f"VideoTextDataset: target_fps must be positive, got {target_fps}")
        if target_fps is not None and frame_interval != 1:
            raise ConfigError("VideoTextDataset: give frame_interval or target_fps, not both (target_fps picks the interval per video)")
        if seed < 0:
            raise ConfigError(f"VideoTextDataset: seed must be non-negative, got {seed}")
        self.csv_path = Path(csv_path)
        self.root = Path(root) if root is not None else self.csv_path.parent
        self.num_frames, self.height, self.width = num_frames, height, width
        self.frame_interval, self.target_fps = frame_interval, target_fps
        self.seed, self.random_start, self.skip_bad = seed, random_start, skip_bad
        self.epoch = 0
        paths, captions = _read_rows(self.csv_path, path_column, caption_column)
        self._paths, self._captions = _StringTable(paths), _StringTable(captions)
        self.bad_rows: list[BadRow] = []
        self._bad_row_numbers: set[int] = set()

    def __len__(self) -> int:
        return len(self._paths)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose clips (and skip_bad replacements) `__getitem__` draws."""
        if epoch < 0:
            raise ConfigError(f"VideoTextDataset.set_epoch: epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def video_path(self, row: int) -> Path:
        """The resolved path of the video on `row`."""
        return self.root / self._paths[row]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} rows")
        if not self.skip_bad:
            return self._load_row(index)
        replacement_rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        row = index
        for _ in range(MAX_REPLACEMENT_DRAWS):
            if row not in self._bad_row_numbers:
                try:
                    return self._load_row(row)
                except VideoDecodeError as err:
                    self._record_bad_row(row, str(err))
            row = int(replacement_rng.integers(0, len(self)))
        raise VideoDecodeError(
            f"{self.csv_path}: {MAX_REPLACEMENT_DRAWS} rows in a row could not be read (starting at row {index}); "
            f"check the video folder {self.root} (bad rows so far: {len(self.bad_rows)})"
        )

    def _record_bad_row(self, row: int, reason: str) -> None:
        self._bad_row_numbers.add(row)
        self.bad_rows.append(BadRow(row=row, path=str(self.video_path(row)), reason=reason))
        logger.warning("skipping row %d of %s: %s", row, self.csv_path, reason)

    def _stride(self, path: Path, source_fps: float) -> int:
        if self.target_fps is None:
            return self.frame_interval
        if source_fps > 0:
            return stride_for_fps(source_fps, self.target_fps)
        raise VideoDecodeError(f"{path}: the file records no frame rate, so target_fps cannot pick a stride; use frame_interval")

    def available_frames(self, row: int) -> int:
        """Clip frames the video on `row` holds at this dataset's stride (VideoDecodeError when unreadable):
        how long a clip of it can be without repeating its last frame (length buckets, arlon/training/shards.py)."""
        path = self.video_path(row)
        try:
            num_source_frames, source_fps = probe_video(path)
            return (num_source_frames - 1) // self._stride(path, source_fps) + 1
        except VideoDecodeError as err:
            raise VideoDecodeError(f"row {row} of {self.csv_path}: {err}") from None

    def load_clip(self, row: int, num_frames: int | None = None) -> dict:
        """The item of `row` (no skip_bad replacement) with `num_frames` frames instead of the dataset's."""
        return self._load_row(row, num_frames)

    def _load_row(self, row: int, num_frames: int | None = None) -> dict:
        path = self.video_path(row)
        try:
            num_source_frames, source_fps = probe_video(path)
            stride = self._stride(path, source_fps)
            crop_rng = np.random.default_rng([self.seed, self.epoch, row, 0]) if self.random_start else None
            indices = sample_frame_indices(num_source_frames, num_frames or self.num_frames, stride, crop_rng)
            frames, _ = read_video_frames(path, indices)  # (T, H, W, 3) uint8
        except VideoDecodeError as err:
            raise VideoDecodeError(f"row {row} of {self.csv_path}: {err}") from None
        clip = resize_and_center_crop(torch.from_numpy(frames).float(), self.height, self.width)  # (T, h, w, 3) in [0, 255]
        video = (clip / 127.5 - 1).permute(3, 0, 1, 2).contiguous()  # (3, T, h, w), mean 0.5 std 0.5
        return {
            "video": video,
            "caption": self._captions[row],
            "path": str(path),
            "fps": source_fps / stride,
            "index": row,
        }
