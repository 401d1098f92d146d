"""The results store of one run: every file a grid run writes, where it goes, and how it is written.

    runs/<name>/
      .lock                                  held (fcntl.flock) while a run writes; a second run is refused
      grid.yaml, run.json                    the grid as run (includes merged) and its --set / --limit
      prompts.json                           the prompts of the last invocation (id, text)
      manifest.json                          provenance of every invocation: git commit, package versions,
                                             device, timings, seeds, unit counts
      cells/<cell-id>/cell.json              label, resolved config, training recipes, data
      cells/<cell-id>/checkpoints.json       the checkpoints the cell's videos come from (cache / shipped)
      cells/<cell-id>/videos/<prompt-id>-<k>.mp4 + .json     a video and its record (seed, sha256, timing)
      cells/<cell-id>/references/<prompt-id>-<k>.mp4         the AR-decoded video (layout metrics)
      cells/<cell-id>/scores.jsonl           one record per (video, metric)
      results.csv (+ results.parquet), results.md, scores.csv, failures.json

Every write is atomic (a temporary file in the same folder, then os.replace), so a killed run
leaves whole files or none. A video counts as done only when its record, written after the mp4,
exists and the mp4's sha256 matches it; anything else is generated again. Temporary files left by
a killed writer (names starting with ".") are removed when the next run takes the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import socket
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator

import yaml

from arlon.checkpoints.io import atomic_write_bytes, atomic_write_json
from bench.errors import BenchError
from bench.grids import Cell, Grid, load_grid
from bench.prompts import BenchPrompt

DEFAULT_RUNS_DIR = "runs"
PACKAGES = ("arlon-bench", "torch", "numpy", "av", "safetensors", "transformers", "pandas", "pyyaml", "typer", "rich", "ray")


class RunLockedError(BenchError):
    """Another process is writing the same run."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_run_dir(run: str | os.PathLike) -> Path:
    """A run folder given as a path, or as a name under ./runs/."""
    path = Path(run).expanduser()
    if (path / "grid.yaml").is_file():
        return path
    named = Path(DEFAULT_RUNS_DIR) / str(run)
    if (named / "grid.yaml").is_file():
        return named
    raise BenchError(f"no run at {str(path)!r} (a run folder holds grid.yaml; start one with `arlon-bench ablate --grid NAME`)")


