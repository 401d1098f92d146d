"""Ablation grids: YAML files naming a base ARLON configuration, the cells to compare, the prompts,
the samples per prompt and the metrics (lm-eval-style tasks as data).

    name: layers                     # default: the file name
    description: Which block pairs receive the AR condition (paper Table 3)
    version: 1                       # bump when the grid's meaning changes
    include: _tiny.yaml              # shared parts: a mapping this file's keys override
    preset: tiny                     # arlon.presets.PRESETS
    base:                            # overrides on the preset, for every cell
      noise.strategy: none
    rows:                            # explicit cells; "name" and "baseline" are reserved keys
      - {name: baseline, baseline: true}
    axes:                            # the cartesian product of these values (after the rows)
      injection.layers: [first:3, first:8, first:14, last:14]
    prompts: {kind: toyworld, split: heldout, n: 16, seed: 0}    # bench.prompts.PromptSetConfig
    samples_per_prompt: 1
    seed: 0                          # base seed of every video (see bench.executors.work.seed_for)
    metrics: [toy_colour_fidelity, toy_layout_iou]                # bench.metrics.METRICS
    train: {all: {batch_size: 4}, injector: {steps: 60}}        # recipe overrides per stage
    data: {num_train_clips: 1024}                                # arlon.training.DataConfig
    long: {frames: 128, overlap: 2}  # every video a long video (LongVideoSpec; Table 1)

Long videos. A `long:` block makes every video of the grid a long video of `frames` pixel frames
(or `seconds`), generated segment by segment (`arlon.pipelines.long_video`; `overlap` in latent
frames, default a third of the segment); the baseline cells make theirs the Open-Sora v1.2 way
with the same segments. Prompts with parts (`prompts: {kind: toyworld_long}`: long and progressive
toy prompts, each with its own length) are long videos whether or not the grid has the block.

A key in `base`, a row or `axes` is a config field (`injection.layers`), a training recipe field
(`train.<stage>.<field>`, `train.all.<field>`), a data field (`data.<field>`) or `baseline` (true:
Open-Sora-style generation without the AR model and injection). Nested mappings read as dotted keys.
`--set KEY=VALUE` overrides apply on top of the grid's base (rows and axes still win); they also reach
`preset`, `seed`, `samples_per_prompt`, `metrics` and `prompts.<field>`.

A cell is identified by the hash of everything that determines its videos: the resolved config, the
baseline flag, the training recipes of its stages and the data they train on; never by its position
in the file or its label. `validate_grid` reports every problem with its file and line: unknown keys,
values of the wrong type or out of their field's range (`arlon.config.FIELD_RANGES`,
`arlon.training.common.RECIPE_RANGES`), prompt fields the prompt kind does not read, prompts of a
prompt file the toy judges cannot read or the model cannot show (at the file's line).

Refused or warned. A file that defines nothing is refused. A grid without rows or axes (one cell),
without metrics (nothing scored) or without a prompts block (the default prompts) loads with a
warning (`Grid.warnings`), as does a prompt with words the model does not know; a prompt none of
whose words name something the model learned to draw is refused (`arlon.models.text_encoders`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Collection, Iterator, Sequence

import yaml

from arlon.config import NON_NEGATIVE, ArlonConfig, check_range, field_range, get_field, replace_field
from arlon.errors import ConfigError
from arlon.models.text_encoders import check_words, trained_vocabulary
from arlon.pipelines.long_video import check_long_video
from arlon.presets import PRESETS, get_preset
from arlon.training.cache import hash_json, train_key_fields
from arlon.training.common import RECIPE_RANGES, TrainConfig
from arlon.training.data import DATA_RANGES, DataConfig
from arlon.training.stages import STAGES, default_train_config, stages_for
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.overrides import coerce, parse_override
from bench.prompts import (
    PROMPT_RANGES,
    VBENCH_PACKAGE_PREFIX,
    PROMPT_SETS,
    BenchPrompt,
    PromptSetConfig,
    caption_problem,
    check_prompt_field,
    load_prompts,
)

GRID_KEYS = (
    "name", "description", "version", "include", "preset", "base", "rows", "axes",
    "prompts", "samples_per_prompt", "seed", "metrics", "train", "data", "long",
)
# Keys that only describe a grid: a file with nothing else defines nothing to run.
DESCRIPTIVE_KEYS = ("name", "description", "version")
# Grid-level settings that `--set` reaches besides the config, recipes and data.
SETTABLE_GRID_KEYS = ("preset", "seed", "samples_per_prompt", "metrics")
ALL_STAGES = "all"  # `train.all.<field>` changes the recipe of every stage
BASELINE = "baseline"
GENERIC_FIELD_NAMES = ("strategy", "kind")  # labelled by their group: noise.strategy=gaussian -> noise=gaussian
GRID_SUFFIXES = (".yaml", ".yml")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

KeyPath = tuple  # a key path inside the YAML document, e.g. ("axes", "injection.layers", 2)


# ---------------------------------------------------------------------------------------------
# Cells and grids
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One configuration of a grid: what is trained for it and how its videos are generated."""

    label: str
    config: ArlonConfig
    is_baseline: bool
    recipes: tuple[tuple[str, TrainConfig], ...]  # (stage, recipe) for every stage the config trains itself
    data: DataConfig
    settings: tuple[tuple[str, Any], ...] = ()  # the (key, value) pairs of its row or axis values

    def identity(self) -> dict:
        """Everything that determines the cell's videos; its id is the hash of this."""
        return {
            "config": self.config.to_dict(),
            "baseline": self.is_baseline,
            "train": {stage: train_key_fields(recipe, self.data) for stage, recipe in self.recipes},
            "data": dataclasses.asdict(self.data),
        }

    @cached_property
    def id(self) -> str:
        return hash_json(self.identity())

    def recipe(self, stage: str) -> TrainConfig:
        return dict(self.recipes)[stage]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "baseline": self.is_baseline,
            "settings": {key: list(value) if isinstance(value, tuple) else value for key, value in self.settings},
            "config": self.config.to_dict(),
            "train": {stage: dataclasses.asdict(recipe) for stage, recipe in self.recipes},
            "data": dataclasses.asdict(self.data),
        }


