"""Training data: clip sources, a DistributedSampler-style epoch sampler, and cached latent pools.

Every stage trains on `Batch`es from a `TrainingData`: a `ClipSource` (map-style: `len()` and
`clip(i) -> (tensor, caption)`) read in the order of an `EpochSampler`. The order is a pure function
of (seed, epoch), and `batches(start_step)` starts at any step, so a resumed run sees exactly the
batches an uninterrupted run would, without saving any data-loader state.

Sources:
- `ToyWorldClips`: the procedural toy world (`arlon/data/toyworld.py`), the tiny preset's data;
- `VideoFolderClips`: real videos listed in a CSV (`arlon/data/video_folder.py`, `--data CSV`);
- `ClipPool`: clips held in memory; `encode_pool` fills one with the video VAE's latents of a fixed
  set of clips (the posterior means, normalised), with their captions. Every stage after the VAE
  trains on such a pool (cached on disk by `arlon/training/cache.py`), so the latent VQ-VAEs, the AR
  model, the backbone and the injector never touch pixels. (Open-Sora samples the posterior at every
  step; a fixed pool trades that small augmentation for encoding each clip once.)

The training/held-out split: the toy world has its own held-out split (unseen attribute triples);
for a CSV the last `num_heldout_clips` rows are held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor

from arlon.checkpoints.io import file_sha256
from arlon.config import AT_LEAST_ONE, NON_NEGATIVE, Range, VideoConfig, check_range
from arlon.data.toyworld import WORLD_VERSION, ToyWorld, render
from arlon.data.video_folder import VideoTextDataset
from arlon.data.video_io import uint8_to_video_tensor
from arlon.errors import ConfigError
from arlon.global_batch import BatchRows

# (done, total) while encoding a pool.
PoolProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class DataConfig:
    """Which clips the stages train on."""

    source: str = "toyworld"  # "toyworld", or the path of a CSV of video paths and captions
    seed: int = 0  # the toy world's seed: which scenes exist
    num_train_clips: int = 2048  # size of the fixed training pool (a CSV uses at most this many rows)
    num_heldout_clips: int = 64  # held-out clips for the stage metrics (VAE PSNR, ...)

    def __post_init__(self):
        self.validate()  # at construction: --set data.<field> reaches the training CLI before any worker

    def validate(self) -> "DataConfig":
        for name, allowed in DATA_RANGES.items():
            check_range(f"data.{name}", getattr(self, name), allowed)
        return self


DATA_RANGES: dict[str, Range] = {"seed": NON_NEGATIVE, "num_train_clips": AT_LEAST_ONE, "num_heldout_clips": AT_LEAST_ONE}


class Batch(NamedTuple):
    """One training batch: inputs, their captions, and where they come from in the source."""

    x: Tensor  # (B, 3, T, H, W) video in [-1, 1], or (B, C, T', H', W') latents
    captions: list[str]
    indices: Tensor  # (B,) long, the items' indices in their source (to look up precomputed tensors)
    # Which rows of its step's global batch this is, when the source says (a bucket's smaller last
    # batch); None: this rank's share of a full global batch of train.batch_size.
    rows: BatchRows | None = None
    num_frames: int | None = None  # pixel frames of every clip here (length buckets); None: video.num_frames

    def to(self, device: torch.device) -> "Batch":
        return self._replace(x=self.x.to(device, non_blocking=True))

    def select(self, start: int, stop: int) -> "Batch":
        """Samples [start, stop) of the batch (a micro-batch); `rows` is left to the caller."""
        return self._replace(x=self.x[start:stop], captions=self.captions[start:stop], indices=self.indices[start:stop])


class ClipSource(Protocol):
    """Map-style clips with captions. `spec` is JSON-able and determines the content (cache keys)."""

    spec: dict

    def __len__(self) -> int: ...

    def clip(self, index: int) -> tuple[Tensor, str]: ...


class Stream(Protocol):
    """What a training loop reads: `TrainingData` (a pool), `StreamedLatents` (fresh toy clips) or
    `ShardedLatents` (prepared shards, arlon/training/shards.py)."""

    def batches(self, start_step: int = 0) -> Iterator[Batch]:
        """This rank's batch of every optimiser step from `start_step` on, endlessly."""


