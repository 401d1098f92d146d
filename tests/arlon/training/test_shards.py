"""Prepared shards (arlon/training/shards.py): written once and resumably, streamed by length bucket
with memory that does not grow with the data, every clip once per epoch, the same on any world size."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arlon.errors import ConfigError, CorruptFileError, VideoDecodeError
from arlon.models.video_vae import build_video_vae
from arlon.presets import paper
from arlon.training.cache import TrainingSession
from arlon.training.shards import ShardedLatents, bucket_for, frame_buckets, prepare_shards

HERE = Path(__file__).parent
LENGTHS = (8, 12, 16)


class MixedClips:
    """Synthetic clips: clip i holds LENGTHS[i % 3] frames (rows 5 and 6 too short or unreadable),
    each a constant image of value i / 1000, so a latent tells which clip it came from."""

    def __init__(self, size: int, side: int = 8):
        self.size, self.side = size, side
        self.spec = {"source": "mixed", "size": size, "side": side}

    def __len__(self) -> int:
        return self.size

    def available_frames(self, index: int) -> int:
        if index == 6:
            raise VideoDecodeError("row 6: not a video")
        return 5 if index == 5 else LENGTHS[index % 3] + 1

    def clip(self, index: int, num_frames: int):
        return torch.full((3, num_frames, self.side, self.side), index / 1000), f"clip {index}"


def encode(video):
    """(B, 3, T, H, W) -> (B, 4, T / 2, H, W): a stand-in for the VAE that keeps the clip's value."""
    return torch.cat([video, video[:, :1]], dim=1)[:, :, ::2]


def prepare(folder: Path, size: int, side: int = 8, **kwargs):
    return prepare_shards(MixedClips(size, side), encode, folder, LENGTHS, {"test": True}, shard_size=32, **kwargs)


def test_frame_buckets_of_the_paper_preset():
    """Section 4.1's 51-136 frames: one bucket per latent length both VQ-VAEs (r = 4) split."""
    cfg = paper()
    with torch.device("meta"):
        vae = build_video_vae(cfg.vae)
    buckets = frame_buckets(lambda n: vae.latent_size(n, 512, 512)[0], 4, 51, 136)
    assert buckets == (55, 68, 84, 97, 110, 123, 136)
    assert [vae.latent_size(n, 512, 512)[0] for n in buckets] == [16, 20, 24, 28, 32, 36, 40]
    assert bucket_for(100, buckets) == 97 and bucket_for(54, buckets) is None
    assert TrainingSession(paper(), device="cpu").frame_buckets(51, 136) == buckets
    with pytest.raises(ConfigError, match="no frame count"):
        frame_buckets(lambda n: 15, 4, 51, 51)


def test_prepare_writes_checksummed_shards_and_resumes(tmp_path):
    prepared = prepare(tmp_path, 100)
    assert prepared.encoded_now == 4 and prepared.index["num_clips"] == 98 and prepared.index["num_skipped"] == 2
    again = prepare(tmp_path, 100)
    assert again.encoded_now == 0 and again.index == prepared.index  # complete shards are kept
    damaged = tmp_path / "shards" / "shard-00001.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(CorruptFileError, match="shard-00001.safetensors: missing or its checksum differs"):
        list(itertools.islice(ShardedLatents(tmp_path, 4, seed=0).batches(0), 30))
    repaired = prepare(tmp_path, 100)
    assert repaired.encoded_now == 1 and repaired.index == prepared.index  # only the damaged shard again
    with pytest.raises(ConfigError, match="prepared with other settings"):
        prepare_shards(MixedClips(100), encode, tmp_path, (8, 16), {"test": True}, shard_size=32)