@dataclass(frozen=True)
class LongVideoSpec:
    """The `long:` block of a grid: every video is a long video of `frames` pixel frames (or
    `seconds` at the cell's frame rate), made in DiT segments whose `overlap` latent frames carry over
    (None: about a third of the segment, `arlon.pipelines.long_video.default_overlap`)."""

    frames: int | None = None
    seconds: float | None = None
    overlap: int | None = None

    def num_frames(self, fps: int) -> int | None:
        """Pixel frames of each video at `fps` (None when only the prompts give lengths)."""
        return self.frames if self.seconds is None else max(1, round(self.seconds * fps))

    def parts_for(self, prompt: BenchPrompt, fps: int) -> tuple[tuple[str, int], ...]:
        """The (text, frames) parts of a long video of `prompt`: its own parts, else the whole length."""
        if prompt.parts:
            return tuple((part.text, part.frames) for part in prompt.parts)
        return ((prompt.text, self.num_frames(fps)),)


LONG_FIELDS = tuple(f.name for f in dataclasses.fields(LongVideoSpec))
LONG_PROMPT_KINDS = ("toyworld_long",)  # prompt sets whose prompts have parts, each with its length


def makes_long_videos(long: LongVideoSpec | None, prompts: PromptSetConfig) -> bool:
    """Whether a grid's videos are long videos: it has a `long:` block, or prompts with parts."""
    return long is not None or prompts.kind in LONG_PROMPT_KINDS


