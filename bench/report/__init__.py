"""The report of a run (`arlon-bench report RUN`): tables in the paper's layouts with intervals over
prompts and paired differences, figures, and one self-contained HTML page, under `<run>/report/`.

    from bench.report import write_report
    from bench.runner import open_run

    store, grid, limit = open_run("runs/layers")
    report = write_report(store, grid, limit)       # report.files["report.html"], report.tables, ...

Files: tables.md, tables.tex (booktabs), tables.csv (long form), summary.csv (one row per cell and
metric with its interval, difference, p-value), figures/*.png + *.pdf, report.html.
Reads the store only; computes no score. A run without any score is a BenchError saying what to
run first; what a report lacks is `bench.results.run_coverage`'s to tell (`arlon-bench report`
prints it and exits with code 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from arlon.checkpoints.io import atomic_write_bytes
from bench.errors import BenchError
from bench.executors.work import seed_for
from bench.grids import Grid
from bench.prompts import load_prompts
from bench.report.html import VideoRow, render_page
from bench.report.matrix import grid_matrix
from bench.report.plots import FigureFile, write_figures
from bench.report.provenance import provenance_markdown, run_provenance
from bench.report.stats import summarize
from bench.report.tables import REFERENCE_DIR, ReportTable, build_tables, to_latex, to_markdown, to_records
from bench.results import collect_scores, require_scores
from bench.store import RunStore, owning_run

DEFAULT_VIDEO_PROMPTS = 6  # rows of the HTML page's video grid


@dataclass
class Report:
    directory: Path
    tables: list[ReportTable]
    figures: list[FigureFile]
    summary: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def video_rows(store: RunStore, grid: Grid, prompts, count: int = DEFAULT_VIDEO_PROMPTS) -> list[VideoRow]:
    """Sample 0 of the first `count` prompts in every cell (the same seed in each)."""
    rows = []
    for prompt in prompts[:count]:
        seed = seed_for(prompt.id, 0, grid.seed)
        videos = []
        for cell in grid.cells:
            record = store.video_record(cell.id, f"{prompt.id}-0", seed)
            videos.append((cell.label, store.video_path(cell.id, f"{prompt.id}-0") if record else None))
        rows.append(VideoRow(prompt.id, prompt.text, seed, videos))
    return rows


def write_report(
    store: RunStore,
    grid: Grid,
    limit: int | None = None,
    out: str | Path | None = None,
    video_prompts: int = DEFAULT_VIDEO_PROMPTS,
    reference_dir: Path = REFERENCE_DIR,
) -> Report:
    """Write the run's report under `out` (default `<run>/report/`); see the module docstring."""
    directory = Path(out) if out is not None else store.root / "report"
    other = owning_run(directory)
    if other is not None and other.resolve() != store.root.resolve():
        raise BenchError(f"{directory} is inside the run {other}; write the report of {store.root} elsewhere (--out)")
    prompts = load_prompts(grid.prompts, limit)
    scores = collect_scores(grid, store, prompts)
    require_scores(grid, store, prompts, scores)
    summary = summarize(grid, scores)
    tables = build_tables(grid, summary, reference_dir)
    provenance = run_provenance(store, grid)
    markdown = "\n".join(to_markdown(table) for table in tables) + "\n" + provenance_markdown(provenance)
    report = Report(directory, tables, [], summary)
    report.files["tables.md"] = atomic_write_bytes(directory / "tables.md", f"# Report: {grid.name}\n\n{markdown}".encode())
    report.files["tables.tex"] = atomic_write_bytes(directory / "tables.tex", "\n".join(to_latex(t) for t in tables).encode())
    records = pd.concat([to_records(table) for table in tables], ignore_index=True)
    report.files["tables.csv"] = atomic_write_bytes(directory / "tables.csv", records.to_csv(index=False).encode())
    report.files["summary.csv"] = atomic_write_bytes(directory / "summary.csv", summary.to_csv(index=False).encode())
    report.figures = write_figures(grid, summary, directory / "figures", reference_dir)
    page = render_page(
        f"Report: {grid.name}", grid.description, tables, report.figures,
        video_rows(store, grid, prompts, video_prompts), provenance, grid_matrix(grid), summary,
    )
    report.files["report.html"] = atomic_write_bytes(directory / "report.html", page.encode())
    return report


__all__ = ["Report", "write_report", "video_rows"]
