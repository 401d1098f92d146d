"""I/O faults through the real `arlon-bench` entry point: every output path a user gives that cannot be
written is one line before any work, a full disk and damaged checkpoints are one line naming the
file, and a damaged training-cache entry is named, moved aside and trained again."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

import arlon.data.video_io as video_io
from arlon.weights import bundled_checkpoint_dir
from bench.runner import run_grid
from tests.bench.cli_runner import run_main
from tests.bench.metrics.fake_run import make_fake_run

SMALL_VIDEO = ["--set", "video.num_frames=4", "--set", "video.height=16", "--set", "video.width=16"]
SMALL_TRAIN = ["--set", "data.num_train_clips=8", "--set", "data.num_heldout_clips=2", *SMALL_VIDEO,
               "--set", "train.batch_size=4", "--executor", "local"]


@pytest.fixture
def paths(tmp_path) -> dict[str, Path]:
    """A file, a dangling symbolic link into a missing folder, and a path through a file."""
    (tmp_path / "a-file").write_text("keep me\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing" / "target")
    return {"folder": tmp_path, "file": tmp_path / "a-file", "dangling": tmp_path / "dangling",
            "through a file": tmp_path / "a-file" / "below"}


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    """A scored run of one video, so that a baseline can be made of it."""
    root = tmp_path_factory.mktemp("fake")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARLON_SCORE_CACHE", str(root / "score-cache"))
        store, grid = make_fake_run(root, prompts=1, samples=1, single_cell=True)
        assert run_grid(grid, store, "local", phases=("score",)).ok
    return store.root


def scores_csv(tmp_path: Path) -> str:
    path = tmp_path / "scores.csv"
    path.write_text("cell,prompt_id,sample,metric,value\nbaseline,p0,0,toy_layout_iou,0.5\n")
    return str(path)


# The command line of each output path, with the path last.
FILE_OUTPUTS = {
    "sample --out": lambda tmp, run: ["sample", "--random-init", "--prompt", "x", "--steps", "1", "--out"],
    "toy-eval --out": lambda tmp, run: ["toy-eval", "--prompts", "2", "--check", "vae", "--out"],
    "perf --out": lambda tmp, run: ["perf", "--count-only", "--out"],
    "perf --md": lambda tmp, run: ["perf", "--count-only", "--md"],
    "compare --md": lambda tmp, run: ["compare", scores_csv(tmp), scores_csv(tmp), "--md"],
}
FOLDER_OUTPUTS = {
    "train --out": lambda tmp, run: ["train", "--all", "--steps", "1", *SMALL_TRAIN, "--out"],
    "export-vbench": lambda tmp, run: ["export-vbench", str(run)],
    "vbench setup --dir": lambda tmp, run: ["vbench", "setup", "--dry-run", "--dir"],
    "compare --update-baseline": lambda tmp, run: ["compare", "--update-baseline", str(run)],
}


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("kind", ["folder", "dangling", "through a file"])
@pytest.mark.parametrize("command", list(FILE_OUTPUTS))
def test_a_file_output_that_cannot_be_a_file_is_one_line_before_any_work(command, kind, paths, fake_run, tmp_path, capsys, monkeypatch):
    args = FILE_OUTPUTS[command](tmp_path, fake_run)
    before = sorted(os.listdir(tmp_path))
    code, out, err = run_main(capsys, monkeypatch, *args, str(paths[kind]))
    reason = {"folder": "is a folder; give a file path", "dangling": "whose folder does not exist",
              "through a file": "a-file is a file, not a folder"}[kind]
    assert_one_error_line(code, err, str(paths[kind]), reason)
    assert sorted(os.listdir(tmp_path)) == before and "wrote" not in out  # refused before anything was made


@pytest.mark.parametrize("kind", ["file", "dangling", "through a file"])
@pytest.mark.parametrize("command", list(FOLDER_OUTPUTS))
def test_a_folder_output_that_cannot_be_a_folder_is_one_line_before_any_work(command, kind, paths, fake_run, tmp_path, capsys, monkeypatch):
    args = FOLDER_OUTPUTS[command](tmp_path, fake_run)
    before = sorted(os.listdir(tmp_path))
    code, _, err = run_main(capsys, monkeypatch, *args, str(paths[kind]))
    reason = {"file": "is a file, not a folder", "dangling": "which does not exist",
              "through a file": "a-file is a file, not a folder"}[kind]
    assert_one_error_line(code, err, str(paths[kind]), reason)
    assert sorted(os.listdir(tmp_path)) == before and (tmp_path / "a-file").read_text() == "keep me\n"


def test_train_out_without_all_is_refused_rather_than_ignored(tmp_path, capsys, monkeypatch):
    code, _, err = run_main(capsys, monkeypatch, "train", "--stage", "vae", "--out", str(tmp_path / "ckpt"))
    assert_one_error_line(code, err, "--out gathers every component of the preset: use it with --all")
    assert not (tmp_path / "ckpt").exists()


def test_missing_folders_of_an_output_are_created(tmp_path, capsys, monkeypatch):
    md = tmp_path / "new" / "deeper" / "gate.md"
    code, out, err = run_main(capsys, monkeypatch, "compare", scores_csv(tmp_path), scores_csv(tmp_path), "--md", str(md))
    assert code == 0, err
    assert md.read_text().startswith("Comparing") and f"wrote {md}" in out


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, capsys, monkeypatch):
    out = tmp_path / "video.mp4"
    out.write_bytes(b"an earlier video")

    def full_disk(frame, pixel_format):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(video_io, "_convert", full_disk)
    code, _, err = run_main(capsys, monkeypatch, "sample", "--random-init", "--baseline", "--prompt", "x", "--steps", "1",
                            *SMALL_VIDEO, "--out", str(out))
    assert_one_error_line(code, err, f"cannot write {out}: No space left on device; free some disk space")
    assert out.read_bytes() == b"an earlier video" and os.listdir(tmp_path) == ["video.mp4"]


def damage_truncate(directory: Path) -> Path:
    path = directory / "ar.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    return path


def damage_manifest(directory: Path) -> Path:
    path = directory / "ar.json"
    path.write_text(path.read_text()[:-20])
    return path


def damage_weights(directory: Path) -> Path:
    """Same size and a valid file, one weight changed: only the manifest's sha256 can tell."""
    from safetensors.torch import load_file, save_file

    path = directory / "ar.safetensors"
    state = load_file(str(path))
    first = sorted(state)[0]
    state[first] = state[first] + 1
    save_file(state, str(path))
    return path