def test_stream_reads_every_clip_once_per_epoch_one_length_per_batch(tmp_path):
    prepare(tmp_path, 300)
    stream = ShardedLatents(tmp_path, batch_size=8, seed=3)
    assert len(stream) == 298 and stream.buckets == LENGTHS
    epoch = list(itertools.islice(stream.batches(0), stream.batches_per_epoch()))
    seen = torch.cat([batch.indices for batch in epoch]).tolist()
    assert sorted(seen) == list(range(298))  # each clip exactly once
    for batch in epoch:
        assert batch.x.shape[2] == batch.num_frames // 2 and len(set(stream.frames[batch.indices.numpy()])) == 1
        rows = (batch.x[:, 0, 0, 0, 0] * 1000).round().long()  # the clip's own value: read from the right place
        assert rows.tolist() == stream.rows[batch.indices.numpy()].tolist()
        assert batch.captions == [f"clip {row}" for row in rows.tolist()]
    # A pure function of (seed, epoch): resuming at any step gives the same batches; the next epoch reshuffles.
    resumed = next(ShardedLatents(tmp_path, batch_size=8, seed=3).batches(5))
    assert torch.equal(resumed.indices, epoch[5].indices)
    second = [b.indices for b in itertools.islice(stream.batches(len(epoch)), len(epoch))]
    assert sorted(torch.cat(second).tolist()) == list(range(298)) and not torch.equal(second[0], epoch[0].indices)


def test_ranks_read_contiguous_rows_of_the_same_global_batches(tmp_path):
    prepare(tmp_path, 300)
    whole = list(itertools.islice(ShardedLatents(tmp_path, 8, seed=1).batches(0), 40))
    ranks = [list(itertools.islice(ShardedLatents(tmp_path, 8, seed=1, rank=r, world_size=2).batches(0), 40)) for r in (0, 1)]
    for step, batch in enumerate(whole):
        assert torch.cat([ranks[0][step].indices, ranks[1][step].indices]).tolist() == batch.indices.tolist()
        assert ranks[1][step].rows.start == ranks[0][step].rows.stop and ranks[1][step].rows.stop == batch.rows.total


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="reads the resident memory from Linux's /proc")
def test_stream_memory_does_not_grow_with_the_number_of_clips(tmp_path):
    """Resident memory while streaming one epoch, in a fresh process: 96 clips against 768 (8x the data, +140 MiB)."""
    growth = {}
    for size in (96, 768):
        prepare(tmp_path / str(size), size, side=48)
        done = subprocess.run(
            [sys.executable, str(HERE / "shard_memory.py"), str(tmp_path / str(size)), "8"],
            capture_output=True, text=True, timeout=300, check=True,
        )
        seen, grown = done.stdout.split()
        assert int(seen) == size - 2
        growth[size] = float(grown)
    data_mib = {size: sum(f.stat().st_size for f in (tmp_path / str(size) / "shards").glob("*.safetensors")) / 2**20 for size in growth}
    assert data_mib[768] - data_mib[96] > 100
    assert growth[768] - growth[96] < 10, (growth, data_mib)


def test_session_trains_the_injector_on_prepared_toy_shards(tmp_path, cache_dir, mini_cfg, mini_data, mini_recipes):
    """prepare -> train through TrainingSession: toy clips of mixed lengths, the injector streamed in buckets."""
    session = TrainingSession(mini_cfg, data=mini_data, train=mini_recipes(mini_cfg), device="cpu")
    buckets = session.frame_buckets(4, 8)
    assert buckets == (4, 8)  # latent 2 and 4 frames, both split by the VQ-VAEs' r = 2
    prepared = session.prepare_shards(tmp_path / "shards", min_frames=4, max_frames=8, shard_size=8)
    assert prepared.num_clips == mini_data.num_train_clips
    again = session.prepare_shards(tmp_path / "shards", min_frames=4, max_frames=8, shard_size=8)
    assert again.encoded_now == 0  # resumes: the spec (with the VAE's config and hash) reads back equal
    lengths = ShardedLatents(tmp_path / "shards", 4, 0).buckets
    assert set(lengths) == {4, 8}
    on_shards = TrainingSession(
        mini_cfg, data=type(mini_data)(source=str(tmp_path / "shards"), num_heldout_clips=4), train=mini_recipes(mini_cfg), device="cpu"
    )
    done = on_shards.ensure("injector")
    assert done.manifest["step"] == 2 and np.isfinite(done.metrics["heldout_loss"])
    assert done.manifest["data"]["shards"]["buckets"] == [4, 8]
