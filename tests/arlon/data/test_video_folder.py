from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from arlon.data.video_folder import (
    VideoTextDataset,
    collate_videos,
    resize_and_center_crop,
    sample_frame_indices,
    stride_for_fps,
)
from arlon.data.video_io import probe_video, read_video_frames, write_video
from arlon.errors import ConfigError, VideoDecodeError

HEIGHT, WIDTH = 48, 64
SQUARE = 8


def index_frames(num_frames: int) -> np.ndarray:
    """Flat grey frames whose level encodes the frame index: 10 + 6 * k (H.264 keeps flat levels within ~2)."""
    levels = 10 + 6 * np.arange(num_frames, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, HEIGHT, WIDTH, 3)).copy()


def square_frames(num_frames: int) -> np.ndarray:
    """Black frames with a white 8x8 square whose left column is 12 + 2k at frame k, rows 20..27."""
    frames = np.zeros((num_frames, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for k in range(num_frames):
        frames[k, 20 : 20 + SQUARE, 12 + 2 * k : 12 + 2 * k + SQUARE] = 255
    return frames


def decoded_indices(video: torch.Tensor) -> list[int]:
    """Frame indices encoded by `index_frames`, read back from a (3, T, H, W) clip in [-1, 1]."""
    levels = ((video + 1) * 127.5).mean(dim=(0, 2, 3))
    return [round((level - 10) / 6) for level in levels.tolist()]


def write_csv(path, header: list[str], rows: list[list]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {
        "index40": write_video(folder / "index40.mp4", index_frames(40), fps=24),
        "index30fps": write_video(folder / "index30fps.mp4", index_frames(40), fps=30),
        "short6": write_video(folder / "short6.mp4", index_frames(6), fps=24),
        "square": write_video(folder / "square.mp4", square_frames(12), fps=24),
    }


def test_video_io_probe_and_selective_read(videos):
    assert probe_video(videos["index40"]) == (40, pytest.approx(24.0))
    frames, fps = read_video_frames(videos["index40"], [7, 3, 3, 39])
    assert frames.shape == (4, HEIGHT, WIDTH, 3) and fps == pytest.approx(24.0)
    assert [round((f.mean() - 10) / 6) for f in frames] == [7, 3, 3, 39]
    frames, _ = read_video_frames(videos["short6"], [4, 9])  # past the end: the last frame stands in
    assert [round((f.mean() - 10) / 6) for f in frames] == [4, 5]


def test_open_sora_layout_relative_and_absolute_paths(tmp_path, videos):
    folder = videos["index40"].parent
    csv_path = write_csv(
        folder / "opensora.csv",
        ["path", "text", "num_frames", "height", "width", "fps", "aes"],
        [[str(videos["index40"]), "a grey fade, with commas", 40, 48, 64, 24, 5.5], ["short6.mp4", "short\nclip", 6, 48, 64, 24, 4.0]],
    )
    dataset = VideoTextDataset(csv_path, num_frames=4, height=32, width=32)  # relative paths: the CSV's folder
    assert len(dataset) == 2
    item = dataset[0]
    assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.float32
    assert -1 <= item["video"].min() and item["video"].max() <= 1
    assert item["caption"] == "a grey fade, with commas"
    assert item["path"] == str(videos["index40"]) and item["fps"] == pytest.approx(24.0) and item["index"] == 0
    second = dataset[1]
    assert second["caption"] == "short\nclip" and second["path"] == str(folder / "short6.mp4")


def test_openvid_layout_with_a_separate_video_root(tmp_path, videos):
    meta = tmp_path / "meta"
    meta.mkdir()
    header = ["video", "caption", "aesthetic score", "motion score", "temporal consistency score", "camera motion", "frame", "fps", "seconds"]
    csv_path = write_csv(meta / "OpenVid-1M.csv", header, [["index40.mp4", "fading grey", 5.1, 3.2, 0.99, "static", 40, 24, 1.67]])
    item = VideoTextDataset(csv_path, root=videos["index40"].parent, num_frames=3, height=16, width=16)[0]
    assert item["caption"] == "fading grey" and item["video"].shape == (3, 3, 16, 16)


def test_explicit_column_names(tmp_path, videos):
    csv_path = write_csv(tmp_path / "custom.csv", ["clip", "prompt", "text"], [[str(videos["index40"]), "the prompt", "not this"]])
    dataset = VideoTextDataset(csv_path, num_frames=2, height=16, width=16, path_column="clip", caption_column="prompt")
    assert dataset[0]["caption"] == "the prompt"


def test_frame_interval_picks_every_nth_frame(tmp_path, videos):
    csv_path = write_csv(tmp_path / "a.csv", ["path", "text"], [[str(videos["index40"]), "x"]])
    fixed = VideoTextDataset(csv_path, num_frames=5, height=HEIGHT, width=WIDTH, frame_interval=3, random_start=False)
    item = fixed[0]
    assert decoded_indices(item["video"]) == [0, 3, 6, 9, 12]
    assert item["fps"] == pytest.approx(8.0)  # 24 fps source, every 3rd frame
    randomised = VideoTextDataset(csv_path, num_frames=5, height=HEIGHT, width=WIDTH, frame_interval=3, seed=3)
    starts = set()
    for epoch in range(4):
        randomised.set_epoch(epoch)
        indices = decoded_indices(randomised[0]["video"])
        assert np.diff(indices).tolist() == [3, 3, 3, 3] and 0 <= indices[0] <= 40 - 13
        starts.add(indices[0])
    assert len(starts) > 1  # the start is random, not always 0


def test_target_fps_chooses_the_stride_from_the_source_fps(tmp_path, videos):
    assert stride_for_fps(24, 8) == 3 and stride_for_fps(30, 12) == 3 and stride_for_fps(24, 60) == 1
    csv_path = write_csv(tmp_path / "a.csv", ["path", "text"], [[str(videos["index40"]), "x"], [str(videos["index30fps"]), "y"]])
    dataset = VideoTextDataset(csv_path, num_frames=4, height=HEIGHT, width=WIDTH, target_fps=8, random_start=False)
    at_24, at_30 = dataset[0], dataset[1]
    assert decoded_indices(at_24["video"]) == [0, 3, 6, 9] and at_24["fps"] == pytest.approx(8.0)
    assert decoded_indices(at_30["video"]) == [0, 4, 8, 12] and at_30["fps"] == pytest.approx(7.5)  # 30 / 8 -> stride 4


def test_resize_and_center_crop_geometry():
    columns = np.broadcast_to(np.arange(WIDTH, dtype=np.uint8)[None, None, :, None], (2, HEIGHT, WIDTH, 3))
    cropped = resize_and_center_crop(columns, 48, 48)  # no resize: only the crop, bit-exact
    assert cropped.dtype == torch.uint8 and cropped.shape == (2, 48, 48, 3)
    assert cropped[0, 0, :, 0].tolist() == list(range(8, 56))
    rows = np.broadcast_to(np.arange(HEIGHT, dtype=np.uint8)[None, :, None, None], (1, HEIGHT, WIDTH, 3))
    assert resize_and_center_crop(rows, 32, 64)[0, :, 0, 0].tolist() == list(range(8, 40))
    halved = resize_and_center_crop(torch.from_numpy(columns.copy()).float() * 2, 24, 24)  # 48x64 -> 24x32, crop 4 each side
    assert halved.dtype == torch.float32 and halved.shape == (2, 24, 24, 3)
    # Column c of the 24x32 image averages source columns 2c and 2c+1, i.e. 2 * (2c + 0.5); the crop starts at c = 4.
    assert halved[0, 5, :, 1].tolist() == pytest.approx([2 * (2 * c + 0.5) for c in range(4, 28)], abs=1e-3)
    noise = np.random.default_rng(0).integers(0, 256, size=(1, HEIGHT, WIDTH, 3), dtype=np.uint8)  # std ~74
    # Antialiasing averages ~4x4 source pixels per output pixel at scale 1/4; plain bilinear only 2x2 (std ~37).
    assert resize_and_center_crop(noise, 12, 12).float().std() < 25
    upscaled = resize_and_center_crop(columns, 96, 96)  # 48x64 -> 96x128, crop 16 each side
    assert upscaled.shape == (2, 96, 96, 3)


def test_center_crop_follows_the_moving_square(tmp_path, videos):
    csv_path = write_csv(tmp_path / "a.csv", ["path", "text"], [[str(videos["square"]), "square"]])
    for height, width, scale, left in ((48, 48, 1.0, 8), (24, 24, 0.5, 4)):
        dataset = VideoTextDataset(csv_path, num_frames=6, height=height, width=width, frame_interval=2, random_start=False)
        video = dataset[0]["video"]
        for t, source_frame in enumerate(range(0, 12, 2)):
            mask = video[0, t] > 0  # white square against black
            cols = torch.nonzero(mask.any(dim=0)).flatten().float()
            rows = torch.nonzero(mask.any(dim=1)).flatten().float()
            expected_col = (12 + 2 * source_frame + SQUARE / 2) * scale - left - 0.5
            expected_row = (20 + SQUARE / 2) * scale - (HEIGHT * scale - height) / 2 - 0.5
            assert cols.mean().item() == pytest.approx(expected_col, abs=0.6)
            assert rows.mean().item() == pytest.approx(expected_row, abs=0.6)


def test_sampling_is_deterministic_in_seed_epoch_and_index(tmp_path, videos):
    csv_path = write_csv(tmp_path / "a.csv", ["path", "text"], [[str(videos["index40"]), str(i)] for i in range(6)])

    def starts(seed: int, epoch: int) -> list[int]:
        dataset = VideoTextDataset(csv_path, num_frames=4, height=8, width=8, seed=seed)
        dataset.set_epoch(epoch)
        return [decoded_indices(dataset[i]["video"])[0] for i in range(len(dataset))]

    assert starts(0, 0) == starts(0, 0)
    assert starts(0, 0) != starts(0, 1)
    assert starts(0, 0) != starts(1, 0)
    assert len(set(starts(0, 0))) > 1  # rows with the same video draw different clips


def test_sample_frame_indices():
    rng = np.random.default_rng(0)
    for _ in range(50):
        indices = sample_frame_indices(20, 4, 5, rng)  # span 16 fits; start in 0..4
        assert np.diff(indices).tolist() == [5, 5, 5] and 0 <= indices[0] <= 4
    assert sample_frame_indices(20, 4, 5, None) == [0, 5, 10, 15]
    assert sample_frame_indices(5, 4, 2, rng) == [0, 2, 4, 4]  # shorter than the span: start 0, pad with the last frame


def test_short_video_is_padded_with_its_last_frame(tmp_path, videos):
    csv_path = write_csv(tmp_path / "a.csv", ["path", "text"], [[str(videos["short6"]), "short"]])
    video = VideoTextDataset(csv_path, num_frames=8, height=HEIGHT, width=WIDTH, frame_interval=2)[0]["video"]
    assert decoded_indices(video) == [0, 2, 4, 5, 5, 5, 5, 5]


def test_missing_csv_and_missing_columns_are_clear_errors(tmp_path, videos):
    with pytest.raises(ConfigError, match="no such CSV"):
        VideoTextDataset(tmp_path / "nope.csv")
    csv_path = write_csv(tmp_path / "bad.csv", ["filename", "text"], [["a.mp4", "x"]])
    with pytest.raises(ConfigError, match=r"expected one of \['path', 'video', 'file'\] but the columns are \['filename', 'text'\]"):
        VideoTextDataset(csv_path)
    csv_path = write_csv(tmp_path / "nocap.csv", ["path", "description"], [["a.mp4", "x"]])
    with pytest.raises(ConfigError, match=r"no caption column.*\['path', 'description'\].*caption_column="):
        VideoTextDataset(csv_path)
    with pytest.raises(ConfigError, match=r"no column 'prompt'.*\['path', 'description'\]"):
        VideoTextDataset(csv_path, caption_column="prompt")
    with pytest.raises(ConfigError, match="not both"):
        VideoTextDataset(csv_path, caption_column="description", frame_interval=2, target_fps=8)


def test_missing_and_corrupt_videos_name_the_row_and_path(tmp_path, videos):
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    truncated = videos["index40"].read_bytes()[:2000]  # the mp4 index (moov) is written last, so it is lost
    (tmp_path / "truncated.mp4").write_bytes(truncated)
    csv_path = write_csv(
        tmp_path / "a.csv",
        ["video", "caption"],
        [[str(videos["index40"]), "fine"], ["gone.mp4", "missing"], ["corrupt.mp4", "corrupt"], ["truncated.mp4", "cut"]],
    )
    dataset = VideoTextDataset(csv_path, num_frames=2, height=8, width=8)
    with pytest.raises(VideoDecodeError, match=r"row 1 of .*a\.csv: .*gone\.mp4: no such video file"):
        dataset[1]
    with pytest.raises(VideoDecodeError, match=r"row 2 of .*corrupt\.mp4: cannot decode"):
        dataset[2]
    with pytest.raises(VideoDecodeError, match=r"row 3 of .*truncated\.mp4"):
        dataset[3]


def test_skip_bad_records_bad_rows_and_draws_good_ones(tmp_path, videos):
    (tmp_path / "corrupt.mp4").write_bytes(b"garbage")
    rows = [[str(videos["index40"]), "good a"], ["gone.mp4", "missing"], ["corrupt.mp4", "corrupt"], [str(videos["short6"]), "good b"]]
    csv_path = write_csv(tmp_path / "a.csv", ["path", "text"], rows)
    dataset = VideoTextDataset(csv_path, num_frames=2, height=8, width=8, skip_bad=True)
    items = [dataset[i] for i in range(len(dataset))]
    assert all(item["caption"].startswith("good") for item in items)
    assert all(item["index"] in (0, 3) for item in items)
    assert sorted(bad.row for bad in dataset.bad_rows) == [1, 2]
    assert any("gone.mp4" in bad.path and "no such" in bad.reason for bad in dataset.bad_rows)
    again = VideoTextDataset(csv_path, num_frames=2, height=8, width=8, skip_bad=True)
    assert [again[i]["index"] for i in (2, 1)] == [items[2]["index"], items[1]["index"]]  # replacements are seeded too
    all_bad = VideoTextDataset(write_csv(tmp_path / "b.csv", ["path", "text"], [["gone.mp4", "x"]]), skip_bad=True)
    with pytest.raises(VideoDecodeError, match="could not be read"):
        all_bad[0]


def test_collate_and_dataloader(tmp_path, videos):
    csv_path = write_csv(tmp_path / "a.csv", ["path", "text"], [[str(videos["index40"]), f"caption {i}"] for i in range(5)])
    dataset = VideoTextDataset(csv_path, num_frames=3, height=16, width=24, frame_interval=2)
    batches = list(DataLoader(dataset, batch_size=2, num_workers=0, collate_fn=collate_videos))
    assert [b["video"].shape for b in batches] == [(2, 3, 3, 16, 24), (2, 3, 3, 16, 24), (1, 3, 3, 16, 24)]
    assert batches[0]["caption"] == ["caption 0", "caption 1"]
    assert batches[1]["index"].tolist() == [2, 3] and batches[0]["fps"].tolist() == [12.0, 12.0]
    assert torch.equal(batches[0]["video"][1], dataset[1]["video"])  # the loader reproduces direct indexing