@pytest.mark.skipif(bundled_checkpoint_dir("tiny") is None, reason="this checkout ships no tiny checkpoints")
@pytest.mark.parametrize("damage,reason", [
    (damage_truncate, "damaged or incomplete safetensors file"),
    (damage_manifest, "not valid JSON"),
    (damage_weights, "the weights do not match the sha256 its manifest ar.json records"),
])
def test_a_damaged_checkpoint_given_by_the_user_is_one_line_naming_the_file(damage, reason, tmp_path, capsys, monkeypatch):
    checkpoint = shutil.copytree(bundled_checkpoint_dir("tiny"), tmp_path / "ckpt")
    damaged = damage(checkpoint)
    out = tmp_path / "video.mp4"
    code, _, err = run_main(capsys, monkeypatch, "sample", "--checkpoint", str(checkpoint), "--prompt", "a red circle moves from left to right on a dark background", "--steps", "1",
                            "--out", str(out))
    assert_one_error_line(code, err, f"{damaged}: {reason}")
    assert not out.exists()


def test_a_damaged_training_cache_entry_is_named_moved_aside_and_trained_again(tmp_path, capsys, monkeypatch, caplog):
    monkeypatch.setenv("ARLON_CACHE_DIR", str(tmp_path / "cache"))
    args = ["train", "--stage", "vae", "--steps", "2", *SMALL_TRAIN]
    code, out, err = run_main(capsys, monkeypatch, *args)
    assert code == 0 and "vae: trained 2 steps" in out, err
    (entry,) = (tmp_path / "cache" / "stages" / "vae").iterdir()
    sha256 = json.loads((entry / "vae.json").read_text())["sha256"]
    damaged = entry / "vae.safetensors"  # truncated: the manifest alone would still call it complete
    half = damaged.read_bytes()[: damaged.stat().st_size // 2]
    damaged.write_bytes(half)
    with caplog.at_level(logging.WARNING):
        code, out, err = run_main(capsys, monkeypatch, *args)
    assert code == 0 and "vae: trained 2 steps" in out, err  # trained again, not taken from the damaged entry
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {damaged}: ") and "training vae again" in warnings[0]
    assert [p.read_bytes() for p in entry.glob("vae.safetensors.corrupt-*")] == [half]  # kept to look at
    assert json.loads((entry / "vae.json").read_text())["sha256"] == sha256  # the same weights, recomputed
