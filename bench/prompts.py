"""Prompt sets for the benchmark: the toy world's held-out prompts, VBench prompt lists, Open-Sora /
OpenVid CSVs and plain text files, each behind one key of `PROMPT_SETS`.

Every prompt has an id that is stable (the same text gives the same id on every machine and in
every run) and safe as a file name, because videos are stored as `<prompt-id>-<k>.mp4` and seeds
are derived from it. Toy-world ids come with the prompt (`toy_heldout_0_00003`); a text prompt's
id is a slug of its first words plus a short hash of the whole text, so two prompts that share a
beginning never collide. Repeated prompts in a file are kept once (the first occurrence).

Files (VBench JSON, CSV, text) are read from local paths only; VBench's prompt list is the
`VBench_full_info.json` of the VBench repository (a list of {"prompt_en", "dimension": [...],
"auxiliary_info": {...}}) or its `prompts_per_dimension/` folder of `<dimension>.txt` files.

Each kind reads only some fields of `PromptSetConfig` (`PROMPT_SET_FIELDS`); setting another one
(`{kind: toyworld, path: my_prompts.txt}`) is an error, not a silently ignored setting.

A text file of toy-world captions gets the toy judges: each line that parses in the toy world's
caption grammar (`arlon.data.toyworld.caption_scene`) carries a scene, as a toy-world prompt does.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from arlon.config import AT_LEAST_ONE, NON_NEGATIVE, check_range
from arlon.data.toyworld import (
    CaptionError,
    SceneSpec,
    ToyTimeline,
    caption_scene,
    long_timeline,
    progressive_prompt_set,
    progressive_timeline,
    prompt_set,
)
from arlon.errors import ConfigError
from arlon.registry import Registry
from bench.errors import BenchError

SLUG_WORDS = 8  # words of the prompt kept in its id
SLUG_CHARS = 48
HASH_CHARS = 8
CSV_TEXT_COLUMNS = ("text", "caption")  # Open-Sora writes "text", OpenVid "caption"


@dataclass(frozen=True)
class PromptSetConfig:
    """Which prompts a grid generates videos for (the `prompts:` block of a grid file)."""

    kind: str = "toyworld"  # key of PROMPT_SETS: toyworld, toyworld_long, vbench, csv, text
    split: str = "heldout"  # toyworld(_long): "heldout" (unseen colour-shape-motion triples) or "train"
    n: int = 16  # toyworld(_long): number of prompts
    seed: int = 0  # toyworld(_long): the world's seed (which prompts exist)
    frames: int = 64  # toyworld_long: pixel frames of each video
    parts: tuple[int, ...] = (1, 2)  # toyworld_long: prompt i has parts[i % len(parts)] parts (2: progressive)
    path: str | None = None  # vbench / csv / text: the local file (or VBench's per-dimension folder)
    column: str | None = None  # csv: the caption column (default: "text", else "caption")
    dimensions: tuple[str, ...] = ()  # vbench: keep the prompts of these dimensions (default: all)

    def validate(self) -> "PromptSetConfig":
        """The kind is known, every field it does not read keeps its default, n and seed are in range."""
        if self.kind not in PROMPT_SETS:
            raise BenchError(f"prompts.kind: {PROMPT_SETS.unknown_key_message(self.kind)}")
        defaults = PromptSetConfig()
        for f in dataclasses.fields(self):
            if f.name != "kind" and getattr(self, f.name) != getattr(defaults, f.name):
                check_prompt_field(self.kind, f.name)
        try:
            for name, allowed in PROMPT_RANGES.items():
                check_range(f"prompts.{name}", getattr(self, name), allowed)
        except ConfigError as err:
            raise BenchError(str(err)) from None
        return self


PROMPT_RANGES = {"n": AT_LEAST_ONE, "seed": NON_NEGATIVE, "frames": AT_LEAST_ONE}
LONG_PROMPT_PARTS = (1, 2)  # the toy world's progressive scenes have two parts


@dataclass(frozen=True)
class PromptPart:
    """One part of a long or progressive prompt: its text and how many pixel frames it lasts."""

    text: str
    frames: int


@dataclass(frozen=True)
class BenchPrompt:
    """One prompt of a benchmark. `scene` is the toy world's ground truth of a clip (None for real
    prompts); `line` the line of its file where it comes from one (text and CSV files).

    A long-video prompt has `parts`: one part is a long video of one prompt, several parts a
    progressive-prompt video (section 4.5), generated as one video of sum(part frames) frames. A toy
    long prompt carries its ground truth as a `timeline`."""

    id: str
    text: str
    scene: SceneSpec | None = None
    dimensions: tuple[str, ...] = ()  # VBench dimensions the prompt is listed under
    auxiliary: dict = field(default_factory=dict, compare=False)  # VBench's auxiliary_info
    line: int | None = field(default=None, compare=False)
    parts: tuple[PromptPart, ...] = ()
    timeline: ToyTimeline | None = None

    @property
    def num_frames(self) -> int | None:
        """Pixel frames of a long-video prompt (None for a clip prompt)."""
        return sum(part.frames for part in self.parts) if self.parts else None

    def toy_timeline(self, num_frames: int) -> ToyTimeline | None:
        """The toy ground truth of a `num_frames`-frame video of this prompt: its own timeline, or its
        scene shown for that long; None for a prompt outside the toy world."""
        if self.timeline is not None:
            return self.timeline
        return None if self.scene is None else long_timeline(self.scene, num_frames)


PROMPT_SETS: Registry[Callable[[PromptSetConfig], list[BenchPrompt]]] = Registry("prompt set")
# The PromptSetConfig fields each kind reads (besides `kind`), declared where the kind registers.
PROMPT_SET_FIELDS: dict[str, tuple[str, ...]] = {}


def _prompt_set(kind: str, fields: tuple[str, ...]) -> Callable:
    """Register a prompt-set loader under `kind`, with the fields it reads."""

    def decorator(loader: Callable[[PromptSetConfig], list[BenchPrompt]]) -> Callable[[PromptSetConfig], list[BenchPrompt]]:
        PROMPT_SET_FIELDS[kind] = fields
        return PROMPT_SETS.register(kind)(loader)

    return decorator


def check_prompt_field(kind: str, name: str) -> None:
    """BenchError unless prompt-set `kind` reads the field `name`: says which kinds do, or the field
    meant when there is no such field (of an unknown kind, only the field's name is checked)."""
    known = [f.name for f in dataclasses.fields(PromptSetConfig)]
    reads = PROMPT_SET_FIELDS.get(kind, ())
    if name in reads or name == "kind" or (kind not in PROMPT_SET_FIELDS and name in known):
        return
    if name not in known:
        close = difflib.get_close_matches(name, [*reads, *known], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        reading = f" (kind {kind!r} reads {_listed(reads)})" if kind in PROMPT_SET_FIELDS else ""
        raise BenchError(f"prompts.{name}: unknown field{hint}{reading}")
    others = [other for other, fields in PROMPT_SET_FIELDS.items() if name in fields]
    hint = f"; did you mean kind {_listed(others, 'or')}?" if others else ""
    raise BenchError(f"prompts.{name}: kind {kind!r} does not read it (it reads {_listed(reads)}){hint}")


def _listed(items, last: str = "and") -> str:
    items = [repr(i) if last == "or" else str(i) for i in items]
    return ", ".join(items[:-1]) + f" {last} " + items[-1] if len(items) > 1 else "".join(items) or "nothing"


def text_prompt_id(text: str) -> str:
    """`a-red-circle-moves-from-left-to-right-on-1f3a9c2e`: slug of the first words + sha256 prefix."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:SLUG_WORDS]
    slug = "-".join(words)[:SLUG_CHARS].strip("-") or "prompt"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]}"


def _unique(prompts: list[BenchPrompt]) -> list[BenchPrompt]:
    """Keep the first prompt of each id, merging the VBench dimensions of repeats."""
    kept: dict[str, BenchPrompt] = {}
    for prompt in prompts:
        first = kept.get(prompt.id)
        if first is None:
            kept[prompt.id] = prompt
        elif prompt.dimensions:
            merged = tuple(dict.fromkeys(first.dimensions + prompt.dimensions))
            kept[prompt.id] = dataclasses.replace(first, dimensions=merged)
    return list(kept.values())


# `prompts.path: vbench:VBench_full_info.json` names a file of the vbench package in the official VBench
# environment (`arlon-bench vbench setup`): VBench's own prompt suite, which the package ships.
VBENCH_PACKAGE_PREFIX = "vbench:"


def vbench_package_file(name: str) -> Path:
    """The file `name` of the vbench package installed in the official VBench environment."""
    from bench.metrics.vbench.env import SETUP_HINT, environment_dir

    found = sorted(environment_dir().glob(f"lib/python*/site-packages/vbench/{name}"))
    if not found:
        raise BenchError(f"prompts.path {VBENCH_PACKAGE_PREFIX}{name}: no such file in the VBench environment at {environment_dir()}; {SETUP_HINT}")
    return found[-1]


def _require_path(cfg: PromptSetConfig) -> Path:
    if not cfg.path:
        raise BenchError(f"prompts: kind {cfg.kind!r} reads a file; set prompts.path")
    if cfg.path.startswith(VBENCH_PACKAGE_PREFIX):
        return vbench_package_file(cfg.path.removeprefix(VBENCH_PACKAGE_PREFIX))
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise BenchError(f"prompts.path {str(path)!r}: no such file or folder")
    return path


@_prompt_set("toyworld", ("split", "n", "seed"))
def toyworld_prompts(cfg: PromptSetConfig) -> list[BenchPrompt]:
    """`n` prompts of the toy world's `split`, each with its scene (what the toy_* metrics judge)."""
    try:
        toys = prompt_set(cfg.split, cfg.n, seed=cfg.seed)
    except ConfigError as err:
        raise BenchError(f"prompts.split: {err}") from None
    return [BenchPrompt(p.id, p.caption, p.scene) for p in toys]


@_prompt_set("toyworld_long", ("split", "n", "seed", "frames", "parts"))
def toyworld_long_prompts(cfg: PromptSetConfig) -> list[BenchPrompt]:
    """`n` long-video prompts of the toy world's `split`, `frames` pixel frames each, with their
    ground truth (`timeline`). Prompt i has parts[i % len(parts)] parts: one part is a long video of
    one scene (`toy_long_<split>_<seed>_<i>`, the scene of toy prompt i, which the clip judges read
    over the whole video); two parts are a
    progressive-prompt video whose primary object changes its motion (and perhaps colour) halfway
    (`toy_progressive_<split>_<seed>_<i>`, `arlon.data.toyworld.progressive_prompt_set`)."""
    wrong = [p for p in cfg.parts if p not in LONG_PROMPT_PARTS]
    if not cfg.parts or wrong:
        raise BenchError(f"prompts.parts: expected a list of part counts from {list(LONG_PROMPT_PARTS)}, got {list(cfg.parts)}")
    if 2 in cfg.parts and cfg.frames % 2:
        raise BenchError(f"prompts.frames: a two-part prompt splits its {cfg.frames} frames in halves; use an even number")
    counts = [cfg.parts[i % len(cfg.parts)] for i in range(cfg.n)]
    try:
        clips = prompt_set(cfg.split, cfg.n, seed=cfg.seed) if 1 in counts else []
        progressive = progressive_prompt_set(cfg.split, cfg.n, cfg.seed, frames_per_part=cfg.frames // 2) if 2 in counts else []
    except ConfigError as err:
        raise BenchError(f"prompts.split: {err}") from None
    prompts = []
    for i, count in enumerate(counts):
        if count == 1:
            clip = clips[i]
            prompts.append(
                BenchPrompt(
                    clip.id.replace("toy_", "toy_long_", 1), clip.caption, clip.scene,
                    parts=(PromptPart(clip.caption, cfg.frames),), timeline=long_timeline(clip.scene, cfg.frames),
                )
            )
        else:
            two = progressive[i]
            half = cfg.frames // 2
            prompts.append(
                BenchPrompt(
                    two.id, two.caption, parts=tuple(PromptPart(text, half) for text in two.captions),
                    timeline=progressive_timeline(two.scene, half),
                )
            )
    return prompts


@_prompt_set("vbench", ("path", "dimensions"))
def vbench_prompts(cfg: PromptSetConfig) -> list[BenchPrompt]:
    """VBench's prompts: `VBench_full_info.json`, or a folder of `<dimension>.txt` files."""
    path = _require_path(cfg)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise BenchError(f"prompts.path {str(path)!r}: the folder holds no <dimension>.txt files")
        prompts = [
            BenchPrompt(text_prompt_id(line), line, dimensions=(file.stem,))
            for file in files
            for line in _text_lines(file)
        ]
    else:
        prompts = _vbench_json(path)
    wanted = set(cfg.dimensions)
    if wanted:
        known = {d for p in prompts for d in p.dimensions}
        unknown = sorted(wanted - known)
        if unknown:
            raise BenchError(f"prompts.dimensions: {unknown} not in {path} (it lists: {', '.join(sorted(known))})")
        prompts = [p for p in prompts if wanted & set(p.dimensions)]
    return _unique(prompts)


def _vbench_json(path: Path) -> list[BenchPrompt]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"{path}: not a JSON file ({err})") from None
    if not isinstance(entries, list):
        raise BenchError(f"{path}: expected VBench_full_info.json, a list of {{'prompt_en', 'dimension'}} entries")
    prompts = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt_en"), str):
            raise BenchError(f"{path}: entry {i} has no 'prompt_en' text (expected VBench_full_info.json entries)")
        dimensions = entry.get("dimension", [])
        dimensions = (dimensions,) if isinstance(dimensions, str) else tuple(dimensions)
        text = entry["prompt_en"].strip()
        prompts.append(BenchPrompt(text_prompt_id(text), text, None, dimensions, dict(entry.get("auxiliary_info") or {})))
    return prompts


@_prompt_set("csv", ("path", "column"))
def csv_prompts(cfg: PromptSetConfig) -> list[BenchPrompt]:
    """The caption column of an Open-Sora / OpenVid CSV (`text`, else `caption`, or prompts.column)."""
    path = _require_path(cfg)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        column = cfg.column or next((c for c in CSV_TEXT_COLUMNS if c in columns), None)
        if column is None or column not in columns:
            wanted = repr(cfg.column) if cfg.column else " or ".join(repr(c) for c in CSV_TEXT_COLUMNS)
            raise BenchError(f"{path}: no column {wanted} (columns: {', '.join(columns)}); set prompts.column")
        texts = [(reader.line_num, (row.get(column) or "").strip()) for row in reader]
    return _unique([BenchPrompt(text_prompt_id(t), t, line=number) for number, t in texts if t])


@_prompt_set("text", ("path",))
def text_prompts(cfg: PromptSetConfig) -> list[BenchPrompt]:
    """A plain text file, one prompt per line (blank lines skipped); a line in the toy world's
    caption grammar carries its scene (`toy_scene`)."""
    path = _require_path(cfg)
    if path.is_dir():
        raise BenchError(f"prompts.path {str(path)!r} is a folder; kind 'text' reads one file of prompts")
    prompts = [BenchPrompt(text_prompt_id(text), text, line=number) for number, text in _numbered_lines(path)]
    return [dataclasses.replace(p, scene=toy_scene(p.text)) for p in _unique(prompts)]


def toy_scene(text: str) -> SceneSpec | None:
    """The toy scene a prompt describes, or None when it is not a toy-world caption (`caption_problem` says why)."""
    try:
        return caption_scene(text)
    except CaptionError:
        return None


def caption_problem(text: str) -> str | None:
    """Why `text` is not a toy-world caption the toy judges can score (None when it is one)."""
    try:
        caption_scene(text)
    except CaptionError as err:
        return str(err)
    return None


def _text_lines(path: Path) -> list[str]:
    return [text for _, text in _numbered_lines(path)]


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise BenchError(f"{path}: not a UTF-8 text file ({err})") from None
    return [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]


def load_prompts(cfg: PromptSetConfig, limit: int | None = None) -> list[BenchPrompt]:
    """The prompts of `cfg` in file order; `limit` keeps the first N (smoke runs)."""
    loader = PROMPT_SETS.get(cfg.validate().kind)
    if limit is not None and limit < 1:
        raise BenchError(f"--limit must be at least 1, got {limit}")
    prompts = loader(cfg)
    if not prompts:
        where = f" {cfg.path}" if cfg.path else ""
        raise BenchError(f"prompts: the {cfg.kind} prompt set{where} is empty")
    return prompts[:limit] if limit is not None else prompts
