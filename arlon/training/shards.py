"""Latents encoded once into checksummed shards, streamed in length buckets: training at the paper's scale.

Section 4.1 trains on 0.7M (injector) to 5.7M (VQ-VAEs, AR) clips of 51 to 136 frames at 512x512: as
float32 latents 0.7M clips of 68 frames are about 0.9 TB, so they cannot live in a memory pool
(`arlon/training/data.py`). `prepare_shards` encodes a clip source once with the video VAE into

    <folder>/index.json                   what was encoded (spec: clips, VAE, buckets), every shard and its sha256
    <folder>/shards/shard-00000.safetensors  the latents of up to `shard_size` clips, "clip.<row>" (C, T', H', W')
    <folder>/shards/shard-00000.json         per clip: row, caption, pixel frames; the clips skipped and why;
                                             the sha256 of the .safetensors beside it (written last: marks it complete)
    <folder>/heldout/latents.safetensors + pool.json   held-out clips at the config's video.num_frames (a ClipPool)

Shard k holds source rows [k * shard_size, (k + 1) * shard_size); rank r of a torchrun job encodes
shards r, r + W, ...; a shard whose JSON exists and whose checksum matches is not encoded again, so an
interrupted `prepare` resumes where it stopped. Rank 0 writes the index once every shard is there.

Variable length (section 4.1's "frame range from 51 to 136"): each clip is read at the longest bucket
length its video holds (`frame_buckets`: per latent length the stages can split into AR and DiT tokens,
the longest frame count giving it, as Open-Sora v1.2's bucket sampler assigns a video to the largest
bucket it fills); videos shorter than the shortest bucket are skipped and listed.

`ShardedLatents` streams a prepared folder: the epoch's order is a pure function of (seed, epoch)
(each bucket shuffled and cut into global batches of one length, then the batches shuffled), identical
on any world size; rank r reads its contiguous rows of each global batch; clips are read one by one
from their shard, so memory holds a batch, not the data set. Every clip is read once per epoch: the
last batch of a bucket may be smaller than the global batch (the loop weighs each sample by its share,
`arlon/training/common.py`); on W ranks a bucket's last < W clips wait for the next epoch's shuffle.
"""

from __future__ import annotations

import json
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
from torch import Tensor

from arlon.checkpoints.io import atomic_write_json, file_sha256, read_json, save_safetensors
from arlon.errors import ConfigError, CorruptFileError, VideoDecodeError
from arlon.global_batch import BatchRows
from arlon.training.data import Batch
from arlon.training.distributed import SINGLE, Distributed

INDEX_VERSION = 1
SHARD_SIZE = 256  # clips per shard: about 170 MB of bf16 paper latents (4x20x64x64) or 330 MB in fp32
OPEN_SHARDS = 8  # shard files a stream keeps open (each clip is read from its file on demand)

# (task, done, total) while encoding shards.
ShardProgress = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------------------------
# Lengths
# ----------------------------------------------------------------------------------------------


def frame_buckets(latent_frames: Callable[[int], int], multiple: int, min_frames: int, max_frames: int) -> tuple[int, ...]:
    """The pixel frame counts in [min_frames, max_frames] a stage can train on, one per latent length.

    `latent_frames(n)` is the video VAE's latent length for n frames; a latent length must be a multiple
    of `multiple` (the VQ-VAEs' temporal ratios). Of the frame counts giving one latent length the
    longest is kept (the most of the video for the same cost). Paper preset, [51, 136]: 55, 68, 84, 97,
    110, 123, 136 (latent 16, 20, ..., 40; 51 frames make 15 latent frames, which r = 4 cannot split).
    """
    if not 1 <= min_frames <= max_frames:
        raise ConfigError(f"data.min_frames ({min_frames}) must be at least 1 and at most data.max_frames ({max_frames})")
    longest: dict[int, int] = {}
    for frames in range(min_frames, max_frames + 1):
        latent = latent_frames(frames)
        if latent % multiple == 0:
            longest[latent] = frames
    if not longest:
        raise ConfigError(
            f"no frame count in [{min_frames}, {max_frames}] gives a latent length divisible by {multiple} "
            "(the VQ-VAEs' temporal ratio): widen data.min_frames/data.max_frames"
        )
    return tuple(sorted(longest.values()))


def bucket_for(available: int, buckets: tuple[int, ...]) -> int | None:
    """The longest bucket length a video of `available` frames fills; None when it is shorter than all."""
    fitting = [length for length in buckets if length <= available]
    return fitting[-1] if fitting else None


