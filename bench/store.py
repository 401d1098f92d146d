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
      report/                                `arlon-bench report`'s tables, figures and report.html

A run folder belongs to one run: one grid (its cells, prompts, samples, seed and metrics, after
--set) and the prompts its --limit covers (`RunDefinition`). Writing another run into it is
refused with the differences named (`RunMismatchError`); `--out` picks another folder and
`--overwrite` deletes the old run's files first (`RunStore.clear`). A larger --limit (or none)
extends the run; a smaller one would shrink its finished tables and is refused. Metrics that
`arlon-bench score --metrics` adds become part of the run (run.json's "added_metrics").

Files a person may have edited are read with care: a damaged grid.yaml, run.json, manifest.json or
checkpoints.json is a `RunFileError` naming the file and the way out; derived data is recomputed
instead (a damaged scores.jsonl line is scored again, a damaged video record makes its video again,
prompts.json and the results files are rewritten by every invocation).

Every write is atomic (a temporary file in the same folder, then os.replace), so a killed run
leaves whole files or none. A video counts as done only when its record, written after the mp4,
exists and the mp4's sha256 matches it; anything else is generated again. Temporary files left by
a killed writer (names starting with ".") are removed when the next run takes the lock.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import platform
import shlex
import shutil
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterator

import yaml

from arlon.checkpoints.io import atomic_write_bytes, atomic_write_json, file_sha256
from bench.errors import BenchError
from bench.grids import Cell, Grid, load_grid
from bench.prompts import BenchPrompt, load_prompts

DEFAULT_RUNS_DIR = "runs"
SHOWN_DIFFERENCES = 5  # differences a refusal names before "..."
NOT_GENERATED = "not generated"  # `RunStore.check_video`'s reason for a video that was never made
# What a run writes at its top level (the module docstring); `clear` deletes these and nothing else.
RUN_FILES = (
    "grid.yaml", "run.json", "prompts.json", "manifest.json", "results.csv", "results.parquet", "results.md",
    "scores.csv", "failures.json",
)
RUN_FOLDERS = ("cells", "report")
RUN_MARKERS = ("grid.yaml", "run.json", "manifest.json", "cells")  # what makes a folder a run's
# What to do when a file a person may edit is damaged ({command}: the command that resumes the run).
FILE_REMEDIES = {
    "grid.yaml": "it is the grid as run; restore it from a copy, or start the run again with --overwrite (or in another folder with --out)",
    "run.json": "it records the run's --set options and --limit; restore it, or rewrite it by resuming the run: {command}",
    "manifest.json": "it is the run's history of invocations; restore it, or move it aside (a new history starts)",
    "checkpoints.json": "it records the checkpoints the cell's videos came from; restore it, or delete it (the report then lists none)",
}
PACKAGES = ("arlon-bench", "torch", "numpy", "av", "safetensors", "transformers", "pandas", "pyyaml", "typer", "rich", "ray")


class RunLockedError(BenchError):
    """Another process is writing the same run."""


class RunFileError(BenchError):
    """A file of a run is damaged or missing; the message names it and the way out."""


class RunMismatchError(BenchError):
    """A folder holds another run (or other files) than the one asked to be written there."""


def resolve_run_dir(run: str | os.PathLike) -> Path:
    """A run folder given as a path, or as a name under ./runs/."""
    path = Path(run).expanduser()
    named = Path(DEFAULT_RUNS_DIR) / str(run)
    for candidate in (path, named):
        if (candidate / "grid.yaml").is_file():
            return candidate
        if RunStore(candidate).holds_run():
            raise RunFileError(f"{candidate / 'grid.yaml'} is missing; {FILE_REMEDIES['grid.yaml']}")
    raise BenchError(f"no run at {str(path)!r} (a run folder holds grid.yaml; start one with `arlon-bench ablate --grid NAME`)")


def owning_run(path: str | os.PathLike) -> Path | None:
    """The run folder that `path` is, or lies inside of; None when there is none."""
    here = Path(path).expanduser().resolve()
    for directory in [here, *here.parents]:
        if (directory / "grid.yaml").is_file() and (directory / "cells").is_dir():
            return directory
    return None


@dataclass(frozen=True)
class RunDefinition:
    """What a run folder belongs to: the grid settings that decide its videos, scores and tables (not
    its description, the file it was read from, or how its --set options were spelled)."""

    grid: str
    version: int
    cells: dict  # {cell id: label}; an id hashes everything that determines the cell's videos
    prompts: dict  # the PromptSetConfig's fields
    samples_per_prompt: int
    seed: int
    metrics: tuple[str, ...]
    long: dict | None = None  # the grid's `long:` block (LongVideoSpec's fields)

    @classmethod
    def of(cls, grid: Grid) -> "RunDefinition":
        return cls(
            grid.name, grid.version, {cell.id: cell.label for cell in grid.cells}, dataclasses.asdict(grid.prompts),
            grid.samples_per_prompt, grid.seed, tuple(grid.metrics), None if grid.long is None else dataclasses.asdict(grid.long),
        )

    def differences(self, other: "RunDefinition", grids: tuple[Grid | None, Grid | None] = (None, None)) -> list[str]:
        """What `other` changes, one phrase each ("seed 0 -> 1"); `grids` (this one's, the other's), when
        known, say what differs inside a cell that is configured differently."""
        changes = [
            f"{name} {_shown(mine)} -> {_shown(theirs)}"
            for name, mine, theirs in [
                ("grid", self.grid, other.grid), ("grid version", self.version, other.version),
                ("samples_per_prompt", self.samples_per_prompt, other.samples_per_prompt), ("seed", self.seed, other.seed),
                *((f"prompts.{key}", self.prompts.get(key), other.prompts.get(key)) for key in dict.fromkeys([*self.prompts, *other.prompts])),
                ("metrics", list(self.metrics), list(other.metrics)), ("long", self.long, other.long),
            ]
            if mine != theirs
        ]
        return changes + _cell_changes(self.cells, other.cells, *grids)


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _cell_changes(before: dict, after: dict, before_grid: Grid | None, after_grid: Grid | None) -> list[str]:
    ids_before = {label: cell_id for cell_id, label in before.items()}
    ids_after = {label: cell_id for cell_id, label in after.items()}
    added = [label for label, cell_id in ids_after.items() if label not in ids_before and cell_id not in before]
    removed = [label for label, cell_id in ids_before.items() if label not in ids_after and cell_id not in after]
    renamed = [f"{before[cell_id]!r} -> {label!r}" for label, cell_id in ids_after.items() if cell_id in before and before[cell_id] != label]
    reconfigured = [label for label, cell_id in ids_after.items() if label in ids_before and ids_before[label] != cell_id]
    changes = []
    if reconfigured:
        detail = ""
        if before_grid is not None and after_grid is not None:
            first = reconfigured[0]
            keys = _dict_changes(before_grid.cell(ids_before[first]).identity(), after_grid.cell(ids_after[first]).identity())
            detail = f" ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else ""
        changes.append(f"cell(s) {', '.join(map(repr, reconfigured))} configured differently{detail}")
    if added:
        changes.append(f"cell(s) {', '.join(map(repr, added))} added")
    if removed:
        changes.append(f"cell(s) {', '.join(map(repr, removed))} removed")
    if renamed:
        changes.append(f"cell(s) renamed {', '.join(renamed)}")
    return changes


def _dict_changes(before: dict, after: dict, prefix: str = "") -> list[str]:
    """`key before -> after` for every dotted key whose value differs."""
    changes = []
    for key in dict.fromkeys([*before, *after]):
        mine, theirs = before.get(key), after.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            changes += _dict_changes(mine, theirs, f"{prefix}{key}.")
        elif mine != theirs:
            changes.append(f"{prefix}{key} {_shown(mine)} -> {_shown(theirs)}")
    return changes


def _options(overrides: list[str] | tuple[str, ...]) -> str:
    return " ".join(f"--set {shlex.quote(o)}" for o in overrides) or "none"


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

    # -- which run the folder holds -------------------------------------------------------------

    def holds_run(self) -> bool:
        """Whether the folder holds a run: any of the files a run writes first (a results.csv alone may be anyone's)."""
        return any((self.root / name).exists() for name in RUN_MARKERS)

    def check_folder(self) -> None:
        """Refuse a folder that is neither new, empty, nor a run's: a run is never written among other files."""
        if self.root.exists() and not self.root.is_dir():
            raise RunMismatchError(f"{self.root} is a file; --out takes a folder (a new one, an empty one, or a run's)")
        if not self.root.is_dir() or self.holds_run():
            return
        others = sorted(p.name for p in self.root.iterdir() if p.name != ".lock")
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise RunMismatchError(f"{self.root} is not a run folder (it holds {shown}); write the run to a new or empty folder with --out")

    def claim(self, grid: Grid, limit: int | None) -> tuple[str, ...]:
        """Check that running `grid` with `limit` here resumes or extends the run the folder holds (or
        that it holds none), before anything is written; returns the metrics `score` added to the run,
        which stay in it. Raises RunMismatchError naming every difference, RunFileError for a damaged
        grid.yaml or manifest.json.

        A lost or damaged run.json is rebuilt: the grid is then checked against grid.yaml (its
        grid-level settings) and the cell folders (what its cell-level --set options made).
        """
        if not self.holds_run():
            return ()
        self.read_json("manifest.json")  # a damaged history stops the run before it writes anything
        try:
            settings = self.run_settings()
        except RunFileError:
            settings = None
        stored_grid = self._stored_grid(settings.get("cell_overrides", []) if settings else [])
        stored = RunDefinition.of(stored_grid)
        if settings is None:
            stored = dataclasses.replace(stored, cells=self._cells_on_disk())
        if settings is None or "added_metrics" not in settings:  # unrecorded (or written before it was): kept
            added = tuple(metric for metric in stored.metrics if metric not in grid.metrics)
        else:
            added = tuple(settings["added_metrics"])
        asked = RunDefinition.of(grid)
        asked = dataclasses.replace(asked, metrics=tuple(dict.fromkeys(asked.metrics + added)))
        differences = stored.differences(asked, (stored_grid, grid) if settings else (None, None))
        prompts = load_prompts(grid.prompts, limit)
        if not differences:
            differences = self._prompt_changes(prompts)
        if differences:
            shown = "; ".join(differences[:SHOWN_DIFFERENCES]) + ("; ..." if len(differences) > SHOWN_DIFFERENCES else "")
            if settings is not None and list(settings.get("overrides", [])) != list(grid.overrides):
                shown += f"; --set options {_options(settings.get('overrides', []))} -> {_options(grid.overrides)}"
            raise RunMismatchError(
                f"{self.root} holds another run: {shown}. Nothing was changed: resume the run with its "
                f"own grid and options ({self.resume_command()}), write this one to another folder with --out, or "
                "replace the old run with --overwrite"
            )
        if settings is not None:
            covered = len(load_prompts(grid.prompts, settings.get("limit")))
            if len(prompts) < covered:
                raise RunMismatchError(
                    f"{self.root} covers {covered} prompt(s); --limit {limit} would cut its tables to {len(prompts)}. "
                    f"Nothing was changed: resume it without --limit (or with --limit {settings.get('limit') or covered}), "
                    "or write a smaller run to another folder with --out"
                )
        return added

    def _prompt_changes(self, prompts: list[BenchPrompt]) -> list[str]:
        """How the prompts differ from those the run was made with (an edited prompt file); a prompt
        list that extends the run's, or that a smaller --limit cuts, is no difference here."""
        try:
            before = [(p["id"], p["text"]) for p in self.read_json("prompts.json") or []]
        except (RunFileError, TypeError, KeyError):
            return []  # derived data: rewritten by this invocation
        now = [(p.id, p.text) for p in prompts]
        if now[: len(before)] == before or before[: len(now)] == now:
            return []
        ids = {p.id for p in prompts}
        gone = [text for prompt_id, text in before if prompt_id not in ids]
        if not gone:
            return ["the prompts changed order or text (was the prompt file edited?)"]
        shown = ", ".join(repr(text) for text in gone[:2]) + (", ..." if len(gone) > 2 else "")
        return [f"{len(gone)} of the run's {len(before)} prompts are gone ({shown}; was the prompt file edited?)"]

    def _cells_on_disk(self) -> dict[str, str]:
        """{cell id: label} of the cell folders (the label from cell.json, else the id)."""
        cells = {}
        for folder in sorted((self.root / "cells").glob("*/")):
            try:
                label = json.loads((folder / "cell.json").read_text()).get("label")
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                label = None
            cells[folder.name] = label if isinstance(label, str) else folder.name
        return cells

    def clear(self) -> list[str]:
        """Delete the run's own files and folders (RUN_FILES, RUN_FOLDERS), nothing else; the names deleted."""
        removed = []
        for name in RUN_FILES + RUN_FOLDERS:
            path = self.root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        return removed

    def describe(self) -> str:
        """The run in a few words, e.g. "grid 'layers', 5 cell(s), 80 finished video(s), 240 score(s)"."""
        try:
            name = repr(self.run_settings().get("grid"))
        except RunFileError:
            name = "(unknown: run.json is damaged)"
        cells = [folder.name for folder in (self.root / "cells").glob("*/")]
        videos = len(list(self.root.glob("cells/*/videos/*.json")))
        scores = sum(len(self.read_scores(cell)) for cell in cells)
        return f"grid {name}, {len(cells)} cell(s), {videos} finished video(s), {scores} score(s)"

    def resume_command(self) -> str:
        """The command that resumes the run, from run.json (else the manifest's latest invocation)."""
        settings = self._readable_json("run.json")
        if not isinstance(settings, dict):  # the latest invocation that made videos names the grid file it read
            manifest = self._readable_json("manifest.json")
            invocations = manifest.get("invocations") if isinstance(manifest, dict) else None
            makers = [e for e in invocations or [] if isinstance(e, dict) and "generate" in (e.get("phases") or [])]
            settings = makers[-1] if makers else {}
        source = settings.get("source") or settings.get("grid_source")
        overrides, limit = settings.get("overrides"), settings.get("limit")
        command = f"arlon-bench ablate --grid {shlex.quote(str(source)) if source else 'GRID'} --out {shlex.quote(str(self.root))}"
        command += "".join(f" --set {shlex.quote(str(o))}" for o in (overrides if isinstance(overrides, list) else []))
        return command + (f" --limit {limit}" if isinstance(limit, int) and limit else "")

    def score_command(self) -> str:
        return f"arlon-bench score {shlex.quote(str(self.root))}"

    def _readable_json(self, name: str):
        """A JSON file's content, or None when it is missing or damaged (for hints only)."""
        try:
            return json.loads((self.root / name).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None

    # -- the grid and its prompts --------------------------------------------------------------

    def save_grid(self, grid: Grid, limit: int | None, added_metrics: tuple[str, ...] = ()) -> None:
        """grid.yaml and run.json; `added_metrics`: those of the grid's metrics that `score` added."""
        source = grid.source
        if Path(source).resolve() == (self.root / "grid.yaml").resolve():  # read back from the run (score, report)
            try:
                source = self.run_settings().get("source") or source  # keep the file the run was started from
            except RunFileError:
                pass
        atomic_write_bytes(self.root / "grid.yaml", yaml.safe_dump(grid.document, sort_keys=False).encode())
        run = {"grid": grid.name, "source": source, "overrides": list(grid.overrides), "limit": limit}
        run["cell_overrides"] = list(grid.cell_overrides)  # the rest are written into grid.yaml
        run["added_metrics"] = list(added_metrics)
        atomic_write_json(self.root / "run.json", run)

    def load_grid(self) -> tuple[Grid, int | None]:
        """The grid of the last invocation (with its --set overrides) and its --limit."""
        if not (self.root / "grid.yaml").is_file():
            raise BenchError(f"{self.root} holds no run (grid.yaml is missing)")
        settings = self.run_settings()
        return self._stored_grid(settings.get("cell_overrides", [])), settings.get("limit")

    def run_settings(self) -> dict:
        """run.json: the grid's name and source, its --set options (and which act on cells), --limit,
        and the metrics `score` added; RunFileError when it is missing or damaged."""
        settings = self.read_json("run.json")
        if settings is None:
            raise self._damaged("run.json", "missing")
        limit = settings.get("limit")
        lists = [settings.get(key, []) for key in ("overrides", "cell_overrides", "added_metrics")]
        if (
            not all(isinstance(items, list) and all(isinstance(item, str) for item in items) for items in lists)
            or not (limit is None or isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1)
        ):
            raise self._damaged("run.json", "damaged (unexpected content)")
        return settings

    def _stored_grid(self, cell_overrides: list[str]) -> Grid:
        path = self.root / "grid.yaml"
        if not path.is_file():
            raise self._damaged("grid.yaml", "missing")
        try:
            return load_grid(path, cell_overrides)
        except BenchError as err:
            raise self._damaged("grid.yaml", f"damaged ({err})") from None

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

    def unfinished_path(self, cell_id: str, video: str) -> Path:
        """The folder of a long video's finished segments while the video is being made."""
        return self.cell_dir(cell_id) / "unfinished" / video

    def video_record_path(self, cell_id: str, video: str) -> Path:
        return self.cell_dir(cell_id) / "videos" / f"{video}.json"

    def write_video_record(self, cell_id: str, video: str, record: dict) -> None:
        """Mark a video done: written after the mp4 (and its reference), so its presence means both are whole."""
        atomic_write_json(self.video_record_path(cell_id, video), record)

    def video_record(self, cell_id: str, video: str, seed: int | None = None) -> dict | None:
        """The record of a finished video, or None when it is missing, incomplete, or made with another seed."""
        return self.check_video(cell_id, video, seed)[0]

    def check_video(self, cell_id: str, video: str, seed: int | None = None) -> tuple[dict | None, str | None]:
        """(record, None) for a finished video; (None, why it is not) otherwise: NOT_GENERATED, or what
        is wrong with its files (a damaged record is regenerated, like a damaged mp4)."""
        path = self.video_record_path(cell_id, video)
        if not path.is_file():
            return None, ("its mp4 has no record (its generation was interrupted)" if self.video_path(cell_id, video).is_file() else NOT_GENERATED)
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            return None, f"its record {path.name} is damaged"
        if seed is not None and record.get("seed") != seed:
            return None, f"made with seed {record.get('seed')}, the grid asks for {seed}"
        files = [(self.video_path(cell_id, video), record["sha256"], "mp4")]
        if record.get("reference_sha256"):
            files.append((self.reference_path(cell_id, video), record["reference_sha256"], "reference video"))
        for file, sha, what in files:
            if not file.is_file():
                return None, f"its {what} is missing"
            if file_sha256(file) != sha:
                return None, f"its {what} does not match its record: damaged or replaced"
        return record, None

    # -- scores --------------------------------------------------------------------------------

    def scores_path(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "scores.jsonl"

    def read_scores(self, cell_id: str) -> list[dict]:
        path = self.scores_path(cell_id)
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if _is_score_record(record):  # a damaged line is derived data: its score is computed again
                records.append(record)
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
        """A JSON file of the run (a path under its root), None when it does not exist; RunFileError
        naming the file and the way out when it is damaged."""
        path = self.root / name
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise self._damaged(name, f"damaged (not JSON: {err})") from None
        expected = list if Path(name).name in ("prompts.json", "failures.json") else dict
        if not isinstance(value, expected) or name == "manifest.json" and not _is_manifest(value):
            raise self._damaged(name, "damaged (unexpected content)")
        return value

    def _damaged(self, name: str, what: str) -> RunFileError:
        remedy = FILE_REMEDIES.get(Path(name).name, "restore it, or delete it")
        if "{command}" in remedy:
            remedy = remedy.format(command=self.resume_command())
        return RunFileError(f"{self.root / name} is {what}; {remedy}")

    def write_json(self, name: str, obj) -> Path:
        return atomic_write_json(self.root / name, obj)

    def record_invocation(self, entry: dict) -> None:
        """Add or update (same "started" time) one invocation in manifest.json."""
        manifest = self.read_json("manifest.json") or {"invocations": []}
        invocations = [e for e in manifest.get("invocations", []) if e.get("started") != entry.get("started")]
        manifest["invocations"] = invocations + [entry]
        manifest["latest"] = entry
        self.write_json("manifest.json", manifest)


def _is_score_record(record) -> bool:
    def number(value) -> bool:
        return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)

    return (
        isinstance(record, dict) and isinstance(record.get("video"), str) and isinstance(record.get("metric"), str)
        and number(record.get("value")) and number(record.get("weight"))
    )


def _is_manifest(manifest: dict) -> bool:
    invocations = manifest.get("invocations", [])
    return isinstance(invocations, list) and all(isinstance(e, dict) for e in invocations) and isinstance(manifest.get("latest", {}), dict)


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
        # CPU kernels are chosen by the vector instruction set, so CPU results are reproducible bit for bit
        # only on the same one (reports/baselines/README.md, "Determinism").
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": device,
        "cuda_device": torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None,
    }
