"""Report figures with matplotlib (PNG for the HTML page, PDF for papers), drawn without pyplot's
global state so that report writing is safe in any process.

- One bar chart per metric: each cell's mean with its 95% interval over prompts, on an axis fitted
  to the means and intervals (`value_limits`); a star marks a cell whose paired difference from its
  reference cell is significant (interval excludes 0 and p < 0.05, `bench.report.stats.is_significant`),
  a dashed line the reference cell's mean when every cell shares one.
- Figure 7 of the paper for a grid that varies the denoising steps with ARLON and baseline cells:
  aesthetic and imaging quality against steps, one line per model with its interval band; a run
  without those two metrics plots its own metrics instead and says so in the title.
- A radar chart of the eleven Table 2 dimensions, this run's cells against the paper's Table 2
  models, when the run scores all eleven.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from arlon.checkpoints.io import atomic_write_bytes
from bench.grids import Grid
from bench.metrics import METRICS
from bench.report.stats import is_significant
from bench.report.tables import REFERENCE_DIR, TABLE2_DIMENSIONS, dimension, read_reference

BASELINE_COLOUR = "#8c8c8c"
ARLON_COLOUR = "#1f77b4"
FIGURE7_DIMENSIONS = ("aesthetic_quality", "imaging_quality")


@dataclass(frozen=True)
class FigureFile:
    name: str  # file stem under figures/
    png: Path
    pdf: Path
    caption: str


def save_figure(figure: Figure, directory: Path, name: str, caption: str) -> FigureFile:
    """Write `name`.png (150 dpi) and `name`.pdf atomically."""
    paths = {}
    for suffix, options in ((".png", {"dpi": 150}), (".pdf", {})):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix[1:], bbox_inches="tight", **options)
        paths[suffix] = atomic_write_bytes(Path(directory) / f"{name}{suffix}", buffer.getvalue())
    return FigureFile(name, paths[".png"], paths[".pdf"], caption)


def _arrow(metric: str) -> str:
    return "↑" if METRICS.get(metric).higher_is_better else "↓"


def value_limits(means, lows, highs, margin: float = 0.08, headroom: float = 0.12) -> tuple[float, float] | None:
    """Axis limits fitted to the means and their 95% intervals (not 0-1, where differences of 0.01
    vanish): their range plus `margin` of it below and `headroom` above (room for the stars);
    None when nothing is finite."""
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in (means, lows, highs)])
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    low, high = float(values.min()), float(values.max())
    span = high - low
    if span <= 1e-12 * max(1.0, abs(high)):  # one value, or all equal: a small window around it
        span = 0.05 * max(abs(high), 1.0)
        low, high = low - span / 2, high + span / 2
    return low - margin * span, high + headroom * span


def shared_reference(rows: pd.DataFrame) -> str | None:
    """The label of the one reference cell every other row is compared with, if there is one."""
    references = set(rows["reference"].dropna())
    return references.pop() if len(references) == 1 else None


def bar_chart(grid: Grid, summary: pd.DataFrame, metric: str) -> Figure:
    """Each cell's mean of `metric` with its 95% interval, on an axis fitted to them; baseline cells
    grey, the shared reference cell's mean a dashed line, * a significant paired difference from it."""
    rows = summary[summary["metric"] == metric].reset_index(drop=True)
    figure = Figure(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.4))
    axes = figure.add_subplot()
    x = np.arange(len(rows))
    means = rows["value"].to_numpy(dtype=float)
    lows, highs = rows["low"].to_numpy(dtype=float), rows["high"].to_numpy(dtype=float)
    limits = value_limits(means, lows, highs)
    bottom = limits[0] if limits is not None else 0.0
    errors = np.vstack([np.nan_to_num(means - lows), np.nan_to_num(highs - means)])
    colours = [BASELINE_COLOUR if is_baseline else ARLON_COLOUR for is_baseline in rows["is_baseline"]]
    # Bars rise from the bottom of the fitted axis; the axis label says it does not start at 0.
    axes.bar(x, np.nan_to_num(means - bottom), bottom=bottom, color=colours, alpha=0.85,
             yerr=errors, capsize=4, error_kw={"elinewidth": 1.2, "ecolor": "#222"})
    reference = shared_reference(rows)
    if reference is not None:
        mean = rows.loc[rows["cell"] == reference, "value"]
        if len(mean) and np.isfinite(mean.iloc[0]):
            axes.axhline(mean.iloc[0], color="#444", linestyle="--", linewidth=0.8)
            # Named right of the plot, where no bar or star can be under it.
            axes.annotate("reference", (1.0, mean.iloc[0]), xycoords=("axes fraction", "data"), xytext=(3, 0),
                          textcoords="offset points", ha="left", va="center", fontsize=7, color="#444")
    for i, row in rows.iterrows():
        if is_significant(row):
            top = row["high"] if np.isfinite(row["high"]) else row["value"]
            axes.annotate("*", (i, top), ha="center", va="bottom", fontsize=13)
    if limits is not None:
        axes.set_ylim(*limits)
    axes.set_xticks(x, rows["cell"], rotation=25, ha="right", fontsize=8)
    axes.tick_params(axis="y", labelsize=8)
    axes.set_ylabel("mean over prompts (95% CI)\naxis fitted to the data, not from 0", fontsize=8)
    axes.set_title(f"{grid.name}: {metric} {_arrow(metric)}", fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def steps_metrics(grid: Grid) -> tuple[list[str], bool]:
    """(metrics Figure 7 plots, whether they are the paper's aesthetic and imaging quality)."""
    by_dimension = {dimension(m): m for m in grid.metrics}
    if all(d in by_dimension for d in FIGURE7_DIMENSIONS):
        return [by_dimension[d] for d in FIGURE7_DIMENSIONS], True
    return [m for m in grid.metrics if METRICS.get(m).aggregation == "mean"], False


def is_steps_grid(grid: Grid) -> bool:
    """Whether the grid varies the denoising steps and has both ARLON and baseline cells."""
    steps = {cell.config.flow.num_sampling_steps for cell in grid.cells}
    kinds = {cell.is_baseline for cell in grid.cells}
    return len(steps) > 1 and kinds == {True, False}


def steps_figure(grid: Grid, summary: pd.DataFrame) -> Figure | None:
    """Figure 7: metric against denoising steps, ARLON vs baseline, with 95% interval bands."""
    if not is_steps_grid(grid):
        return None
    metrics, is_paper = steps_metrics(grid)
    steps_of = {cell.id: cell.config.flow.num_sampling_steps for cell in grid.cells}
    columns = min(len(metrics), 4)
    lines = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(3.4 * columns, 2.9 * lines + 0.5))
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(lines, columns, index + 1)
        rows = summary[summary["metric"] == metric].assign(steps=lambda frame: frame["cell_id"].map(steps_of))
        for is_baseline, label, colour in ((False, "ARLON", ARLON_COLOUR), (True, "baseline", BASELINE_COLOUR)):
            mine = rows[rows["is_baseline"] == is_baseline].sort_values("steps")
            axes.plot(mine["steps"], mine["value"], marker="o", color=colour, label=label)
            axes.fill_between(mine["steps"], mine["low"].astype(float), mine["high"].astype(float), color=colour, alpha=0.2)
        axes.set_xlabel("denoising steps", fontsize=8)
        axes.set_title(f"{metric} {_arrow(metric)}", fontsize=9)
        axes.spines[["top", "right"]].set_visible(False)
    title = "Figure 7: quality against denoising steps (95% interval bands)"
    if not is_paper:
        title += "\nthis run does not score aesthetic/imaging quality: its own metrics are shown"
    figure.suptitle(title, fontsize=10)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", ncol=2, fontsize=8, frameon=False)  # outside the bands
    figure.tight_layout()
    return figure