class LengthSource(Protocol):
    """Clips of any length, as `prepare_shards` reads them. `spec` is JSON-able and determines the content."""

    spec: dict

    def __len__(self) -> int: ...

    def available_frames(self, index: int) -> int:
        """Frames clip `index` can give (VideoDecodeError when its video cannot be read)."""

    def clip(self, index: int, num_frames: int) -> tuple[Tensor, str]:
        """(3, num_frames, H, W) in [-1, 1] and the caption."""


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedShards:
    folder: Path
    index: dict
    encoded_now: int  # shards encoded by this call (this rank)

    @property
    def num_clips(self) -> int:
        return self.index["num_clips"]


def as_json(blob: object) -> object:
    """`blob` as it reads back from a JSON file (tuples become lists), for comparing with what was written."""
    return json.loads(json.dumps(blob))


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


def prepare_shards(
    source: LengthSource,
    encode: Callable[[Tensor], Tensor],
    folder: str | Path,
    buckets: tuple[int, ...],
    spec: dict,
    *,
    shard_size: int = SHARD_SIZE,
    encode_batch: int = 4,
    dtype: torch.dtype = torch.float32,
    device: torch.device = torch.device("cpu"),
    ranks: Distributed = SINGLE,
    progress: ShardProgress | None = None,
) -> PreparedShards:
    """Encode every clip of `source` (video (B, 3, T, H, W) -> latent (B, C, T', H', W') by `encode`)
    into shards under `folder`, skipping shards already complete; rank 0 writes the index last.

    `spec` says what is encoded (source, VAE, video size, buckets): a folder prepared with another spec
    is refused rather than mixed.
    """
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be at least 1, got {shard_size}")
    folder = Path(folder)
    spec = {**spec, "buckets": list(buckets), "shard_size": shard_size, "dtype": str(dtype).removeprefix("torch.")}
    spec = as_json(spec)  # as it reads back from spec.json
    _check_same_spec(folder, spec)
    num_shards = math.ceil(len(source) / shard_size)
    mine = list(range(ranks.rank, num_shards, ranks.world_size))
    encoded = 0
    for done, number in enumerate(mine):
        if _complete_shard(folder, number) is None:
            rows = range(number * shard_size, min((number + 1) * shard_size, len(source)))
            _encode_shard(source, encode, folder, number, rows, buckets, encode_batch, dtype, device)
            encoded += 1
        if progress is not None:
            progress("shards", done + 1, len(mine))
    ranks.barrier()
    if ranks.is_main:
        shards = []
        for number in range(num_shards):
            meta = _complete_shard(folder, number)
            if meta is None:
                raise CorruptFileError(f"{folder}: shard {number} is missing after every rank finished; run prepare again")
            shards.append({"name": shard_name(number), "sha256": meta["sha256"], "clips": len(meta["clips"]),
                           "skipped": len(meta["skipped"])})
        index = {
            "version": INDEX_VERSION,
            "spec": spec,
            "shards": shards,
            "num_clips": sum(s["clips"] for s in shards),
            "num_skipped": sum(s["skipped"] for s in shards),
        }
        atomic_write_json(folder / "index.json", index)
    ranks.barrier()
    return PreparedShards(folder, read_json(folder / "index.json"), encoded)


def _check_same_spec(folder: Path, spec: dict) -> None:
    """A folder holds shards of one spec: refuse to add to one prepared with another."""
    for path in (folder / "spec.json", folder / "index.json"):
        if path.is_file():
            found = read_json(path)
            found = found.get("spec", found) if path.name == "index.json" else found
            if found != spec:
                raise ConfigError(
                    f"{folder} holds shards prepared with other settings (clips, VAE, video size or buckets); "
                    "give prepare an empty --out folder"
                )
            return
    atomic_write_json(folder / "spec.json", spec)


