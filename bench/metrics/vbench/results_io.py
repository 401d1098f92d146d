"""VBench files in and out: `export-vbench`, `import-vbench`, and the leaderboard's summary scores.

- `export_run(store, grid, prompts, directory)`: one folder per cell with the run's videos named as
  VBench's standard mode expects, `{prompt}-{i}.mp4` (VBench's `prompts/README.md`), a `prompt_file.json`
  ({file name: prompt}, for `--prompt_file` in custom-input mode) and `arlon_export.json`, which maps
  every file back to its run, cell and video so that results can come back.
- `import_results(path, store=None)`: reads a VBench `*_eval_results.json` (`VBench.evaluate`:
  dimension -> [aggregate, [per-video dict, ...]], VBench-Long: [aggregate, per-clip, per-video])
  and writes each per-video result into the run's store as that dimension's score, keyed exactly
  like a score the "vbench" backend computes for the same video bytes (not into the shared score
  cache: which weights produced them is unknown).
- `leaderboard_scores(aggregates)`: Quality, Semantic and Total with the leaderboard's constants
  (`scripts/constant.py`): (score - Min) / (Max - Min) x weight, Quality = sum / 6.5 over its seven
  dimensions, Semantic = sum / 9 over its nine, Total = (4 Quality + Semantic) / 5; a dimension
  that was not scored counts as 0 before normalising, as `cal_final_score.py` does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from arlon.checkpoints.io import atomic_write_json, ensure_dir, read_json
from arlon.errors import CorruptFileError
from arlon.training.cache import link_or_copy
from bench.errors import BenchError
from bench.executors.work import ScoreUnit, score_key, score_record
from bench.grids import Grid
from bench.metrics.registry import METRICS, MetricValue
from bench.metrics.vbench.dimensions import DIMENSIONS
from bench.prompts import BenchPrompt
from bench.results import finished_videos
from bench.store import RunStore, owning_run

EXPORT_MANIFEST = "arlon_export.json"
PROMPT_FILE = "prompt_file.json"
MAX_NAME_BYTES = 240  # file systems allow 255; leaves room for "-<i>.mp4"

# dimension -> (Min, Max, weight, group), `scripts/constant.py` of VBench.
LEADERBOARD: dict[str, tuple[float, float, float, str]] = {
    "subject_consistency": (0.1462, 1.0, 1.0, "Quality"),
    "background_consistency": (0.2615, 1.0, 1.0, "Quality"),
    "temporal_flickering": (0.6293, 1.0, 1.0, "Quality"),
    "motion_smoothness": (0.706, 0.9975, 1.0, "Quality"),
    "dynamic_degree": (0.0, 1.0, 0.5, "Quality"),
    "aesthetic_quality": (0.0, 1.0, 1.0, "Quality"),
    "imaging_quality": (0.0, 1.0, 1.0, "Quality"),
    "object_class": (0.0, 1.0, 1.0, "Semantic"),
    "multiple_objects": (0.0, 1.0, 1.0, "Semantic"),
    "human_action": (0.0, 1.0, 1.0, "Semantic"),
    "color": (0.0, 1.0, 1.0, "Semantic"),
    "spatial_relationship": (0.0, 1.0, 1.0, "Semantic"),
    "scene": (0.0, 0.8222, 1.0, "Semantic"),
    "appearance_style": (0.0009, 0.2855, 1.0, "Semantic"),
    "temporal_style": (0.0, 0.364, 1.0, "Semantic"),
    "overall_consistency": (0.0, 0.364, 1.0, "Semantic"),
}
QUALITY_DIVISOR, SEMANTIC_DIVISOR = 6.5, 9.0
QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4.0, 1.0


@dataclass(frozen=True)
class LeaderboardScores:
    quality: float
    semantic: float
    total: float
    normalised: dict[str, float]
    missing: tuple[str, ...]  # dimensions counted as 0 (not scored)


def leaderboard_scores(aggregates: dict[str, float]) -> LeaderboardScores:
    """Quality / Semantic / Total (fractions; the leaderboard shows them as percentages)."""
    normalised, missing = {}, []
    for dimension, (low, high, weight, _) in LEADERBOARD.items():
        score = aggregates.get(dimension)
        if score is None:
            missing.append(dimension)
            score = 0.0
        normalised[dimension] = (float(score) - low) / (high - low) * weight
    quality = sum(v for d, v in normalised.items() if LEADERBOARD[d][3] == "Quality") / QUALITY_DIVISOR
    semantic = sum(v for d, v in normalised.items() if LEADERBOARD[d][3] == "Semantic") / SEMANTIC_DIVISOR
    total = (QUALITY_WEIGHT * quality + SEMANTIC_WEIGHT * semantic) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)
    return LeaderboardScores(quality, semantic, total, normalised, tuple(missing))


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def vbench_file_stem(prompt: BenchPrompt) -> str:
    """The prompt itself (VBench's standard naming) when it can be a file name, else its id."""
    text = prompt.text
    if "/" in text or "\0" in text or len(text.encode()) > MAX_NAME_BYTES or text.strip() != text or not text:
        return prompt.id
    return text


def export_run(store: RunStore, grid: Grid, prompts: list[BenchPrompt], directory: str | os.PathLike) -> dict[str, int]:
    """Write `<directory>/<cell-id>/{prompt}-{i}.mp4` (hard links when possible); {cell id: videos}."""
    inside = owning_run(directory)
    if inside is not None:  # a run folder holds only what its run writes (bench/store.py)
        raise BenchError(f"{directory} is inside the run {inside}; export to a folder outside any run folder")
    root = ensure_dir(directory)
    counts = {}
    for cell in grid.cells:
        folder = ensure_dir(root / cell.id)
        entries, prompt_file = {}, {}
        for prompt, k, video, record in finished_videos(grid, store, cell, prompts):
            name = f"{vbench_file_stem(prompt)}-{k}.mp4"
            link_or_copy(store.video_path(cell.id, video), folder / name)
            entries[name] = {"video": video, "prompt_id": prompt.id, "sample": k, "sha256": record["sha256"]}
            prompt_file[name] = prompt.text
        if entries:
            atomic_write_json(folder / PROMPT_FILE, prompt_file)
            atomic_write_json(
                folder / EXPORT_MANIFEST,
                {"run": str(store.root.resolve()), "cell_id": cell.id, "cell": cell.label, "videos": entries},
            )
        counts[cell.id] = len(entries)
    return counts


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    run: Path | None = None
    aggregates: dict[str, float] = field(default_factory=dict)  # VBench's own aggregate per dimension
    imported: dict[str, int] = field(default_factory=dict)  # dimension -> per-video scores written
    unmatched: list[str] = field(default_factory=list)  # video paths with no exported video behind them
    skipped_dimensions: list[str] = field(default_factory=list)  # not a dimension this harness registers


RESULTS_SHAPE = "VBench's *_eval_results.json holds {dimension: [aggregate, [{video_path, video_results}, ...]]}"
SHOWN_PROBLEMS = 3


def _per_video_entries(value: list) -> list:
    """The per-video list of a result entry: the last list (VBench-Long keeps per-clip first)."""
    lists = [part for part in value[1:] if isinstance(part, list)]
    return lists[-1] if lists else []


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entry_problem(dimension: str, entry: object) -> str | None:
    """What is wrong with one per-video result, or None: the fields `_result_value` reads must be there and numeric."""
    if not isinstance(entry, dict):
        return f"not an object but {type(entry).__name__}"
    if not isinstance(entry.get("video_path"), str) or not entry["video_path"]:
        return "no video_path"
    raw = entry.get("video_results")
    numeric = _is_number(raw) or (dimension == "dynamic_degree" and isinstance(raw, bool))
    if not numeric:
        return f"video_results {raw!r} is not a number ({entry['video_path']})"
    for weight in ("cnt_per_video", "frame_count"):
        if entry.get(weight) is not None and not _is_number(entry[weight]):
            return f"{weight} {entry[weight]!r} is not a number ({entry['video_path']})"
    return None


def check_results(path: Path, results: object) -> None:
    """BenchError naming the file and the first malformed entries, before anything is imported."""
    if not isinstance(results, dict):
        raise BenchError(f"{path}: not a VBench results file; {RESULTS_SHAPE}")
    problems = []
    for dimension, value in results.items():
        if dimension not in DIMENSIONS:
            continue  # reported as skipped, never read
        if not isinstance(value, list) or not value:
            problems.append(f"{dimension}: {type(value).__name__} instead of [aggregate, [...]]")
            continue
        if not any(isinstance(part, list) for part in value[1:]):
            problems.append(f"{dimension}: no list of per-video results")
            continue
        for index, entry in enumerate(_per_video_entries(value)):
            problem = _entry_problem(dimension, entry)
            if problem is not None:
                problems.append(f"{dimension} entry {index}: {problem}")
    if problems:
        more = f" (+{len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise BenchError(
            f"{path}: {len(problems)} malformed result(s), nothing imported: "
            + "; ".join(problems[:SHOWN_PROBLEMS]) + f"{more}; {RESULTS_SHAPE}"
        )


