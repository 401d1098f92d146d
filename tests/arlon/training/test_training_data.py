from __future__ import annotations

import itertools

import pytest
import torch

from arlon.config import VideoConfig
from arlon.errors import ConfigError
from arlon.training.data import (
    STREAM_CLIPS,
    DataConfig,
    EpochSampler,
    StreamedLatents,
    ToyWorldClips,
    TrainingData,
    build_clip_source,
)


def test_sampler_is_a_function_of_seed_and_epoch():
    sampler = EpochSampler(10, batch_size=3, seed=4)
    first = list(sampler)
    assert len(first) == len(sampler) == 3 and all(len(b) == 3 for b in first)
    assert len(set(itertools.chain(*first))) == 9  # one epoch: no index twice
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_sampler_splits_each_global_batch_over_ranks():
    """batch_size is the global batch: rank r reads the r-th third of each of one process's batches."""
    whole = list(EpochSampler(12, 6, seed=0))
    ranks = [list(EpochSampler(12, 6, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(batches) == len(whole) == 2 for batches in ranks)
    for step, batch in enumerate(whole):
        assert list(itertools.chain(*(ranks[r][step] for r in range(3)))) == batch
    assert sorted(itertools.chain(*whole)) == list(range(12))
    with pytest.raises(ConfigError, match="divide evenly over the 4 ranks"):
        EpochSampler(12, 6, seed=0, rank=0, world_size=4)


def test_batches_from_any_step_continue_the_same_stream(make_latent_pool):
    data = TrainingData(make_latent_pool(10), batch_size=4, seed=1)  # 2 batches per epoch
    stream = [batch.indices.tolist() for batch in itertools.islice(data.batches(0), 7)]
    assert [batch.indices.tolist() for batch in itertools.islice(data.batches(3), 4)] == stream[3:]
    batch = next(data.batches(5))
    assert torch.equal(batch.x, data.source.x[batch.indices])
    assert batch.captions == [data.source.captions[i] for i in batch.indices.tolist()]


def test_batch_size_larger_than_the_data_is_an_error(make_latent_pool):
    with pytest.raises(ConfigError, match="train.batch_size"):
        TrainingData(make_latent_pool(3), batch_size=4, seed=0)


def test_toy_world_source():
    video = VideoConfig(num_frames=4, height=16, width=16, fps=8)
    train = build_clip_source(DataConfig(num_train_clips=5, num_heldout_clips=2), video, "train")
    heldout = build_clip_source(DataConfig(num_train_clips=5, num_heldout_clips=2), video, "heldout")
    assert len(train) == 5 and len(heldout) == 2 and train.spec != heldout.spec
    clip, caption = train.clip(0)
    assert clip.shape == (3, 4, 16, 16) and clip.min() >= -1 and clip.max() <= 1 and caption
    assert torch.equal(train.clip(0)[0], clip)  # a clip depends on its index only


def test_csv_source_needs_a_csv(tmp_path):
    with pytest.raises(ConfigError, match="expected 'toyworld' or the path of a .csv"):
        build_clip_source(DataConfig(source=str(tmp_path / "videos.txt")), VideoConfig(), "train")


def test_csv_of_videos_is_a_source(tmp_path, square_clips):
    from arlon.data.video_io import video_tensor_to_uint8, write_video

    squares = square_clips(5, num_frames=6, height=32, width=32)
    rows = ["path,text"]
    for i in range(5):
        video, caption = squares.clip(i)
        write_video(tmp_path / f"clip{i}.mp4", video_tensor_to_uint8(video[None])[0], fps=8)
        rows.append(f"clip{i}.mp4,{caption}")
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    data = DataConfig(source=str(tmp_path / "clips.csv"), num_train_clips=100, num_heldout_clips=2)
    video = VideoConfig(num_frames=4, height=16, width=16, fps=8)
    train, heldout = build_clip_source(data, video, "train"), build_clip_source(data, video, "heldout")
    assert (len(train), len(heldout)) == (3, 2)
    batch = next(TrainingData(train, batch_size=2, seed=0).batches(0))
    assert batch.x.shape == (2, 3, 4, 16, 16)
    assert batch.captions == [squares.clip(i)[1] for i in batch.indices.tolist()]
    assert heldout.clip(1)[1] == squares.clip(4)[1]


def test_streamed_latents_read_each_clip_once_and_resume_exactly(square_clips):
    """Batch s holds clips s*B .. s*B+B-1 (never one seen before); starting at step s gives the same
    batches as reading on from step 0; ranks and offsets read disjoint clips."""
    source = square_clips(64)
    encode = lambda video: video[:, :, ::2, ::4, ::4] * 2  # a stand-in encoder: any function of the clip
    stream = StreamedLatents(source, encode, batch_size=4, device=torch.device("cpu"))
    first = list(itertools.islice(stream.batches(0), 5))
    seen = torch.cat([batch.indices for batch in first]).tolist()
    assert seen == list(range(20))
    resumed = next(stream.batches(3))
    assert torch.equal(resumed.x, first[3].x) and resumed.captions == first[3].captions
    assert torch.equal(first[1].x[0], encode(source.clip(4)[0][None])[0])
    other_rank = StreamedLatents(source, encode, 8, torch.device("cpu"), rank=1, world_size=2)  # global batch 8
    assert [batch.indices.tolist() for batch in itertools.islice(other_rank.batches(0), 2)] == [[4, 5, 6, 7], [12, 13, 14, 15]]
    shifted = StreamedLatents(source, encode, 4, torch.device("cpu"), stream_offset=40)
    assert next(shifted.batches(0)).indices.tolist() == [40, 41, 42, 43]
    with pytest.raises(ConfigError, match="ran out"):
        next(shifted.batches(6))  # clips 64..67 do not exist


def test_the_toy_world_streams_more_clips_than_any_recipe_reads():
    clips = ToyWorldClips(VideoConfig(num_frames=4, height=16, width=16), 0, "train", STREAM_CLIPS)
    assert len(clips) == STREAM_CLIPS
    far = clips.clip(STREAM_CLIPS - 1)
    assert far[0].shape == (3, 4, 16, 16) and isinstance(far[1], str)
    assert clips._rendered is None  # a stream is never held in memory
