"""The results table of a run: one row per cell, one column per metric, with the per-video scores
behind it.

Each metric gets four columns: `<metric>` (the metric's aggregation of its per-video values, the
mean for every toy-world metric), `<metric>_low` / `<metric>_high`, the 95% percentile-bootstrap
interval of the mean, resampling prompts with all their videos (`bench.stats.cluster_bootstrap_mean`;
blank for other aggregations), and `<metric>_videos`, the number of videos behind the value.
Videos where a metric does not apply (None, e.g. no reference video) are left out of its column.
Only scores whose key matches the video now in the store count, so a regenerated video's old
scores never leak into the table.

What the table does not rest on is counted by `run_coverage`: videos of the run that are not
generated or cannot be read (named), and finished videos without a current score. `arlon-bench
report` prints it as warnings and exits with code 1 while anything is missing; results.md marks a
mean over fewer videos than the same metric of another cell with its count (`n=13`).
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from arlon.checkpoints.io import atomic_write_bytes
from bench.errors import BenchError
from bench.executors.work import score_key, seed_for
from bench.grids import Grid
from bench.metrics import METRICS, aggregate
from bench.prompts import BenchPrompt
from bench.stats import cluster_bootstrap_mean
from bench.store import NOT_GENERATED, RunStore

SCORE_COLUMNS = ("cell", "cell_id", "video", "prompt_id", "sample", "metric", "value", "weight", "backend")


def cell_videos(grid: Grid, store: RunStore, cell, prompts: list[BenchPrompt]) -> Iterator[tuple[BenchPrompt, int, str, dict | None, str | None]]:
    """(prompt, k, video, its record or None, why it is not finished or None) for every video of `cell` over `prompts`."""
    for prompt in prompts:
        for k in range(grid.samples_per_prompt):
            video = f"{prompt.id}-{k}"
            record, problem = store.check_video(cell.id, video, seed_for(prompt.id, k, grid.seed))
            yield prompt, k, video, record, problem


def finished_videos(grid: Grid, store: RunStore, cell, prompts: list[BenchPrompt]) -> Iterator[tuple[BenchPrompt, int, str, dict]]:
    """(prompt, k, video, video record) for each video of `cell` over `prompts` that is finished in the store."""
    for prompt, k, video, record, _ in cell_videos(grid, store, cell, prompts):
        if record is not None:
            yield prompt, k, video, record


def current_scores(grid: Grid, store: RunStore, cell, prompts: list[BenchPrompt]) -> Iterator[tuple[BenchPrompt, int, str, dict]]:
    """(prompt, k, video, {metric: stored score}) for each finished video of `cell`, keeping only the
    scores whose key matches the video as it is now (a regenerated video invalidates its old scores)."""
    stored = {(r["video"], r["metric"]): r for r in store.read_scores(cell.id)}
    for prompt, k, video, record in finished_videos(grid, store, cell, prompts):
        yield prompt, k, video, _current(grid, stored, video, record, prompt)


def _current(grid: Grid, stored: dict, video: str, record: dict, prompt: BenchPrompt) -> dict:
    scores = {}
    for metric in grid.metrics:
        score = stored.get((video, metric))
        spec = METRICS.get(metric)
        backend = score.get("backend", spec.backend) if score is not None else None
        if backend in spec.backends and score.get("key") == score_key(record, metric, prompt.id, backend):
            scores[metric] = score
    return scores


SHOWN_GAPS = 5  # videos or (cell, metric) pairs named in one warning before "and N more"


@dataclass
class Coverage:
    """What a run's tables rest on, and what they lack (see the module docstring)."""

    videos: int = 0  # the run's videos: cells x prompts x samples
    videos_done: int = 0
    scores: int = 0  # the run's scores: videos x metrics
    scores_done: int = 0
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)  # (cell label, video, why) of damaged videos
    not_generated: Counter = field(default_factory=Counter)  # cell label -> videos never made
    missing_scores: Counter = field(default_factory=Counter)  # (cell label, metric) -> finished videos without a current score

    @property
    def complete(self) -> bool:
        return self.scores_done == self.scores

    def warnings(self, store: RunStore) -> list[str]:
        """One line per kind of gap, counted, naming what is missing and the command that fills it."""
        resume_command, score_command = store.resume_command(), store.score_command()
        lines = []
        if self.unreadable:
            named = "; ".join(f"{cell} {video} ({why})" for cell, video, why in self.unreadable[:SHOWN_GAPS])
            lines.append(
                f"{len(self.unreadable)} of {self.videos} videos cannot be read and are left out of the tables: "
                f"{named}{_more(len(self.unreadable))}; `{resume_command}` makes them again"
            )
        if self.not_generated:
            lines.append(
                f"{sum(self.not_generated.values())} of {self.videos} videos are not generated yet "
                f"({_counts(self.not_generated)}); `{resume_command}` makes them"
            )
        if self.missing_scores:
            pairs = {f"{cell} {metric}": n for (cell, metric), n in self.missing_scores.items()}
            lines.append(
                f"{sum(self.missing_scores.values())} scores of finished videos are missing ({_counts(pairs)}); "
                f"`{score_command}` computes them"
            )
        if lines:
            lines.append(f"the tables rest on {self.videos_done} of {self.videos} videos and {self.scores_done} of {self.scores} scores")
        return lines