def _result_value(dimension: str, entry: dict, frames: int | None) -> MetricValue:
    raw = entry["video_results"]
    if dimension == "dynamic_degree" and isinstance(raw, bool):
        return MetricValue(1.0 if raw else 0.0)
    weight = None
    if dimension == "background_consistency":
        weight = entry.get("cnt_per_video")
    elif dimension in ("scene", "object_class"):
        weight = entry.get("frame_count")
    if weight is None and DIMENSIONS[dimension].aggregation == "pair_weighted_mean" and frames is not None:
        weight = frames - 1
    if weight is None and DIMENSIONS[dimension].aggregation == "frame_weighted_mean" and frames is not None:
        weight = frames
    return MetricValue(float(raw), None if weight is None else float(weight), {"imported": True})


EXPORT_HINT = "export the run again with `arlon-bench export-vbench`"


def _manifest_for(video_path: Path, cache: dict[Path, dict | None]) -> dict | None:
    folder = video_path.parent
    if folder not in cache:
        manifest = folder / EXPORT_MANIFEST
        cache[folder] = _read_export_manifest(manifest) if manifest.is_file() else None
    return cache[folder]


def _read_export_manifest(path: Path) -> dict:
    """An export's `arlon_export.json`, checked for what the import reads; CorruptFileError naming it otherwise."""
    manifest = read_json(path, EXPORT_HINT)
    if not isinstance(manifest, dict) or not all(isinstance(manifest.get(key), str) for key in ("run", "cell_id")):
        raise CorruptFileError(f"{path}: not an export manifest (expected run, cell_id and videos); {EXPORT_HINT}")
    videos = manifest.get("videos")
    fields = ("video", "prompt_id", "sample", "sha256")
    if not isinstance(videos, dict) or not all(isinstance(v, dict) and all(f in v for f in fields) for v in videos.values()):
        raise CorruptFileError(f"{path}: its videos lack {', '.join(fields)}; {EXPORT_HINT}")
    return manifest


