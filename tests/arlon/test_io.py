"""How files are written and read (arlon/checkpoints/io.py): every writer gives the mode a plain open()
gives under the umask; a failed write (full disk, read-only folder) replaces nothing, leaves no
temporary file and names the file; output paths that cannot be written are refused in one line;
damaged files are named."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

import arlon.checkpoints.io as io
import arlon.data.video_io as video_io
from arlon.checkpoints.io import (
    atomic_write_bytes,
    atomic_write_json,
    check_output_dir,
    ensure_dir,
    load_safetensors,
    move_aside,
    output_file,
    read_component,
    read_json,
    save_component,
    save_safetensors,
)
from arlon.data.video_io import write_video
from arlon.errors import CorruptFileError, OutputPathError, WriteError
from arlon.training.common import Checkpointer, TrainState


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def resume_state() -> TrainState:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    return TrainState(model, optimizer, None, torch.Generator().manual_seed(0), torch.device("cpu"), step=4)


def run_vbench_worker(folder: Path) -> None:
    """The VBench worker (standalone, run in VBench's own environment) writing its response."""
    from bench.metrics.vbench import worker

    request = folder / "request.json"
    request.write_text(json.dumps({"vbench_cache": str(folder / "cache"), "output_dir": str(folder / "work"),
                                   "videos": [], "dimensions": {}}))
    os.chmod(request, 0o600)  # written by the test, not by the code under test
    assert worker.main([str(request), str(folder / "response.json")]) == 0


# Every writer of the project, each into its own new folder.
WRITERS = {
    "atomic_write_bytes": lambda d: atomic_write_bytes(d / "sub" / "a.txt", b"x"),
    "atomic_write_json": lambda d: atomic_write_json(d / "a.json", {"a": 1}),
    "save_safetensors": lambda d: save_safetensors({"w": torch.ones(2)}, d / "a.safetensors"),
    "save_component": lambda d: save_component(d, "linear", torch.nn.Linear(2, 2), {"step": 1}),
    "write_video": lambda d: write_video(d / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=8),
    "resume state": lambda d: Checkpointer(d / "resume").save(resume_state()),
    "vbench worker": run_vbench_worker,
}


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask-022", "umask-002"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_writer_gives_the_mode_open_gives_under_the_umask(writer, umask, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    old = os.umask(umask)
    try:
        WRITERS[writer](folder)
    finally:
        os.umask(old)
    written = [p for p in folder.rglob("*") if p.is_file() and p.name != "request.json"]
    assert written
    assert {p.name: oct(mode(p)) for p in written} == {p.name: oct(0o666 & ~umask) for p in written}
    assert all(mode(p) == 0o777 & ~umask for p in folder.rglob("*") if p.is_dir())


def full_disk_open(real_open):
    """open() whose files take half of what is written, then fail as a full disk does."""

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return lambda path, *args, **kwargs: Full(real_open(path, *args, **kwargs))


def half_save_file(tensors, filename):
    Path(filename).write_bytes(b"\x00" * 10)
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def failing_convert(frame, pixel_format):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    "name,write,patch",
    [
        ("a.json", lambda p: atomic_write_json(p, {"new": 1}), lambda m: m.setattr(io, "open", full_disk_open(open), raising=False)),
        ("a.safetensors", lambda p: save_safetensors({"w": torch.zeros(4)}, p), lambda m: m.setattr(io, "save_file", half_save_file)),
        ("v.mp4", lambda p: write_video(p, np.zeros((2, 16, 16, 3), np.uint8)), lambda m: m.setattr(video_io, "_convert", failing_convert)),
    ],
)
def test_a_full_disk_replaces_nothing_and_names_the_file(name, write, patch, tmp_path, monkeypatch):
    target = tmp_path / name
    target.write_bytes(b"finished before")
    patch(monkeypatch)
    with pytest.raises(WriteError) as err:
        write(target)
    assert str(err.value).startswith(f"cannot write {target}: No space left on device; free some disk space")
    assert target.read_bytes() == b"finished before"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def read_only(folder: Path, monkeypatch) -> None:
    """chmod the folder read-only; as root (who writes anyway), also refuse creating files in it."""
    folder.chmod(0o555)
    if os.geteuid() == 0:
        real_open, real_mkdir = os.open, os.mkdir

        def refuse(real):
            def call(path, *args, **kwargs):
                flags = args[0] if args else kwargs.get("flags", 0)
                creating = real is real_mkdir or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                if creating and Path(path).resolve().parent == folder.resolve():
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real(path, *args, **kwargs)
            return call

        monkeypatch.setattr(os, "open", refuse(real_open))
        monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))


def test_a_read_only_folder_is_one_error_naming_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.csv").write_text("finished\n")
    read_only(folder, monkeypatch)
    try:
        with pytest.raises(WriteError, match=rf"cannot write {folder / 'results.csv'}: Permission denied; make the folder"):
            atomic_write_bytes(folder / "results.csv", b"new\n")
        with pytest.raises(WriteError, match=rf"cannot write {folder / 'new'}: Permission denied"):
            ensure_dir(folder / "new")
    finally:
        folder.chmod(0o755)
    assert (folder / "results.csv").read_text() == "finished\n" and os.listdir(folder) == ["results.csv"]


def test_output_paths_that_cannot_be_written_are_refused_in_one_line(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing" / "v.mp4")
    with pytest.raises(OutputPathError, match=r"--out .*folder is a folder; give a file path, e.g. .*folder/video.mp4"):
        output_file(tmp_path / "folder", "--out", example="video.mp4")
    with pytest.raises(OutputPathError, match=r"symbolic link to .*missing/v.mp4, whose folder does not exist"):
        output_file(tmp_path / "dangling")
    with pytest.raises(OutputPathError, match=r"file is a file, not a folder"):
        output_file(tmp_path / "file" / "v.mp4")
    with pytest.raises(OutputPathError, match=r"--out .*file is a file, not a folder; give a folder path"):
        check_output_dir(tmp_path / "file", "--out")
    with pytest.raises(OutputPathError, match=r"which does not exist"):
        check_output_dir(tmp_path / "dangling")
    with pytest.raises(OutputPathError, match=r"file is a file, not a folder"):
        ensure_dir(tmp_path / "file" / "sub" / "deeper")
    # Missing folders are created; a link whose folder exists is followed, as open() follows it.
    assert ensure_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "missing").mkdir()
    atomic_write_bytes(tmp_path / "dangling", b"through the link")
    assert (tmp_path / "missing" / "v.mp4").read_bytes() == b"through the link" and (tmp_path / "dangling").is_symlink()


def test_damaged_files_are_named(tmp_path):
    save_component(tmp_path, "linear", torch.nn.Linear(2, 2), {"step": 1, "sha256": "0" * 64})
    weights = tmp_path / "linear.safetensors"
    with pytest.raises(CorruptFileError, match=rf"{weights}: the weights do not match the sha256"):
        read_component(tmp_path, "linear")
    for damaged in (b"", weights.read_bytes()[:40]):
        weights.write_bytes(damaged)
        with pytest.raises(CorruptFileError, match=rf"{weights}: damaged or incomplete safetensors file"):
            load_safetensors(weights)
    (tmp_path / "linear.json").write_text('{"step": 1,')
    with pytest.raises(CorruptFileError, match=rf"{tmp_path / 'linear.json'}: not valid JSON"):
        read_json(tmp_path / "linear.json")
    moved = move_aside(tmp_path / "linear.json")
    assert moved.name.startswith("linear.json.corrupt-") and not (tmp_path / "linear.json").exists()
    assert move_aside(tmp_path / "linear.json") is None  # gone already (another process moved it)