@torch.no_grad()
def _encode_shard(
    source: LengthSource,
    encode: Callable[[Tensor], Tensor],
    folder: Path,
    number: int,
    rows: range,
    buckets: tuple[int, ...],
    encode_batch: int,
    dtype: torch.dtype,
    device: torch.device,
) -> None:
    by_length: dict[int, list[int]] = {}
    skipped: list[dict] = []
    for row in rows:
        try:
            available = source.available_frames(row)
        except VideoDecodeError as err:
            skipped.append({"row": row, "reason": str(err)})
            continue
        length = bucket_for(available, buckets)
        if length is None:
            skipped.append({"row": row, "reason": f"{available} frames, shorter than the shortest bucket ({buckets[0]})"})
            continue
        by_length.setdefault(length, []).append(row)
    tensors: dict[str, Tensor] = {}
    clips: list[dict] = []
    for length, members in sorted(by_length.items()):
        for start in range(0, len(members), encode_batch):
            loaded, kept = [], []
            for row in members[start : start + encode_batch]:
                try:
                    loaded.append(source.clip(row, length))
                    kept.append(row)
                except VideoDecodeError as err:  # the header said it was readable; its frames were not
                    skipped.append({"row": row, "reason": str(err)})
            if not loaded:
                continue
            video = torch.stack([tensor for tensor, _ in loaded]).to(device)  # (B, 3, length, H, W)
            latents = encode(video).to("cpu", dtype)  # (B, C, T', H', W')
            for row, (_, caption), latent in zip(kept, loaded, latents):
                tensors[f"clip.{row}"] = latent.contiguous()
                clips.append({"row": row, "caption": caption, "num_frames": length})
    clips.sort(key=lambda clip: clip["row"])
    stem = folder / "shards" / shard_name(number)
    if tensors:
        save_safetensors(tensors, stem.with_suffix(".safetensors"))
        digest = file_sha256(stem.with_suffix(".safetensors"))
    else:  # every row skipped: an empty shard, no tensor file
        stem.with_suffix(".safetensors").unlink(missing_ok=True)
        digest = None
    atomic_write_json(stem.with_suffix(".json"), {"clips": clips, "skipped": skipped, "sha256": digest})


def _complete_shard(folder: Path, number: int) -> dict | None:
    """The JSON of shard `number` when the shard is complete and its tensors match their checksum, else None."""
    stem = folder / "shards" / shard_name(number)
    if not stem.with_suffix(".json").is_file():
        return None
    try:
        meta = read_json(stem.with_suffix(".json"))
    except CorruptFileError:
        return None
    if not isinstance(meta, dict) or not {"clips", "skipped", "sha256"} <= set(meta):
        return None
    tensor_file = stem.with_suffix(".safetensors")
    if meta["sha256"] is None:
        return meta if not meta["clips"] else None
    if not tensor_file.is_file() or file_sha256(tensor_file) != meta["sha256"]:
        return None
    return meta


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def shards_spec(index: dict) -> dict:
    """What a prepared folder holds, for cache keys: its spec and every shard's checksum (index.json alone)."""
    return {"shards": [shard["sha256"] for shard in index["shards"]], **index["spec"]}


def read_index(folder: str | Path) -> dict:
    """The index of a prepared folder; one clear ConfigError when the folder is not one."""
    path = Path(folder) / "index.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: no index.json; prepare the clips first (arlon-bench prepare --data CSV --out {folder})")
    index = read_json(path)
    if not isinstance(index, dict) or index.get("version") != INDEX_VERSION or "shards" not in index:
        raise CorruptFileError(f"{path}: not an index of prepared shards (version {INDEX_VERSION}); run prepare again")
    return index