class RunStore:
    """The files of one run under `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- lock ----------------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator["RunStore"]:
        """Hold the run's exclusive lock; refuse at once (RunLockedError) if another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunLockedError(
                    f"{self.root} is being written by {holder}; wait for it to finish, or write to another folder with --out"
                ) from None
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
                handle.flush()
                self.remove_partial_files()
                yield self
            finally:
                handle.truncate(0)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def remove_partial_files(self) -> int:
        """Delete temporary files a killed writer left behind (only safe under the lock)."""
        removed = 0
        cells = self.root / "cells"
        for path in list(cells.rglob(".*")) if cells.is_dir() else []:
            if path.is_file():
                path.unlink()
                removed += 1
        for path in self.root.glob(".*"):
            if path.is_file() and path.name != ".lock":
                path.unlink()
                removed += 1
        return removed

    # -- the grid and its prompts --------------------------------------------------------------

    def save_grid(self, grid: Grid, limit: int | None) -> None:
        atomic_write_bytes(self.root / "grid.yaml", yaml.safe_dump(grid.document, sort_keys=False).encode())
        run = {"grid": grid.name, "source": grid.source, "overrides": list(grid.overrides), "limit": limit}
        run["cell_overrides"] = list(grid.cell_overrides)  # the rest are written into grid.yaml
        atomic_write_json(self.root / "run.json", run)

    def load_grid(self) -> tuple[Grid, int | None]:
        """The grid of the last invocation (with its --set overrides) and its --limit."""
        if not (self.root / "grid.yaml").is_file():
            raise BenchError(f"{self.root} holds no run (grid.yaml is missing)")
        run = self.read_json("run.json") or {}
        return load_grid(self.root / "grid.yaml", run.get("cell_overrides", [])), run.get("limit")

    def save_prompts(self, prompts: list[BenchPrompt]) -> None:
        atomic_write_json(self.root / "prompts.json", [{"id": p.id, "text": p.text, "dimensions": list(p.dimensions)} for p in prompts])

    # -- cells ---------------------------------------------------------------------------------

    def cell_dir(self, cell_id: str) -> Path:
        return self.root / "cells" / cell_id

    def save_cell(self, cell: Cell) -> None:
        atomic_write_json(self.cell_dir(cell.id) / "cell.json", cell.to_dict())

    def save_checkpoints(self, cell_id: str, checkpoints: dict) -> None:
        atomic_write_json(self.cell_dir(cell_id) / "checkpoints.json", checkpoints)

    def has_checkpoints(self, cell_id: str) -> bool:
        return (self.cell_dir(cell_id) / "checkpoints.json").is_file()

    # -- videos --------------------------------------------------------------------------------

    def video_path(self, cell_id: str, video: str) -> Path:
        return self.cell_dir(cell_id) / "videos" / f"{video}.mp4"

    def reference_path(self, cell_id: str, video: str) -> Path:
        return self.cell_dir(cell_id) / "references" / f"{video}.mp4"

    def video_record_path(self, cell_id: str, video: str) -> Path:
        return self.cell_dir(cell_id) / "videos" / f"{video}.json"

    def write_video_record(self, cell_id: str, video: str, record: dict) -> None:
        """Mark a video done: written after the mp4 (and its reference), so its presence means both are whole."""
        atomic_write_json(self.video_record_path(cell_id, video), record)

    def video_record(self, cell_id: str, video: str, seed: int | None = None) -> dict | None:
        """The record of a finished video, or None when it is missing, incomplete, or made with another seed."""
        path = self.video_record_path(cell_id, video)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if seed is not None and record.get("seed") != seed:
            return None
        files = [(self.video_path(cell_id, video), record.get("sha256"))]
        if record.get("reference_sha256"):
            files.append((self.reference_path(cell_id, video), record["reference_sha256"]))
        for file, sha in files:
            if not file.is_file() or file_sha256(file) != sha:
                return None
        return record

    # -- scores --------------------------------------------------------------------------------

    def scores_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "scores.jsonl"

    def read_scores(self, cell_id: str) -> list[dict]:
        path = self.scores_path(cell_id)
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # unreachable with atomic writes; a hand-edited line is simply rescored
        return records

    def add_scores(self, cell_id: str, records: list[dict]) -> None:
        """Merge per-video score records (one per (video, metric); a newer one replaces the older)."""
        if not records:
            return
        merged = {(r["video"], r["metric"]): r for r in self.read_scores(cell_id)}
        merged.update({(r["video"], r["metric"]): r for r in records})
        lines = [json.dumps(merged[key], sort_keys=True) for key in sorted(merged)]
        atomic_write_bytes(self.scores_path(cell_id), ("\n".join(lines) + "\n").encode())

    # -- run-level files -----------------------------------------------------------------------

    def read_json(self, name: str) -> dict | list | None:
        path = self.root / name
        return json.loads(path.read_text()) if path.is_file() else None

    def write_json(self, name: str, obj) -> Path:
        return atomic_write_json(self.root / name, obj)

    def record_invocation(self, entry: dict) -> None:
        """Add or update (same "started" time) one invocation in manifest.json."""
        manifest = self.read_json("manifest.json") or {"invocations": []}
        invocations = [e for e in manifest["invocations"] if e.get("started") != entry.get("started")]
        manifest["invocations"] = invocations + [entry]
        manifest["latest"] = entry
        self.write_json("manifest.json", manifest)


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def git_commit(start: Path | None = None) -> str | None:
    """The commit checked out where the package lives, read from .git without running git; None outside a checkout."""
    here = (start or Path(__file__)).resolve()
    for directory in [here, *here.parents]:
        dot_git = directory / ".git"
        if dot_git.is_file():  # a worktree: "gitdir: <path>"
            text = dot_git.read_text().strip()
            dot_git = (directory / text.removeprefix("gitdir:").strip()).resolve()
        if dot_git.is_dir():
            return _read_head(dot_git)
    return None


def _read_head(git_dir: Path) -> str | None:
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head.removeprefix("ref:").strip()
    common = git_dir
    if (git_dir / "commondir").is_file():
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    for root in (git_dir, common):
        if (root / ref).is_file():
            return (root / ref).read_text().strip()
        packed = root / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(f" {ref}"):
                    return line.split()[0]
    return None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(device: str) -> dict:
    """Where and with what a run was made."""
    import torch

    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None,
    }