@dataclass(frozen=True)
class Grid:
    """A parsed, validated grid file: its cells and what to generate and score for each."""

    name: str
    description: str
    version: int
    preset: str
    cells: tuple[Cell, ...]
    prompts: PromptSetConfig
    samples_per_prompt: int
    seed: int
    metrics: tuple[str, ...]
    source: str  # the file it was read from
    overrides: tuple[str, ...] = ()  # the --set options applied
    cell_overrides: tuple[str, ...] = ()  # those of them that act on the cells (the others are in `document`)
    document: dict = field(default_factory=dict, compare=False)  # the merged YAML (includes and grid-level --set resolved)
    warnings: tuple["GridIssue", ...] = field(default=(), compare=False)  # what loads but may not be meant
    long: LongVideoSpec | None = None  # the `long:` block: every video a long video

    def video_parts(self, prompt: BenchPrompt, fps: int) -> tuple[tuple[str, int], ...]:
        """The (text, frames) parts of `prompt`'s long video in this grid; () for a clip."""
        if self.long is not None:
            return self.long.parts_for(prompt, fps)
        return tuple((part.text, part.frames) for part in prompt.parts)

    @property
    def is_long(self) -> bool:
        """Whether the grid's videos are long videos (its `long:` block, or prompts with parts)."""
        return makes_long_videos(self.long, self.prompts)

    @property
    def varying_keys(self) -> tuple[str, ...]:
        """The keys that rows and axes set, in file order (the results table's setting columns)."""
        return tuple(dict.fromkeys(key for cell in self.cells for key, _ in cell.settings))

    def cell(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise BenchError(f"grid {self.name!r} has no cell {cell_id!r}")


@dataclass(frozen=True)
class GridIssue:
    """One problem of a grid file, located as precisely as the YAML allows."""

    source: str  # file path, or "--set"
    line: int | None
    key: str  # e.g. "axes.injection.layers[1]"
    message: str

    def __str__(self) -> str:
        if self.source == "--set":
            return f"--set {self.key}: {self.message}"
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class GridError(BenchError):
    """A grid file has problems; `issues` lists every one of them."""

    def __init__(self, issues: list[GridIssue]):
        self.issues = list(issues)
        more = f" (+{len(issues) - 1} more problems; see `arlon-bench validate FILE`)" if len(issues) > 1 else ""
        super().__init__(f"{issues[0]}{more}")


# ---------------------------------------------------------------------------------------------
# Finding grid files
# ---------------------------------------------------------------------------------------------


def grid_dirs() -> list[Path]:
    """Where shipped grids live: `bench/ablations` in an installed package (a link to the repository's
    `ablations/`), else the repository's `ablations/` beside the package."""
    package = Path(__file__).resolve().parent
    candidates = [package / "ablations", package.parent / "ablations"]
    return [d for d in dict.fromkeys(c.resolve() for c in candidates) if d.is_dir()]


def shipped_grids() -> dict[str, Path]:
    """{name: path} of the shipped grids (files starting with "_" are shared parts, not grids)."""
    found: dict[str, Path] = {}
    for directory in grid_dirs():
        for path in sorted(directory.iterdir()):
            if path.suffix in GRID_SUFFIXES and not path.name.startswith("_"):
                found.setdefault(path.stem, path)
    return found


def find_grid(grid: str | Path) -> Path:
    """A path to an existing file, or the name of a shipped grid."""
    path = Path(grid).expanduser()
    if path.is_file():
        return path
    text = str(grid)
    if "/" in text or path.suffix in GRID_SUFFIXES:
        raise BenchError(f"grid file {text!r} not found")
    shipped = shipped_grids()
    if text in shipped:
        return shipped[text]
    if not shipped:
        raise BenchError(
            f"no shipped grid {text!r}: the package's grid folder (bench/ablations or the repository's ablations/) "
            "is missing; pass the path of a grid file instead"
        )
    close = difflib.get_close_matches(text, list(shipped), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise BenchError(f"unknown grid {text!r}{hint} (shipped: {', '.join(shipped)}; or pass a path to a YAML file)")


def load_grid(grid: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Grid:
    """Read, resolve and validate a grid (a shipped name or a path); raise GridError on any problem."""
    parsed, issues = _parse_file(find_grid(grid), tuple(overrides))
    if issues:
        raise GridError(issues)
    return parsed


def validate_grid(grid: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> list[GridIssue]:
    """Every problem of a grid file (empty when it is valid)."""
    return _parse_file(find_grid(grid), tuple(overrides))[1]


def parse_grid(document: dict, source: str = "<grid>", overrides: list[str] | tuple[str, ...] = ()) -> Grid:
    """A grid from a mapping already in memory (a notebook's dict); paths resolve from the working directory."""
    reader = _Reader(source)
    grid = _build(copy.deepcopy(document), reader, Path.cwd(), tuple(overrides), Path(source).stem)
    if reader.issues:
        raise GridError(_in_file_order(reader.issues))
    return grid


# ---------------------------------------------------------------------------------------------
# Reading YAML with line numbers
# ---------------------------------------------------------------------------------------------


class _Reader:
    """Collects issues; knows the (file, line) of every key path of the merged document."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[KeyPath, tuple[str, int | None]] = {}
        self.issues: list[GridIssue] = []
        self.warnings: list[GridIssue] = []

    def locate(self, path: KeyPath) -> tuple[str, int | None]:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return self.source, None

    def add(self, path: KeyPath, message: str) -> None:
        source, line = self.locate(path)
        self._keep(GridIssue(source, line, _key_text(path), _plain(message)))

    def add_override(self, text: str, message: str) -> None:
        self._keep(GridIssue("--set", None, text, _plain(message)))

    def add_in_file(self, source: str, line: int | None, message: str) -> None:
        """A problem of another file the grid names (a prompt file), at its own line."""
        self._keep(GridIssue(source, line, "", message))

    def warn(self, issue: GridIssue) -> None:
        if issue not in self.warnings:
            self.warnings.append(issue)

    def warn_at(self, path: KeyPath, message: str) -> None:
        source, line = self.locate(path)
        self.warn(GridIssue(source, line, _key_text(path), message))

    def _keep(self, issue: GridIssue) -> None:
        if issue not in self.issues:  # a bad axis value fails every combination it is part of
            self.issues.append(issue)


def _key_text(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _plain(message: str) -> str:
    """ConfigErrors from `bench.overrides` speak of "--set KEY", range errors of "KEY = VALUE"; the
    location already names the key."""
    return re.sub(r"^[\w.]+ = (?=.* is out of range)", "", re.sub(r"^--set [^:]+: ", "", message))


def _read_yaml(path: Path, reader: _Reader) -> tuple[Any, dict[KeyPath, tuple[str, int]]] | None:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reader.issues.append(GridIssue(source, None, "", f"cannot read the file ({err})"))
        return None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        value = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        reader.issues.append(GridIssue(source, line, "", f"invalid YAML: {err.problem or err.context}"))
        return None
    finally:
        loader.dispose()
    lines: dict[KeyPath, tuple[str, int]] = {(): (source, 1)}
    if node is not None:
        _record_lines(node, (), source, lines)
    return value, lines


def _record_lines(node: yaml.Node, path: KeyPath, source: str, lines: dict) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (path + (key_node.value,))
            lines[key] = (source, key_node.start_mark.line + 1)
            _record_lines(value_node, key, source, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = (source, item.start_mark.line + 1)
            _record_lines(item, path + (i,), source, lines)


def _read_with_includes(path: Path, reader: _Reader, stack: tuple[Path, ...] = ()) -> tuple[dict, dict] | None:
    """The file's mapping merged over its `include:` files (deep merge, this file wins)."""
    read = _read_yaml(path, reader)
    if read is None:
        return None
    document, lines = read
    if document is None:
        document = {}
    if not isinstance(document, dict):
        reader.issues.append(GridIssue(str(path), 1, "", f"a grid file is a mapping of {', '.join(GRID_KEYS)}"))
        return None
    includes = document.pop("include", None)
    if includes is None:
        return document, lines
    names = [includes] if isinstance(includes, str) else includes
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        reader.issues.append(GridIssue(str(path), lines.get(("include",), (None, None))[1], "include", "expected a file name or a list of them"))
        return document, lines
    merged: dict = {}
    merged_lines: dict = {}
    for i, name in enumerate(names):
        target = (path.parent / name).resolve()
        where = lines.get(("include", i), lines.get(("include",)))
        if target in stack or target == path.resolve():
            reader.issues.append(GridIssue(str(path), where[1], "include", f"{name} includes itself (cycle)"))
            continue
        if not target.is_file():
            reader.issues.append(GridIssue(str(path), where[1], "include", f"{name}: no such file beside {path.name}"))
            continue
        included = _read_with_includes(target, reader, stack + (path.resolve(),))
        if included is not None:
            merged = _deep_merge(merged, included[0])
            merged_lines.update(included[1])
    merged_lines.update({key: value for key, value in lines.items() if key[:1] != ("include",)})
    return _deep_merge(merged, document), merged_lines


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _deep_merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def _flatten(mapping: dict, path: KeyPath, prefix: str = "") -> Iterator[tuple[str, Any, KeyPath]]:
    """(dotted key, value, document path) of a mapping whose nested mappings read as dotted keys."""
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, path + (key,), f"{dotted}.")
        else:
            yield dotted, value, path + (key,)


# ---------------------------------------------------------------------------------------------
# Building the grid
# ---------------------------------------------------------------------------------------------


def _parse_file(path: Path, overrides: tuple[str, ...]) -> tuple[Grid | None, list[GridIssue]]:
    reader = _Reader(str(path))
    read = _read_with_includes(path, reader)
    if read is None:
        return None, reader.issues
    document, lines = read
    reader.lines = lines
    grid = _build(document, reader, path.parent, overrides, path.stem)
    return (grid if not reader.issues else None), _in_file_order(reader.issues)


def _in_file_order(issues: list[GridIssue]) -> list[GridIssue]:
    """--set problems first, then by file and line."""
    return sorted(issues, key=lambda i: (i.source != "--set", i.source, i.line or 0))


@dataclass(frozen=True)
class _Setting:
    """One key = value of base / a row / an axis, with where it was written."""

    key: str
    value: Any
    where: KeyPath | str  # document path, or the --set text


def _build(document: dict, reader: _Reader, base_dir: Path, overrides: tuple[str, ...], default_name: str) -> Grid | None:
    for key in document:
        if key not in GRID_KEYS:
            close = difflib.get_close_matches(str(key), GRID_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            reader.add((key,), f"unknown grid key {key!r}{hint} (known: {', '.join(GRID_KEYS)})")

    # 1. --set: grid-level settings change the document; the rest act like `base` entries.
    document, set_settings, prompt_overrides = _split_set_options(document, overrides, reader)

    if not any(key not in DESCRIPTIVE_KEYS for key in document) and not reader.issues:  # (not after a failed include)
        reader.add((), "the grid defines nothing to run: add metrics, prompts and rows or axes "
                   "(the shipped grids in ablations/ are examples; `arlon-bench grids` lists them)")
        return None

    # 2. Grid-level settings.
    name = _typed(document, "name", str, default_name, reader)
    if not NAME_PATTERN.match(name or ""):
        reader.add(("name",), f"{name!r}: use letters, digits, '-', '_' and '.' (it names the run folder)")
    description = _typed(document, "description", str, "", reader)
    version = _typed(document, "version", int, 1, reader)
    seed = _typed(document, "seed", int, 0, reader)
    samples = _typed(document, "samples_per_prompt", int, 1, reader)
    if samples is not None and samples < 1:
        reader.add(("samples_per_prompt",), f"must be at least 1, got {samples}")
    try:
        check_range("seed", seed, NON_NEGATIVE)  # as every seed: numpy's generators refuse negative ones
    except ConfigError as err:
        reader.add(("seed",), str(err))
    preset = _typed(document, "preset", str, "tiny", reader)
    if preset not in PRESETS:
        reader.add(("preset",), PRESETS.unknown_key_message(preset))
        return None
    prompts, prompt_list = _prompt_config(document.get("prompts", {}), reader, base_dir, prompt_overrides)
    long = _long_block(document.get("long"), prompt_list, reader)
    metrics = _metrics(document.get("metrics", []), prompts, reader, is_long=makes_long_videos(long, prompts))
    _warn_missing_parts(document, prompts, reader)

    # 3. The base: preset + base entries + --set; training recipes and data the same way.
    base_settings = _mapping_settings(document, "base", reader)
    train_settings = _train_block(document.get("train", {}), reader)
    data_settings = _mapping_settings(document, "data", reader, prefix="data.")
    shared = _Resolved(get_preset(preset), DataConfig(), [], False)
    applied: list[_Setting] = []
    for setting in [*train_settings, *data_settings, *base_settings, *set_settings]:
        if setting.key == BASELINE:
            _add_issue(reader, setting, "'baseline' belongs in a row or an axis, not in the base")
        elif _apply(shared, setting, reader):
            applied.append(setting)

    # 4. The cells: rows, then the product of the axes.
    cell_specs = _row_specs(document.get("rows", []), reader) + _axis_specs(document.get("axes", {}), set_settings, shared, preset, reader)
    if not cell_specs:
        cell_specs = [("base", [], ("base",))]
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    for label, settings, where in cell_specs:
        cell = _make_cell(label, settings, where, shared, applied, reader)
        if cell is None:
            continue
        if cell.id in seen:
            reader.add(where, f"cell {label!r} has the same configuration as cell {seen[cell.id]!r}")
            continue
        if label in seen.values():
            reader.add(where, f"two cells are labelled {label!r}; give the rows distinct names")
            continue
        seen[cell.id] = label
        cells.append(cell)

    if long is not None or (prompt_list and any(p.parts for p in prompt_list)):
        for cell in cells:
            try:
                check_long_video(cell.config, None if long is None else long.overlap)
            except ConfigError as err:
                reader.add(("long", "overlap") if long is not None and long.overlap else ("long",), f"cell {cell.label!r}: {err}")
                break
    if prompt_list:  # the toy judges' captions after the words: a prompt refused for its words is refused once
        refused = _check_prompt_words(prompt_list, prompts, cells, preset, reader)
        for issue in toy_judge_problems(prompts, prompt_list, metrics, skip=refused):
            reader.add_in_file(issue.source, issue.line, issue.message)
    if reader.issues:
        return None
    resolved = copy.deepcopy(document)
    resolved["name"] = name
    if prompts.path is not None:
        resolved.setdefault("prompts", {})["path"] = prompts.path
    return Grid(
        name=name, description=description, version=version, preset=preset, cells=tuple(cells), prompts=prompts,
        samples_per_prompt=samples, seed=seed, metrics=metrics, source=reader.source, overrides=overrides,
        cell_overrides=tuple(s.where for s in set_settings), document=resolved, warnings=tuple(reader.warnings),
        long=long,
    )


def _split_set_options(
    document: dict, overrides: tuple[str, ...], reader: _Reader
) -> tuple[dict, list[_Setting], dict[str, str]]:
    """(document with the grid-level --set options written in, the other options as settings,
    {prompt field: option text} for the prompts.<field> options)."""
    document = copy.deepcopy(document)
    settings: list[_Setting] = []
    prompt_options: dict[str, str] = {}
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ConfigError as err:
            reader.add_override(text, str(err))
            continue
        if key in SETTABLE_GRID_KEYS:
            document[key] = value
        elif key.startswith("prompts."):
            prompts = document.setdefault("prompts", {})
            if isinstance(prompts, dict):
                prompts[key.removeprefix("prompts.")] = value
                prompt_options[key.removeprefix("prompts.")] = text
        elif key.startswith("long."):
            long = document.setdefault("long", {})
            if isinstance(long, dict):
                long[key.removeprefix("long.")] = value
        elif key in GRID_KEYS:
            reader.add_override(
                text, f"{key!r} is set in the grid file itself; --set reaches {', '.join(SETTABLE_GRID_KEYS)}, prompts.<field> and fields"
            )
        else:
            settings.append(_Setting(key, value, text))
    return document, settings, prompt_options


def _long_block(block: Any, prompts: list[BenchPrompt] | None, reader: _Reader) -> LongVideoSpec | None:
    """The `long:` block: frames (or seconds) and overlap, each a positive number."""
    if block is None:
        return None
    if not isinstance(block, dict):
        reader.add(("long",), "expected a mapping like {frames: 128, overlap: 2}")
        return None
    values: dict[str, Any] = {}
    for key, value in block.items():
        if key not in LONG_FIELDS:
            close = difflib.get_close_matches(str(key), LONG_FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            reader.add(("long", key), f"unknown field{hint} (long videos take {', '.join(LONG_FIELDS)})")
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in ("frames", "overlap") and not (isinstance(value, int) and not isinstance(value, bool)):
            reader.add(("long", key), f"expected a whole number, got {value!r}")
        elif not number or value <= 0:
            reader.add(("long", key), f"expected a positive number, got {value!r}")
        else:
            values[key] = value
    with_parts = prompts is not None and any(p.parts for p in prompts)
    if "frames" in values and "seconds" in values:
        reader.add(("long",), "give the length once: frames or seconds, not both")
    elif "frames" not in values and "seconds" not in values and not with_parts and len(values) == len(block):
        reader.add(("long",), "say how long the videos are: long.frames (pixel frames) or long.seconds")
    elif with_parts and ("frames" in values or "seconds" in values):
        reader.add(("long",), "these prompts give each video's length (prompts.frames); keep only long.overlap here")
    return LongVideoSpec(**values)


def _typed(document: dict, key: str, kind: type, default: Any, reader: _Reader) -> Any:
    value = document.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        reader.add((key,), f"expected {kind.__name__}, got {value!r}")
        return default
    return value


def _add_issue(reader: _Reader, setting: _Setting, message: str) -> None:
    if isinstance(setting.where, str):
        reader.add_override(setting.where, message)
    else:
        reader.add(setting.where, message)


def _mapping_settings(document: dict, key: str, reader: _Reader, prefix: str = "") -> list[_Setting]:
    block = document.get(key, {})
    if block is None:
        return []
    if not isinstance(block, dict):
        reader.add((key,), "expected a mapping of field: value")
        return []
    return [_Setting(prefix + dotted, value, where) for dotted, value, where in _flatten(block, (key,))]


def _train_block(block: Any, reader: _Reader) -> list[_Setting]:
    """`train: {all: {...}, <stage>: {...}}` as train.<stage>.<field> settings, "all" first."""
    if not block:
        return []
    if not isinstance(block, dict):
        reader.add(("train",), f"expected a mapping of stage ({ALL_STAGES}, {', '.join(STAGES)}) to recipe fields")
        return []
    ordered = sorted(block.items(), key=lambda item: item[0] != ALL_STAGES)
    return [_Setting(f"train.{d}", v, w) for d, v, w in _flatten(dict(ordered), ("train",))]


def _prompt_config(
    block: Any, reader: _Reader, base_dir: Path, from_cli: dict[str, str]
) -> tuple[PromptSetConfig, list[BenchPrompt] | None]:
    """The `prompts:` block and its prompts (None when the block has problems); a relative path is
    relative to the file that names it (the working directory for --set prompts.path=...)."""
    cfg = PromptSetConfig()
    if not isinstance(block, dict):
        reader.add(("prompts",), "expected a mapping like {kind: toyworld, split: heldout, n: 16}")
        return cfg, None
    kind = str(block.get("kind", cfg.kind))
    problems = len(reader.issues)
    for key, value in block.items():

        def problem(message: str) -> None:
            message = re.sub(rf"^prompts\.{re.escape(str(key))}: ", "", message)
            if key in from_cli:
                reader.add_override(from_cli[key], message)
            else:
                reader.add(("prompts", key), message)

        try:
            check_prompt_field(kind, str(key))
        except BenchError as err:
            problem(str(err))
            continue
        if key in ("path", "column") and not isinstance(value, str):
            problem(f"expected a string, got {value!r}")
            continue
        if key == "dimensions" and isinstance(value, str):
            value = [value]
        try:
            value = coerce(f"prompts.{key}", getattr(cfg, key), value)
            if key in PROMPT_RANGES:
                check_range(f"prompts.{key}", value, PROMPT_RANGES[key])
            cfg = dataclasses.replace(cfg, **{key: value})
        except ConfigError as err:
            problem(_plain(str(err)))
    if cfg.kind not in PROMPT_SETS:
        if "kind" in from_cli:
            reader.add_override(from_cli["kind"], PROMPT_SETS.unknown_key_message(cfg.kind))
        else:
            reader.add(("prompts", "kind"), PROMPT_SETS.unknown_key_message(cfg.kind))
        return cfg, None
    if cfg.path is not None and not cfg.path.startswith(VBENCH_PACKAGE_PREFIX):
        path = Path(cfg.path).expanduser()
        if not path.is_absolute():
            source = Path(reader.locate(("prompts", "path"))[0])
            if "path" in from_cli:
                relative_to = Path.cwd()
            else:
                relative_to = source.parent if source.is_file() else base_dir
            path = (relative_to / path).resolve()
        cfg = dataclasses.replace(cfg, path=str(path))
    if len(reader.issues) > problems:
        return cfg, None
    try:
        return cfg, load_prompts(cfg)
    except BenchError as err:
        if cfg.path is not None and cfg.path.startswith(VBENCH_PACKAGE_PREFIX):
            # VBench's own prompt file comes with the VBench environment, which a machine that only lists or
            # validates grids may lack: a warning here; a run stops before any work until it is set up.
            reader.warn_at(("prompts", "path"), str(err))
        else:
            reader.add(("prompts",), str(err))
    return cfg, None


def _metrics(value: Any, prompts: PromptSetConfig, reader: _Reader, is_long: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        reader.add(("metrics",), "expected a list of metric names")
        return ()
    for i, name in enumerate(value):
        if name not in METRICS:
            reader.add(("metrics", i), METRICS.unknown_key_message(name))
        elif _is_toy_judge(name) and prompts.kind in ("vbench", "csv"):  # text: `toy_judge_problems`
            reader.add(
                ("metrics", i),
                f"{name} judges toy-world scenes; it needs prompts.kind toyworld, or text with toy-world captions, "
                f"not {prompts.kind!r}",
            )
        elif "segments" in METRICS.get(name).inputs and not is_long:
            reader.warn_at(
                ("metrics", i),
                f"{name} judges long videos only and this grid makes clips, so it gives no value: add a long: block "
                "or prompts.kind toyworld_long",
            )
    if len(set(value)) != len(value):
        reader.add(("metrics",), "a metric is listed twice")
    return tuple(dict.fromkeys(value))


def _is_toy_judge(metric: str) -> bool:
    """Whether a metric reads the toy world's ground truth (a clip's scene or a long video's timeline)."""
    inputs = METRICS.get(metric).inputs
    return "scene" in inputs or "timeline" in inputs


def toy_judge_problems(
    cfg: PromptSetConfig, prompts: list[BenchPrompt], metrics: Sequence[str], skip: Collection[str] = ()
) -> list[GridIssue]:
    """One issue for each prompt of a text file that the toy judges among `metrics` cannot score
    (it is no toy-world caption), at its line; call it before scoring a run with metrics its grid
    did not list (prompts whose id is in `skip` are left out)."""
    judges = [name for name in metrics if name in METRICS and _is_toy_judge(name)]
    if cfg.kind != "text" or not judges:
        return []
    what = f"{judges[0]} judges" if len(judges) == 1 else f"the {len(judges)} toy_* metrics judge"
    return [
        GridIssue(
            str(cfg.path), prompt.line, "",
            f"{caption_problem(prompt.text) or repr(prompt.text) + ' is not a toy-world caption'}; {what} toy-world "
            "captions only: rephrase the line or drop the toy metrics",
        )
        for prompt in prompts
        if prompt.scene is None and prompt.id not in skip
    ]


def _warn_missing_parts(document: dict, prompts: PromptSetConfig, reader: _Reader) -> None:
    """One warning per part a grid leaves to its default: it runs, but perhaps not what was meant."""
    if not document.get("rows") and not document.get("axes"):
        reader.warn_at((), "no rows or axes: the grid has one cell, the preset with the base settings")
    if not document.get("metrics"):
        reader.warn_at((), "no metrics: videos are generated but nothing is scored (add metrics: [...]; "
                       "`arlon-bench grids` shows those of the shipped grids)")
    if "prompts" not in document:
        reader.warn_at((), f"no prompts block: the default {prompts.n} held-out toy-world prompts (seed {prompts.seed})")


def _check_prompt_words(
    prompts: list[BenchPrompt], cfg: PromptSetConfig, cells: list[Cell], preset: str, reader: _Reader
) -> set[str]:
    """Prompts the cells' models read only in part (a warning each), or cannot show at all (refused;
    their ids are returned): words outside the vocabulary of their training captions, words past the
    text encoder's length."""
    model = f"preset {preset!r}"
    refused: set[str] = set()
    seen: set[tuple] = set()
    for cell in cells:
        text = cell.config.text
        vocabulary = trained_vocabulary(text, cell.data.source)
        if vocabulary is None or (text, cell.data.source) in seen:
            continue
        seen.add((text, cell.data.source))
        for prompt in prompts:
            source, line = (cfg.path, prompt.line) if cfg.path and prompt.line else reader.locate(("prompts",))
            for part in prompt.parts or (prompt,):  # the model reads each part of a progressive prompt alone
                check = check_words(part.text, vocabulary, text.max_length)
                if check.refused:
                    reader.add_in_file(str(source), line, check.refusal(model, vocabulary))
                    refused.add(prompt.id)
                elif (warning := check.warning(model)) is not None:
                    reader.warn(GridIssue(str(source), line, "", warning))
    return refused


def _row_specs(rows: Any, reader: _Reader) -> list[tuple[str, list[_Setting], KeyPath]]:
    if not rows:
        return []
    if not isinstance(rows, list):
        reader.add(("rows",), "expected a list of rows like {name: layers_3, injection.layers: first:3}")
        return []
    specs = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            reader.add(("rows", i), "expected a mapping like {name: layers_3, injection.layers: first:3}")
            continue
        settings = [_Setting(k, v, w) for k, v, w in _flatten(row, ("rows", i)) if k != "name"]
        name = row.get("name")
        if name is not None and not isinstance(name, str):
            reader.add(("rows", i, "name"), f"expected a string, got {name!r}")
            name = None
        specs.append((name or _auto_label(settings), settings, ("rows", i)))
    return specs


def _axis_specs(
    axes: Any, set_settings: list[_Setting], shared: "_Resolved", preset: str, reader: _Reader
) -> list[tuple[str, list[_Setting], KeyPath]]:
    if not axes:
        return []
    if not isinstance(axes, dict):
        reader.add(("axes",), "expected a mapping of key: [values]")
        return []
    values = []
    for key, options in axes.items():
        if not isinstance(options, list) or not options:
            reader.add(("axes", key), "expected a non-empty list of values")
            return []
        values.append([_Setting(str(key), option, ("axes", key, i)) for i, option in enumerate(options)])
        for setting in set_settings:
            if setting.key == key:
                reader.add_override(setting.where, f"{key} is an axis of this grid, so every cell sets it; drop this --set")
    specs = []
    for options in values:  # each value alone, so that a bad one is found whatever the other axes hold
        for setting in options:
            _check_alone(setting, shared, get_preset(preset), reader)
    for combination in itertools.product(*values):
        settings = list(combination)
        specs.append((_auto_label(settings), settings, settings[-1].where))
    return specs


def _auto_label(settings: list[_Setting]) -> str:
    parts = []
    for setting in settings:
        if setting.key == BASELINE:
            parts.append(BASELINE if setting.value else "arlon")
        else:
            value = ",".join(map(str, setting.value)) if isinstance(setting.value, (list, tuple)) else setting.value
            group, _, name = setting.key.rpartition(".")
            short = group.split(".")[0] if name in GENERIC_FIELD_NAMES and group else name
            parts.append(f"{short}={value}")
    return " ".join(parts) or "base"


# ---------------------------------------------------------------------------------------------
# Applying settings
# ---------------------------------------------------------------------------------------------


@dataclass
class _Resolved:
    """A cell under construction."""

    config: ArlonConfig
    data: DataConfig
    train: list[_Setting]  # train.<stage>.<field> settings, applied in order to each stage's recipe
    is_baseline: bool


def _apply(target: _Resolved, setting: _Setting, reader: _Reader) -> bool:
    key, value = setting.key, setting.value
    try:
        if key == BASELINE:
            if not isinstance(value, bool):
                raise ConfigError(f"expected true or false, got {value!r}")
            target.is_baseline = value
        elif key.startswith("train."):
            stage, _, name = key.removeprefix("train.").partition(".")
            if stage not in (ALL_STAGES, *STAGES):
                close = difflib.get_close_matches(stage, (ALL_STAGES, *STAGES), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown stage {stage!r}{hint} (use train.<stage>.<field> with {ALL_STAGES}, {', '.join(STAGES)})")
            fields = [f.name for f in dataclasses.fields(TrainConfig)]
            if name not in fields:
                raise ConfigError(_unknown_field(f"train.{stage}.{name}", name, fields))
            _coerce_recipe_field(key, name, TrainConfig(steps=0), value)
            target.train.append(setting)
        elif key.startswith("data."):
            name = key.removeprefix("data.")
            fields = [f.name for f in dataclasses.fields(DataConfig)]
            if name not in fields:
                raise ConfigError(_unknown_field(key, name, fields))
            value = coerce(key, getattr(target.data, name), value)
            if name in DATA_RANGES:
                check_range(key, value, DATA_RANGES[name])
            target.data = dataclasses.replace(target.data, **{name: value})
        else:
            target.config = _set_field(target.config, key, value)
    except ConfigError as err:
        _add_issue(reader, setting, str(err))
        return False
    return True


def _check_alone(setting: _Setting, shared: _Resolved, preset: ArlonConfig, reader: _Reader) -> None:
    """Report a config value that is invalid whatever else its cell sets: tried on the base, and on
    the bare preset when the base itself is invalid."""
    for config in (shared.config, preset):
        trial = _Resolved(config, shared.data, list(shared.train), False)
        if not _apply(trial, setting, reader):
            return
        try:
            trial.config.validate()
            return
        except ConfigError as err:
            if setting.key in str(err):
                _add_issue(reader, setting, str(err))
                return


def _coerce_recipe_field(key: str, name: str, recipe: TrainConfig, value: Any) -> Any:
    if name == "steps" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"expected an integer, got {value!r}")
    value = coerce(key, getattr(recipe, name), value)
    if name in RECIPE_RANGES:
        check_range(key, value, RECIPE_RANGES[name])
    return value


def _set_field(config: ArlonConfig, key: str, value: Any) -> ArlonConfig:
    try:
        current = get_field(config, key)
    except ConfigError:
        raise ConfigError(_unknown_field(key, key, config_fields(config))) from None
    value = coerce(key, current, value)
    allowed = field_range(config, key)
    if allowed is not None:
        check_range(key, value, allowed)
    return replace_field(config, key, value)


def _unknown_field(key: str, name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {key!r}{hint}"


def config_fields(config: Any, prefix: str = "") -> list[str]:
    """Every dotted field path of a config dataclass: ["video.num_frames", ...]."""
    paths = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            paths.extend(config_fields(value, f"{prefix}{f.name}."))
        else:
            paths.append(f"{prefix}{f.name}")
    return paths


def _recipes(config: ArlonConfig, train: list[_Setting]) -> tuple[tuple[str, TrainConfig], ...]:
    """The recipe of every stage `config` trains itself: the preset's default with the train settings."""
    recipes = []
    for stage in stages_for(config):
        recipe = default_train_config(stage, config)
        for setting in train:
            target, _, name = setting.key.removeprefix("train.").partition(".")
            if target in (ALL_STAGES, stage):
                recipe = dataclasses.replace(recipe, **{name: _coerce_recipe_field(setting.key, name, recipe, setting.value)})
        if recipe.steps is None:
            raise ConfigError(
                f"train.{stage}.steps is not set (the paper reports no step count for preset {config.name!r}): "
                f"add it to the grid's train block or pass --set train.{stage}.steps=N"
            )
        recipes.append((stage, recipe.validate(stage)))
    return tuple(recipes)


def _make_cell(
    label: str, settings: list[_Setting], where: KeyPath, shared: _Resolved, base: list[_Setting], reader: _Reader
) -> Cell | None:
    cell = _Resolved(shared.config, shared.data, list(shared.train), False)
    ok = all([_apply(cell, setting, reader) for setting in settings])
    if not ok:
        return None
    try:
        config = cell.config.validate()
        recipes = _recipes(config, cell.train)
    except ConfigError as err:
        # Point at the setting the message names (the cell's own first), else at the cell.
        blamed = next((s for s in [*settings, *reversed(base)] if s.key in str(err)), None)
        if blamed is None:
            reader.add(where, f"cell {label!r}: {err}")
        else:  # the same issue for every cell the setting is part of, reported once
            _add_issue(reader, blamed, str(err))
        return None
    values = tuple((s.key, tuple(s.value) if isinstance(s.value, list) else s.value) for s in settings)
    return Cell(label, config, cell.is_baseline, recipes, cell.data, values)
