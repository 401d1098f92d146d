"""The results table of a run: one row per cell, one column per metric, with the per-video scores
behind it.

Each metric gets three columns: `<metric>` (the metric's aggregation of its per-video values, the
mean for every toy-world metric) and `<metric>_low` / `<metric>_high`, the 95% percentile-bootstrap
interval of the mean, resampling prompts with all their videos (`bench.stats.cluster_bootstrap_mean`;
blank for other aggregations).
Videos where a metric does not apply (None, e.g. no reference video) are left out of its column.
Only scores whose key matches the video now in the store count, so a regenerated video's old
scores never leak into the table.
"""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path
from typing import Iterator

import pandas as pd

from arlon.checkpoints.io import atomic_write_bytes
from bench.executors.work import score_key, seed_for
from bench.grids import Grid
from bench.metrics import METRICS, aggregate
from bench.prompts import BenchPrompt
from bench.stats import cluster_bootstrap_mean
from bench.store import RunStore

SCORE_COLUMNS = ("cell", "cell_id", "video", "prompt_id", "sample", "metric", "value", "weight")


def finished_videos(grid: Grid, store: RunStore, cell, prompts: list[BenchPrompt]) -> Iterator[tuple[BenchPrompt, int, str, dict]]:
    """(prompt, k, video, video record) for each video of `cell` over `prompts` that is finished in the store."""
    for prompt in prompts:
        for k in range(grid.samples_per_prompt):
            video = f"{prompt.id}-{k}"
            record = store.video_record(cell.id, video, seed_for(prompt.id, k, grid.seed))
            if record is not None:
                yield prompt, k, video, record


def current_scores(grid: Grid, store: RunStore, cell, prompts: list[BenchPrompt]) -> Iterator[tuple[BenchPrompt, int, str, dict]]:
    """(prompt, k, video, {metric: stored score}) for each finished video of `cell`, keeping only the
    scores whose key matches the video as it is now (a regenerated video invalidates its old scores)."""
    stored = {(r["video"], r["metric"]): r for r in store.read_scores(cell.id)}
    for prompt, k, video, record in finished_videos(grid, store, cell, prompts):
        scores = {}
        for metric in grid.metrics:
            score = stored.get((video, metric))
            if score is not None and score.get("key") == score_key(record, metric, prompt.id):
                scores[metric] = score
        yield prompt, k, video, scores


def collect_scores(grid: Grid, store: RunStore, prompts: list[BenchPrompt]) -> pd.DataFrame:
    """Every current per-video score of the grid's cells over `prompts` (long format, SCORE_COLUMNS)."""
    rows = [
        (cell.label, cell.id, video, prompt.id, k, metric, score["value"], score.get("weight"))
        for cell in grid.cells
        for prompt, k, video, scores in current_scores(grid, store, cell, prompts)
        for metric, score in scores.items()
    ]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def results_table(grid: Grid, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: its label, id, the settings its row or axes give it, the number of videos
    scored, and per metric the aggregate with its 95% interval."""
    rows = []
    for cell in grid.cells:
        settings = dict(cell.settings)
        row: dict = {"cell": cell.label, "cell_id": cell.id, "baseline": cell.is_baseline}
        for key in grid.varying_keys:
            if key == "baseline":
                continue  # its own column
            value = settings.get(key)
            row[key] = ",".join(map(str, value)) if isinstance(value, tuple) else value
        mine = scores[scores["cell_id"] == cell.id]
        row["videos"] = int(mine["video"].nunique())
        for metric in grid.metrics:
            spec = METRICS.get(metric)
            scored = mine[(mine["metric"] == metric) & mine["value"].notna()]
            values = [float(v) for v in scored["value"]]
            weights = [None if w is None or _is_nan(w) else float(w) for w in scored["weight"]]  # VBench's weighted rules
            value = aggregate(values, spec, weights if any(w is not None for w in weights) else None) if values else math.nan
            low = high = math.nan
            if values and spec.aggregation == "mean":
                estimate = cluster_bootstrap_mean(values, list(scored["prompt_id"]), name=metric)
                low, high = estimate.low, estimate.high
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = value, low, high
        rows.append(row)
    return pd.DataFrame(rows)


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def markdown_table(grid: Grid, table: pd.DataFrame) -> str:
    """The table as Markdown: `mean [low, high]` per metric, an arrow for the better direction."""
    header = ["cell", "videos"] + [f"{m} {'↑' if METRICS.get(m).higher_is_better else '↓'}" for m in grid.metrics]
    lines = [
        f"# {grid.name}" + (f": {grid.description}" if grid.description else ""),
        "",
        f"{grid.samples_per_prompt} video(s) per prompt, prompts: {grid.prompts.kind}; "
        "mean over videos with its 95% bootstrap interval over prompts.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for _, row in table.iterrows():
        cells = [str(row["cell"]), str(row["videos"])]
        cells += [format_estimate(row[m], row[f"{m}_low"], row[f"{m}_high"]) for m in grid.metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_estimate(value, low, high, digits: int = 3) -> str:
    if value is None or _is_nan(value):
        return "-"
    if low is None or _is_nan(low) or high is None or _is_nan(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def write_results(grid: Grid, store: RunStore, table: pd.DataFrame, scores: pd.DataFrame) -> dict[str, Path]:
    """results.csv, results.md, scores.csv, and results.parquet when pyarrow is importable."""
    files = {
        "results.csv": atomic_write_bytes(store.root / "results.csv", table.to_csv(index=False).encode()),
        "results.md": atomic_write_bytes(store.root / "results.md", markdown_table(grid, table).encode()),
        "scores.csv": atomic_write_bytes(store.root / "scores.csv", scores.to_csv(index=False).encode()),
    }
    if importlib.util.find_spec("pyarrow") is None:  # Parquet is optional
        return files
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    files["results.parquet"] = atomic_write_bytes(store.root / "results.parquet", buffer.getvalue())
    return files