def _more(count: int) -> str:
    return f" and {count - SHOWN_GAPS} more" if count > SHOWN_GAPS else ""


def _counts(counts: dict) -> str:
    shown = ", ".join(f"{key}: {n}" for key, n in list(counts.items())[:SHOWN_GAPS])
    return shown + _more(len(counts))


def require_scores(grid: Grid, store: RunStore, prompts: list[BenchPrompt], scores: pd.DataFrame) -> None:
    """A BenchError saying what to run first when a run over `prompts` holds no score at all (a table
    of dashes would read as a result)."""
    if not scores.empty:
        return
    coverage = run_coverage(grid, store, prompts)
    if coverage.videos_done:
        todo = f"run `{store.score_command()}` first"
    else:
        todo = f"make them with `{store.resume_command()}`, then score them"
    raise BenchError(
        f"{store.root} has no scores to report ({coverage.videos_done} of {coverage.videos} videos generated, "
        f"0 of {coverage.scores} scores); {todo}"
    )


def run_coverage(grid: Grid, store: RunStore, prompts: list[BenchPrompt]) -> Coverage:
    """How much of the run over `prompts` is generated and scored (reads only)."""
    coverage = Coverage()
    for cell in grid.cells:
        stored = {(r["video"], r["metric"]): r for r in store.read_scores(cell.id)}
        for prompt, k, video, record, problem in cell_videos(grid, store, cell, prompts):
            coverage.videos += 1
            coverage.scores += len(grid.metrics)
            if record is None:
                if problem == NOT_GENERATED:
                    coverage.not_generated[cell.label] += 1
                else:
                    coverage.unreadable.append((cell.label, video, problem))
                continue
            coverage.videos_done += 1
            current = _current(grid, stored, video, record, prompt)
            coverage.scores_done += len(current)
            for metric in grid.metrics:
                if metric not in current:
                    coverage.missing_scores[(cell.label, metric)] += 1
    return coverage


def collect_scores(grid: Grid, store: RunStore, prompts: list[BenchPrompt]) -> pd.DataFrame:
    """Every current per-video score of the grid's cells over `prompts` (long format, SCORE_COLUMNS)."""
    rows = [
        (cell.label, cell.id, video, prompt.id, k, metric, score["value"], score.get("weight"),
         score.get("backend", METRICS.get(metric).backend))
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
            row[f"{metric}_videos"] = len(values)
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
        "mean over videos with its 95% bootstrap interval over prompts; (n=N): a mean over fewer videos "
        "than the same metric's in another cell.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    most = {m: table[f"{m}_videos"].max() for m in grid.metrics if f"{m}_videos" in table}
    for _, row in table.iterrows():
        cells = [str(row["cell"]), str(row["videos"])]
        for m in grid.metrics:
            estimate = format_estimate(row[m], row[f"{m}_low"], row[f"{m}_high"])
            if m in most and estimate != "-" and row[f"{m}_videos"] < most[m]:  # fewer videos than another cell's mean
                estimate += f" (n={row[f'{m}_videos']})"
            cells.append(estimate)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_estimate(value, low, high, digits: int = 3, signed: bool = False) -> str:
    """`0.812 [0.790, 0.833]`; `signed` for a difference: `+0.012 [+0.004, +0.020]`."""
    spec = f"{'+' if signed else ''}.{digits}f"
    if value is None or _is_nan(value):
        return "-"
    if low is None or _is_nan(low) or high is None or _is_nan(high):
        return f"{value:{spec}}"
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


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