class ShardedLatents:
    """Batches of latents streamed from a prepared folder, bucketed by length; see the module docstring.

    `batches(start_step)` is the endless stream a training loop reads, from optimiser step
    `start_step`, yielding this rank's rows of each global batch of `batch_size` clips of one length.
    """

    def __init__(
        self,
        folder: str | Path,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        verify: bool = True,
    ):
        self.folder = Path(folder)
        self.index = read_index(self.folder)
        self.spec = shards_spec(self.index)
        self.batch_size, self.seed, self.rank, self.world_size, self.verify = batch_size, seed, rank, world_size, verify
        if batch_size % world_size:
            raise ConfigError(f"train.batch_size ({batch_size}) is the global batch: it must divide evenly over the {world_size} ranks")
        # One row per clip, in numpy (12 bytes a clip): shard number, source row, pixel frames.
        shard_of, rows, frames = [], [], []
        for number, shard in enumerate(self.index["shards"]):
            meta = read_json(self.folder / "shards" / f"{shard['name']}.json")
            for clip in meta["clips"]:
                shard_of.append(number)
                rows.append(clip["row"])
                frames.append(clip["num_frames"])
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.frames = np.asarray(frames, dtype=np.int32)
        if len(self.rows) == 0:
            raise ConfigError(f"{self.folder}: the prepared shards hold no clip (every row was skipped; see the shard JSON files)")
        self.buckets = tuple(sorted(set(self.frames.tolist())))
        self._open: OrderedDict[int, tuple] = OrderedDict()  # shard number -> (TensorFileReader, captions by row)
        self._verified: set[int] = set()
        self._batches_per_epoch = len(self.epoch_plan(0))

    def __len__(self) -> int:
        """Clips in the folder."""
        return len(self.rows)

    def batches_per_epoch(self) -> int:
        return self._batches_per_epoch

    def epoch_plan(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches as arrays of clip numbers, a pure function of (seed, epoch).

        Each bucket in a random order is cut into batches of `batch_size` (its last may be smaller; on
        W ranks one of fewer than W clips is left out), then the batches are shuffled.
        """
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.rows), generator=generator).numpy()
        plan = []
        for length in self.buckets:
            members = order[self.frames[order] == length]
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                if len(batch) >= self.world_size:
                    plan.append(batch)
        shuffled = torch.randperm(len(plan), generator=generator).tolist()
        return [plan[i] for i in shuffled]

    def batches(self, start_step: int = 0) -> Iterator[Batch]:
        epoch, skip = divmod(start_step, self._batches_per_epoch)
        while True:
            for clips in self.epoch_plan(epoch)[skip:]:
                yield self.read(clips)
            epoch, skip = epoch + 1, 0

    def read(self, clips: np.ndarray) -> Batch:
        """This rank's rows of the global batch `clips` (clip numbers of one length)."""
        total = len(clips)
        start, stop = self.rank * total // self.world_size, (self.rank + 1) * total // self.world_size
        latents, captions = [], []
        for clip in clips[start:stop].tolist():
            latent, caption = self.clip(clip)
            latents.append(latent)
            captions.append(caption)
        x = torch.stack(latents).float()  # (b, C, T', H', W')
        frames = int(self.frames[clips[0]])
        return Batch(x, captions, torch.as_tensor(clips[start:stop], dtype=torch.long), BatchRows(start, stop, total), frames)

    def clip(self, clip: int) -> tuple[Tensor, str]:
        """Latent (C, T', H', W') and caption of clip number `clip`, read from its shard."""
        reader, captions = self._shard(int(self.shard_of[clip]))
        row = int(self.rows[clip])
        return reader.read(f"clip.{row}"), captions[row]

    def _shard(self, number: int) -> tuple["TensorFileReader", dict[int, str]]:
        if number in self._open:
            self._open.move_to_end(number)
            return self._open[number]
        entry = self.index["shards"][number]
        path = self.folder / "shards" / f"{entry['name']}.safetensors"
        fix = "run `arlon-bench prepare` again with the same arguments: it re-encodes damaged shards"
        if self.verify and number not in self._verified:
            if not path.is_file() or file_sha256(path) != entry["sha256"]:
                raise CorruptFileError(f"{path}: missing or its checksum differs from index.json; {fix}")
            self._verified.add(number)
        reader = TensorFileReader(path, fix)
        meta = read_json(path.with_suffix(".json"))
        captions = {clip["row"]: clip["caption"] for clip in meta["clips"]}
        self._open[number] = (reader, captions)
        if len(self._open) > OPEN_SHARDS:
            self._open.popitem(last=False)[1][0].close()
        return self._open[number]


# safetensors dtype names -> torch dtypes (the ones prepare writes)
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class TensorFileReader:
    """Reads single tensors of a safetensors file by seeking to them (the format: an 8-byte little-endian
    header length, a JSON header of dtype, shape and byte offsets, then the data). Unlike a memory map,
    nothing of the file stays resident but the tensors asked for."""

    def __init__(self, path: Path, fix: str):
        self.path, self.fix = path, fix
        try:
            self.file = open(path, "rb")
            (length,) = struct.unpack("<Q", self.file.read(8))
            self.header = json.loads(self.file.read(length))
        except (OSError, struct.error, ValueError) as err:
            raise CorruptFileError(f"{path}: cannot be read as safetensors ({err}); {fix}") from None
        self.data_start = 8 + length

    def read(self, key: str) -> Tensor:
        entry = self.header.get(key)
        if entry is None or entry["dtype"] not in SAFETENSORS_DTYPES:
            raise CorruptFileError(f"{self.path}: no tensor {key!r} of a float dtype; {self.fix}")
        begin, end = entry["data_offsets"]
        self.file.seek(self.data_start + begin)
        data = bytearray(self.file.read(end - begin))
        if len(data) != end - begin:
            raise CorruptFileError(f"{self.path}: truncated at {key!r}; {self.fix}")
        return torch.frombuffer(data, dtype=SAFETENSORS_DTYPES[entry["dtype"]]).reshape(entry["shape"])

    def close(self) -> None:
        self.file.close()
