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
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from arlon.data.toyworld import SceneSpec, prompt_set
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

    kind: str = "toyworld"  # key of PROMPT_SETS: toyworld, vbench, csv, text
    split: str = "heldout"  # toyworld: "heldout" (unseen colour-shape-motion triples) or "train"
    n: int = 16  # toyworld: number of prompts
    seed: int = 0  # toyworld: the world's seed (which prompts exist)
    path: str | None = None  # vbench / csv / text: the local file (or VBench's per-dimension folder)
    column: str | None = None  # csv: the caption column (default: "text", else "caption")
    dimensions: tuple[str, ...] = ()  # vbench: keep the prompts of these dimensions (default: all)


@dataclass(frozen=True)
class BenchPrompt:
    """One prompt of a benchmark. `scene` is the toy world's ground truth (None for real prompts)."""

    id: str
    text: str
    scene: SceneSpec | None = None
    dimensions: tuple[str, ...] = ()  # VBench dimensions the prompt is listed under
    auxiliary: dict = field(default_factory=dict, compare=False)  # VBench's auxiliary_info


PROMPT_SETS: Registry[Callable[[PromptSetConfig], list[BenchPrompt]]] = Registry("prompt set")


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
            kept[prompt.id] = BenchPrompt(first.id, first.text, first.scene, merged, first.auxiliary)
    return list(kept.values())


def _require_path(cfg: PromptSetConfig) -> Path:
    if not cfg.path:
        raise BenchError(f"prompts: kind {cfg.kind!r} reads a file; set prompts.path")
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise BenchError(f"prompts.path {str(path)!r}: no such file or folder")
    return path


@PROMPT_SETS.register("toyworld")
def toyworld_prompts(cfg: PromptSetConfig) -> list[BenchPrompt]:
    """`n` prompts of the toy world's `split`, each with its scene (what the toy_* metrics judge)."""
    if cfg.n < 1:
        raise BenchError(f"prompts.n must be at least 1, got {cfg.n}")
    try:
        toys = prompt_set(cfg.split, cfg.n, seed=cfg.seed)
    except ConfigError as err:
        raise BenchError(f"prompts.split: {err}") from None
    return [BenchPrompt(p.id, p.caption, p.scene) for p in toys]


@PROMPT_SETS.register("vbench")
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


@PROMPT_SETS.register("csv")
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
        texts = [(row.get(column) or "").strip() for row in reader]
    return _unique([BenchPrompt(text_prompt_id(t), t) for t in texts if t])


@PROMPT_SETS.register("text")
def text_prompts(cfg: PromptSetConfig) -> list[BenchPrompt]:
    """A plain text file, one prompt per line (blank lines skipped)."""
    path = _require_path(cfg)
    if path.is_dir():
        raise BenchError(f"prompts.path {str(path)!r} is a folder; kind 'text' reads one file of prompts")
    return _unique([BenchPrompt(text_prompt_id(line), line) for line in _text_lines(path)])


def _text_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise BenchError(f"{path}: not a UTF-8 text file ({err})") from None
    return [line.strip() for line in lines if line.strip()]


def load_prompts(cfg: PromptSetConfig, limit: int | None = None) -> list[BenchPrompt]:
    """The prompts of `cfg` in file order; `limit` keeps the first N (smoke runs)."""
    try:
        loader = PROMPT_SETS.get(cfg.kind)
    except ConfigError as err:
        raise BenchError(f"prompts.kind: {err}") from None
    if limit is not None and limit < 1:
        raise BenchError(f"--limit must be at least 1, got {limit}")
    prompts = loader(cfg)
    if not prompts:
        where = f" {cfg.path}" if cfg.path else ""
        raise BenchError(f"prompts: the {cfg.kind} prompt set{where} is empty")
    return prompts[:limit] if limit is not None else prompts