def radar_chart(grid: Grid, summary: pd.DataFrame, reference_dir: Path = REFERENCE_DIR) -> Figure | None:
    """The eleven Table 2 dimensions: this run's cells (solid) against the paper's models (thin),
    each axis scaled to the range of the values shown."""
    by_dimension = {dimension(m): m for m in grid.metrics}
    reference = read_reference("table2_t2v_vbench.csv", reference_dir)
    if reference is None or not all(d in by_dimension for d in TABLE2_DIMENSIONS):
        return None
    series: list[tuple[str, np.ndarray, bool]] = []
    for cell in grid.cells:
        mine = summary[summary["cell_id"] == cell.id].set_index("metric")["value"]
        series.append((cell.label, np.array([mine.get(by_dimension[d], np.nan) * 100 for d in TABLE2_DIMENSIONS]), True))
    for paper in reference.to_dict("records"):
        series.append((f"{paper['model']} (paper)", np.array([float(paper[d]) for d in TABLE2_DIMENSIONS]), False))
    values = np.vstack([s[1] for s in series])  # (models, 11)
    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    scaled = 0.15 + 0.85 * (values - low) / np.where(high > low, high - low, 1.0)
    angles = np.linspace(0, 2 * np.pi, len(TABLE2_DIMENSIONS), endpoint=False)
    figure = Figure(figsize=(7.5, 6.0))
    axes = figure.add_subplot(projection="polar")
    closed = np.append(angles, angles[0])
    for (label, _, is_ours), radii in zip(series, scaled):
        radii = np.append(radii, radii[0])
        highlight = is_ours or label.startswith(("ARLON", "OpenSora-V1.2"))
        axes.plot(closed, radii, linewidth=2.0 if is_ours else 1.2 if highlight else 0.6,
                  linestyle="-" if is_ours else "--" if highlight else ":", label=label if highlight else None,
                  color=None if highlight else "#b0b0b0")
    axes.set_xticks(angles, [d.replace("_", "\n") for d in TABLE2_DIMENSIONS], fontsize=7)
    axes.set_yticklabels([])
    axes.set_title("Table 2 dimensions: this run vs the paper's models (grey: other paper models)", fontsize=9)
    axes.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=7, frameon=False)
    return figure


def write_figures(grid: Grid, summary: pd.DataFrame, directory: Path, reference_dir: Path = REFERENCE_DIR) -> list[FigureFile]:
    """Every figure that applies to the run, as PNG and PDF under `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    figure = steps_figure(grid, summary)
    if figure is not None:
        metrics, is_paper = steps_metrics(grid)
        note = "" if is_paper else " The run has no aesthetic/imaging quality scores, so its own metrics stand in."
        files.append(save_figure(figure, directory, "figure7_steps", "Paper Figure 7 layout: quality against denoising steps, ARLON and baseline, 95% bands." + note))
    figure = radar_chart(grid, summary, reference_dir)
    if figure is not None:
        files.append(save_figure(figure, directory, "radar_table2", "The eleven Table 2 dimensions against the paper's Table 2 models (each axis min-max scaled)."))
    for metric in grid.metrics:
        caption = (
            f"{metric}: mean per cell with its 95% interval over prompts, on an axis fitted to them (not from 0); "
            "* the paired difference from the reference cell is significant (its 95% interval excludes 0 and p < 0.05); "
            "dashed line: the reference cell's mean, when every cell has the same reference."
        )
        files.append(save_figure(bar_chart(grid, summary, metric), directory, f"bars_{metric}", caption))
    return files