def import_results(
    path: str | os.PathLike, store: RunStore | None = None, export_dir: str | os.PathLike | None = None
) -> ImportSummary:
    """Write the per-video results of a VBench results file into the run's store (see the module
    docstring). Videos are matched through the `arlon_export.json` beside them (or in `export_dir`,
    when the results were computed on another machine whose paths differ); the run is the one the
    export names unless `store` is given."""
    from arlon.data.video_io import probe_video

    if not Path(path).is_file():
        raise BenchError(f"{path}: no such file (give VBench's *_eval_results.json)")
    try:
        results = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchError(f"{path}: not JSON ({err}); give VBench's *_eval_results.json") from None
    check_results(Path(path), results)
    summary = ImportSummary()
    manifests: dict[Path, dict | None] = {}
    records_by_cell: dict[tuple[str, str], list[dict]] = {}  # (run folder, cell id) -> records
    stores: dict[str, RunStore] = {}
    for dimension, value in results.items():
        if not isinstance(value, list) or not value:
            continue
        summary.aggregates[dimension] = value[0]
        if dimension not in DIMENSIONS:
            summary.skipped_dimensions.append(dimension)
            continue
        spec = METRICS.get(dimension)
        for entry in _per_video_entries(value):
            video_path = Path(entry["video_path"])
            if export_dir is not None:
                candidates = list(Path(export_dir).glob(f"*/{video_path.name}")) + [Path(export_dir) / video_path.name]
                video_path = next((c for c in candidates if (c.parent / EXPORT_MANIFEST).is_file()), video_path)
            manifest = _manifest_for(video_path, manifests)
            exported = manifest["videos"].get(video_path.name) if manifest else None
            if exported is None:
                summary.unmatched.append(str(entry["video_path"]))
                continue
            run_store = store or stores.setdefault(manifest["run"], RunStore(manifest["run"]))
            summary.run = run_store.root
            cell_id = manifest["cell_id"]
            record = run_store.video_record(cell_id, exported["video"])
            if record is None or record["sha256"] != exported["sha256"]:
                summary.unmatched.append(str(entry["video_path"]))  # regenerated since the export
                continue
            frames = None
            if dimension in ("subject_consistency", "scene", "object_class"):
                frames = probe_video(run_store.video_path(cell_id, exported["video"]))[0]
            metric_value = _result_value(dimension, entry, frames)
            unit = ScoreUnit(cell_id, exported["video"], exported["prompt_id"], exported["sample"], dimension,
                             score_key(record, dimension, exported["prompt_id"]), "vbench")
            records_by_cell.setdefault((str(run_store.root), cell_id), []).append(score_record(unit, metric_value))
            summary.imported[dimension] = summary.imported.get(dimension, 0) + 1
    for (root, cell_id), records in records_by_cell.items():
        target = store if store is not None else stores[root]
        with target.lock():
            target.add_scores(cell_id, records)
    return summary