# ----------------------------------------------------------------------------------------------
# Order
# ----------------------------------------------------------------------------------------------


class EpochSampler:
    """Index batches of one epoch, like DistributedSampler + BatchSampler with drop_last, split by global batch.

    The permutation of range(size) is drawn from seed + epoch and cut into global batches of
    `batch_size`; rank r of world_size takes the r-th contiguous 1/world_size of each. So global batch
    s holds the same clips on any world size (what lets a run resume on another one), and one rank
    (world_size 1) reads whole batches. Call `set_epoch` before iterating each epoch.
    """

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ConfigError(
                f"train.batch_size ({batch_size}) is the global batch: it must divide evenly over the {world_size} ranks"
            )
        if size < batch_size:
            raise ConfigError(
                f"train.batch_size ({batch_size}) is larger than the {size} clips available; "
                "lower it or add clips (data num_train_clips)"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.rank, self.world_size = shuffle, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Global batches per epoch (every rank reads as many)."""
        return self.size // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        share = self.batch_size // self.world_size
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            first = start + self.rank * share
            yield order[first : first + share].tolist()


class TrainingData:
    """Batches of a `ClipSource` in `EpochSampler` order: an iterable of `Batch` (x, captions, indices).

    Iterating gives one epoch (the sampler's current epoch); `batches(start_step)` gives the endless
    stream a training loop reads, starting at optimiser step `start_step`.
    """

    def __init__(self, source: ClipSource, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.source = source
        self.sampler = EpochSampler(len(source), batch_size, seed, rank=rank, world_size=world_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        for indices in self.sampler:
            yield self.collate(indices)

    def batches(self, start_step: int = 0) -> Iterator[Batch]:
        epoch, skip = divmod(start_step, len(self))
        while True:
            self.set_epoch(epoch)
            for position, indices in enumerate(self.sampler):
                if position >= skip:  # skipped batches are never loaded
                    yield self.collate(indices)
            epoch, skip = epoch + 1, 0

    def collate(self, indices: list[int]) -> Batch:
        return collate(self.source, indices)


def collate(source: ClipSource, indices: list[int]) -> Batch:
    """The clips `indices` of `source`, stacked, with their captions."""
    clips = [source.clip(i) for i in indices]
    x = torch.stack([tensor for tensor, _ in clips])
    return Batch(x, [caption for _, caption in clips], torch.tensor(indices, dtype=torch.long))


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


# Rendered clips are kept (as uint8) up to this many bytes: a training stage reads each clip many
# times, and re-rendering it every time cost about a quarter of the tiny VAE's training time.
RENDER_CACHE_BYTES = 1 << 30


class ToyWorldClips:
    """`size` clips of the toy world's `split`, rendered at the video size of the config (each
    rendered once when they all fit in RENDER_CACHE_BYTES)."""

    def __init__(self, video: VideoConfig, seed: int, split: str, size: int):
        self.world = ToyWorld(
            seed, num_frames=video.num_frames, height=video.height, width=video.width, split=split, length=size
        )
        self.size = size
        self.spec = {
            "source": "toyworld",
            "world_version": WORLD_VERSION,
            "seed": seed,
            "split": split,
            "size": size,
            "video": [video.num_frames, video.height, video.width],
        }
        clip_bytes = video.num_frames * video.height * video.width * 3
        self._rendered: dict[int, tuple[np.ndarray, str]] | None = {} if size * clip_bytes <= RENDER_CACHE_BYTES else None

    def __len__(self) -> int:
        return self.size

    def clip(self, index: int) -> tuple[Tensor, str]:
        if self._rendered is not None and index in self._rendered:
            frames, caption = self._rendered[index]
            return uint8_to_video_tensor(frames), caption
        item = self.world[index]
        if self._rendered is not None:
            self._rendered[index] = (item.frames, item.caption)
        return item.video_tensor(), item.caption


class VideoFolderClips:
    """Rows [first, first + size) of a CSV of videos and captions, each a fixed clip (no random start)."""

    def __init__(self, csv_path: str | Path, video: VideoConfig, first: int, size: int, seed: int):
        self.dataset = VideoTextDataset(
            csv_path, num_frames=video.num_frames, height=video.height, width=video.width, seed=seed, random_start=False
        )
        self.first, self.size = first, size
        self.spec = {
            "source": "csv",
            "path": str(Path(csv_path).resolve()),
            "sha256": file_sha256(Path(csv_path)),
            "rows": [first, first + size],
            "video": [video.num_frames, video.height, video.width],
        }

    def __len__(self) -> int:
        return self.size

    def clip(self, index: int) -> tuple[Tensor, str]:
        item = self.dataset[self.first + index]
        return item["video"], item["caption"]


class ToyWorldLengths:
    """`size` toy clips of mixed lengths, for `prepare_shards`: clip i can give one of `lengths` frames,
    drawn from (seed, i), and renders at any length up to it (the same scene, longer or shorter)."""

    def __init__(self, video: VideoConfig, seed: int, split: str, size: int, lengths: tuple[int, ...]):
        self.world = ToyWorld(seed, num_frames=max(lengths), height=video.height, width=video.width, split=split, length=size)
        self.size, self.seed, self.lengths = size, seed, tuple(lengths)
        self.spec = {
            "source": "toyworld-lengths",
            "world_version": WORLD_VERSION,
            "seed": seed,
            "split": split,
            "size": size,
            "lengths": list(lengths),
            "video": [video.height, video.width],
        }

    def __len__(self) -> int:
        return self.size

    def available_frames(self, index: int) -> int:
        draw = np.random.default_rng([self.seed, index, 7]).integers(len(self.lengths))
        return self.lengths[int(draw)]

    def clip(self, index: int, num_frames: int) -> tuple[Tensor, str]:
        item = render(self.world.scene(index), num_frames, self.world.height, self.world.width)
        return item.video_tensor(), item.caption


class VideoFolderLengths:
    """Rows [first, first + size) of a CSV of videos, each readable at any length its video holds
    (for `prepare_shards`; clips start at the video's first frame)."""

    def __init__(self, csv_path: str | Path, video: VideoConfig, first: int, size: int, seed: int, frame_interval: int = 1):
        self.dataset = VideoTextDataset(
            csv_path, num_frames=1, height=video.height, width=video.width, seed=seed, random_start=False,
            frame_interval=frame_interval,
        )
        self.first, self.size = first, size
        self.spec = {
            "source": "csv-lengths",
            "path": str(Path(csv_path).resolve()),
            "sha256": file_sha256(Path(csv_path)),
            "rows": [first, first + size],
            "frame_interval": frame_interval,
            "video": [video.height, video.width],
        }

    def __len__(self) -> int:
        return self.size

    def available_frames(self, index: int) -> int:
        return self.dataset.available_frames(self.first + index)

    def clip(self, index: int, num_frames: int) -> tuple[Tensor, str]:
        item = self.dataset.load_clip(self.first + index, num_frames)
        return item["video"], item["caption"]


def length_source(data: DataConfig, video: VideoConfig, lengths: tuple[int, ...], num_clips: int | None = None):
    """The training clips of `data` at any of `lengths`, for `prepare_shards`: `num_clips` of them (default:
    every training row of a CSV, the held-out rows excepted; data.num_train_clips toy clips)."""
    if data.source == "toyworld":
        return ToyWorldLengths(video, data.seed, "train", num_clips or data.num_train_clips, lengths)
    path = _csv_path(data)
    rows = len(VideoTextDataset(path, num_frames=1, height=1, width=1))
    available = rows - min(data.num_heldout_clips, rows // 2)
    return VideoFolderLengths(path, video, 0, min(num_clips or available, available), data.seed)


def is_prepared(source: str) -> bool:
    """Whether a `--data` value names a folder written by `arlon-bench prepare` (one holding index.json)."""
    return source != "toyworld" and (Path(source) / "index.json").is_file()


def check_source(data: DataConfig) -> None:
    """One clear ConfigError unless data.source is the toy world, a CSV file or a prepared folder."""
    path = Path(data.source)
    if data.source == "toyworld" or is_prepared(data.source) or (path.is_file() and path.suffix.lower() == ".csv"):
        return
    what = "a folder without index.json" if path.is_dir() else "no such file" if not path.exists() else "not a .csv file"
    raise ConfigError(
        f"--data {data.source!r}: {what}; give 'toyworld', a CSV of video paths and captions, or a folder "
        "written by `arlon-bench prepare`"
    )


def _csv_path(data: DataConfig) -> Path:
    path = Path(data.source)
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"--data {data.source!r}: expected 'toyworld' or the path of a .csv file of videos and captions")
    return path


def build_clip_source(data: DataConfig, video: VideoConfig, split: str) -> ClipSource:
    """The training ("train") or held-out ("heldout") clips of `data` at the size of `video`."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if data.source == "toyworld":
        size = data.num_train_clips if split == "train" else data.num_heldout_clips
        return ToyWorldClips(video, data.seed, split, size)
    path = _csv_path(data)
    rows = len(VideoTextDataset(path, num_frames=1, height=1, width=1))
    heldout = min(data.num_heldout_clips, rows // 2)
    if split == "heldout":
        return VideoFolderClips(path, video, rows - heldout, heldout, data.seed)
    return VideoFolderClips(path, video, 0, min(data.num_train_clips, rows - heldout), data.seed)



# ----------------------------------------------------------------------------------------------
# Latent pools: clips encoded once
# ----------------------------------------------------------------------------------------------


@dataclass
class ClipPool:
    """Clips held in memory, a `ClipSource` itself: x (N, ...) float32 with their captions (latent pools)."""

    x: Tensor
    captions: list[str]
    spec: dict

    def __len__(self) -> int:
        return self.x.shape[0]

    def clip(self, index: int) -> tuple[Tensor, str]:
        return self.x[index], self.captions[index]


class StreamedLatents:
    """An endless stream of clips never seen before, encoded by the video VAE as they are read.

    Global batch s holds clips s * B .. s * B + B - 1 of `source` (B = `batch_size`, the global batch;
    a toy world as long as a run can read; `stream_offset` moves the whole stream), rank r of
    world_size the r-th contiguous 1/world_size of it. So a stage that trains longer sees more clips
    instead of the same ones again, and a resumed run (on any world size) sees the batches an
    uninterrupted one would. Yields `Batch`es of latents like `TrainingData` over a latent pool.
    """

    def __init__(
        self,
        source: ClipSource,
        encode: Callable[[Tensor], Tensor],
        batch_size: int,
        device: torch.device,
        stream_offset: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.source, self.encode, self.batch_size, self.device = source, encode, batch_size, device
        self.stream_offset, self.rank, self.world_size = stream_offset, rank, world_size

    @torch.no_grad()
    def batches(self, start_step: int = 0) -> Iterator[Batch]:
        step = start_step
        while True:
            share = self.batch_size // self.world_size
            first = self.stream_offset + step * self.batch_size + self.rank * share
            indices = list(range(first, first + share))
            if indices[-1] >= len(self.source):
                raise ConfigError(f"the clip stream ran out at clip {indices[-1]}: the source holds {len(self.source)}")
            clips = collate(self.source, indices)
            latents = self.encode(clips.x.to(self.device)).float()  # (B, C, T', H', W')
            yield Batch(latents, clips.captions, clips.indices)
            step += 1


# The toy world's clips a stream may read: far more than any recipe reads (steps x batch).
STREAM_CLIPS = 1 << 40


@torch.no_grad()
def encode_pool(
    encode: Callable[[Tensor], Tensor],
    source: ClipSource,
    batch_size: int,
    device: torch.device,
    spec: dict,
    progress: PoolProgress | None = None,
) -> ClipPool:
    """Encode every clip of `source` with `encode` (video (B, 3, T, H, W) -> latent (B, C, T', H', W'))
    into a float32 latent pool on the CPU."""
    latents, captions = [], []
    for start in range(0, len(source), batch_size):
        clips = [source.clip(i) for i in range(start, min(start + batch_size, len(source)))]
        video = torch.stack([tensor for tensor, _ in clips]).to(device)
        latents.append(encode(video).float().cpu())
        captions.extend(caption for _, caption in clips)
        if progress is not None:
            progress(len(captions), len(source))
    return ClipPool(torch.cat(latents), captions, spec)
