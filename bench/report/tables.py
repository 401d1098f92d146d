"""Report tables: a generic one (one row per cell) for any grid, and the paper's layouts when a run
has their columns; rendered as Markdown, LaTeX (booktabs) and CSV.

- Table 3 (ablations): the `table3` grid, or any run scoring its six VBench dimensions; percent.
- Table 2 (text-to-video, eleven VBench dimensions) when the run scores all eleven; percent.
- Table 1 (long video) when the run scores its seven dimensions and its grid makes long videos
  (a `long:` block or long prompts): the baseline beside the paper's OpenSora-V1.2 row, ARLON beside
  its ARLON row, FreeNoise and StreamingT2V reported only.
- Table 5 (training data) when the run scores the six Table 3 dimensions and its grid varies only
  `data.*` fields.

A metric matches a paper column by its VBench dimension (`vbench.aesthetic_quality` and
`aesthetic_quality` both match "aesthetic_quality"). Reported numbers come from
`reports/reference/*.csv` and sit in their own, labelled "paper" columns or rows: in Table 3 only
beside the rows whose ablation settings (fusion, injected layers, DiT condition compression, noise)
equal the paper row's; in Tables 1 and 2 as the paper's own rows. Bold marks the best reproduced
value per column (by the metric's direction, ↑ or ↓); paper values are never bolded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.grids import Cell, Grid
from bench.metrics import METRICS

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "reports" / "reference"
TABLE3_DIMENSIONS = (
    "subject_consistency", "background_consistency", "motion_smoothness",
    "dynamic_degree", "aesthetic_quality", "imaging_quality",
)
TABLE2_DIMENSIONS = (
    "dynamic_degree", "aesthetic_quality", "imaging_quality", "subject_consistency", "background_consistency",
    "motion_smoothness", "temporal_flickering", "temporal_style", "overall_consistency", "scene", "object_class",
)
TABLE1_DIMENSIONS = (
    "subject_consistency", "background_consistency", "motion_smoothness", "dynamic_degree",
    "aesthetic_quality", "imaging_quality", "overall_consistency",
)


def dimension(metric: str) -> str:
    """The VBench dimension a metric name stands for (the name without a `vbench.` prefix)."""
    return metric.removeprefix("vbench.")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ---------------------------------------------------------------------------------------------
# The table model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    metric: str  # the run's metric name
    header: str
    higher_is_better: bool


@dataclass(frozen=True)
class Entry:
    """One reproduced value: mean with its interval, and its difference from the reference cell."""

    value: float
    low: float = math.nan
    high: float = math.nan
    diff: float = math.nan
    diff_low: float = math.nan
    diff_high: float = math.nan
    p_value: float = math.nan


@dataclass
class TableRow:
    label: str
    entries: dict[str, Entry] = field(default_factory=dict)  # by column metric; empty for a paper row
    reported: dict[str, float] = field(default_factory=dict)  # paper numbers (already in the table's unit)
    is_paper_row: bool = False
    reference: str | None = None  # the cell its differences are taken against
    paper_row: str | None = None  # the matched paper row (Table 3)


@dataclass
class ReportTable:
    key: str  # results, table3, table2, table1, table5
    title: str
    caption: str
    columns: list[Column]
    rows: list[TableRow]
    percent: bool  # reproduced values are shown x100, like the paper
    reported_columns: bool = False  # a "paper" column beside each reproduced one

    @property
    def scale(self) -> float:
        return 100.0 if self.percent else 1.0

    @property
    def digits(self) -> int:
        return 2 if self.percent else 3

    def best(self) -> dict[str, set[str]]:
        """{column metric: labels of the best reproduced rows (all of them on a tie)}."""
        best = {}
        for column in self.columns:
            scored = [(row.entries[column.metric].value, row.label) for row in self.rows
                      if column.metric in row.entries and not _missing(row.entries[column.metric].value)]
            if scored:
                top = (max if column.higher_is_better else min)(value for value, _ in scored)
                best[column.metric] = {label for value, label in scored if value == top}
        return best

    def is_best(self, best: dict[str, set[str]], column: Column, row: "TableRow") -> bool:
        return not row.is_paper_row and row.label in best.get(column.metric, set())

    @property
    def has_differences(self) -> bool:
        return any(not _missing(e.diff) for row in self.rows for e in row.entries.values())


def _entries(summary: pd.DataFrame, cell: Cell) -> dict[str, Entry]:
    mine = summary[summary["cell_id"] == cell.id]
    return {
        r.metric: Entry(r.value, r.low, r.high, r.diff, r.diff_low, r.diff_high, r.p_value)
        for r in mine.itertuples()
        if not _missing(r.value)
    }


def _reference_of(summary: pd.DataFrame, cell: Cell) -> str | None:
    references = summary.loc[summary["cell_id"] == cell.id, "reference"].dropna()
    return str(references.iloc[0]) if len(references) else None


def _column(metric: str, header: str | None = None) -> Column:
    return Column(metric, header or metric, METRICS.get(metric).higher_is_better)


def _setup(grid: Grid, summary: pd.DataFrame) -> str:
    prompts = int(summary["prompts"].max()) if len(summary) else 0
    return (
        f"Run of grid `{grid.name}` (preset {grid.preset}): {prompts} {grid.prompts.kind} prompt(s), "
        f"{grid.samples_per_prompt} video(s) each. Mean with its 95% bootstrap interval over prompts "
        "(prompts resampled with all their videos)."
    )


DIFFERENCE_NOTE = (
    "Δ: paired difference from the reference cell on the same prompts and seeds, with its 95% "
    "interval and a sign-flip permutation p-value."
)


# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


def generic_table(grid: Grid, summary: pd.DataFrame) -> ReportTable:
    """One row per cell, one column per metric of the grid."""
    rows = [TableRow(cell.label, _entries(summary, cell), reference=_reference_of(summary, cell)) for cell in grid.cells]
    caption = f"{_setup(grid, summary)} {DIFFERENCE_NOTE} Bold: best per column (↑ higher is better, ↓ lower)."
    title = f"{grid.name}" + (f": {grid.description}" if grid.description else "")
    return ReportTable("results", title, caption, [_column(m) for m in grid.metrics], rows, percent=False)


def _metrics_for(grid: Grid, dimensions: tuple[str, ...]) -> list[str] | None:
    """The run's metric for each dimension, in the paper's order; None unless all are scored."""
    by_dimension = {dimension(metric): metric for metric in grid.metrics}
    if not all(d in by_dimension for d in dimensions):
        return None
    return [by_dimension[d] for d in dimensions]


def read_reference(name: str, reference_dir: Path = REFERENCE_DIR) -> pd.DataFrame | None:
    path = Path(reference_dir) / name
    return pd.read_csv(path) if path.is_file() else None


def table3_row_matches(paper: dict, cell: Cell) -> bool:
    """Whether `cell` is the paper's Table 3 row `paper` (a row of table3_ablation.csv): the same
    fusion, injected layers (first N), DiT condition compression and noise strategy."""
    if paper["row"] == "baseline" or cell.is_baseline:
        return paper["row"] == "baseline" and cell.is_baseline
    config = cell.config
    noise = "gaussian" if _true(paper["gaussian_noise"]) else "uncertainty" if _true(paper["uncertainty_sampling"]) else "none"
    condition = "ar" if paper["dit_compression"] == "4x8x8" else "dit"  # the AR model's ratio is 4x8x8
    return (
        config.injection.fusion == paper["fusion"]
        and config.injection.layers == f"first:{int(paper['layers'])}"
        and config.injection.condition_vq == condition
        and config.noise.strategy == noise
    )


def _true(value) -> bool:
    return str(value).strip().lower() == "true"


def table3(grid: Grid, summary: pd.DataFrame, reference_dir: Path = REFERENCE_DIR) -> ReportTable | None:
    """Paper Table 3 layout: ablation rows x the six VBench columns (percent), with the paper's
    numbers beside the rows whose settings match; None when the run is neither the table3 grid nor
    scores the six columns."""
    metrics = _metrics_for(grid, TABLE3_DIMENSIONS)
    if metrics is None and grid.name != "table3":
        return None
    rows = [TableRow(cell.label, _entries(summary, cell), reference=_reference_of(summary, cell)) for cell in grid.cells]
    notes = [_setup(grid, summary), DIFFERENCE_NOTE]
    reference = read_reference("table3_ablation.csv", reference_dir) if metrics else None
    if metrics is None:
        notes.append(
            "This run does not score the paper's six VBench columns, so its own metrics are shown and no "
            "paper numbers: they would measure something else."
        )
    elif reference is None:
        notes.append(f"No paper numbers: {Path(reference_dir) / 'table3_ablation.csv'} is missing.")
    else:
        matched = 0
        for row, cell in zip(rows, grid.cells):
            for paper in reference.to_dict("records"):
                if table3_row_matches(paper, cell):
                    row.paper_row = paper["row"]
                    row.reported = {m: float(paper[dimension(m)]) for m in metrics}
                    matched += 1
                    break
        notes.append(
            f"Paper columns: Table 3 of the paper (Open-Sora v1.2 scale, 100 prompts, VBench), shown for the "
            f"{matched} row(s) whose fusion, injected layers, DiT condition compression and noise equal a paper "
            "row's; a row without them has no matching paper configuration."
        )
        if grid.preset != "paper":
            notes.append(
                f"This run uses preset {grid.preset}, not the paper's model size and data: compare the direction "
                "of the changes, not the absolute numbers."
            )
    notes.append("Bold: best reproduced value per column.")
    columns = [_column(m, dimension(m)) for m in (metrics or grid.metrics)]
    return ReportTable(
        "table3", f"Table 3 layout: {grid.name}", " ".join(notes), columns, rows,
        percent=metrics is not None, reported_columns=reference is not None and metrics is not None,
    )


def _paper_rows_table(
    key: str, title: str, grid: Grid, summary: pd.DataFrame, metrics: list[str], csv_name: str, reference_dir: Path
) -> ReportTable:
    rows = [TableRow(cell.label, _entries(summary, cell), reference=_reference_of(summary, cell)) for cell in grid.cells]
    reference = read_reference(csv_name, reference_dir)
    notes = [_setup(grid, summary), DIFFERENCE_NOTE]
    if reference is None:
        notes.append(f"No paper rows: {Path(reference_dir) / csv_name} is missing.")
    else:
        for paper in reference.to_dict("records"):
            rows.append(TableRow(f"{paper['model']} (paper)", reported={m: float(paper[dimension(m)]) for m in metrics}, is_paper_row=True))
        notes.append(f"Rows marked (paper) are printed in the paper ({csv_name}), at the paper's scale and prompts, not reproduced.")
    notes.append("Bold: best reproduced value per column.")
    return ReportTable(key, title, " ".join(notes), [_column(m, dimension(m)) for m in metrics], rows, percent=True)


def table2(grid: Grid, summary: pd.DataFrame, reference_dir: Path = REFERENCE_DIR) -> ReportTable | None:
    """Paper Table 2 layout (eleven VBench dimensions, percent) with the paper's models as rows."""
    metrics = _metrics_for(grid, TABLE2_DIMENSIONS)
    if metrics is None:
        return None
    return _paper_rows_table("table2", f"Table 2 layout: {grid.name}", grid, summary, metrics, "table2_t2v_vbench.csv", reference_dir)


def _long_length(grid: Grid) -> str:
    """How long a long-video grid's videos are, in words."""
    if grid.long is not None and grid.long.frames is not None:
        return f"{grid.long.frames} frames"
    if grid.long is not None and grid.long.seconds is not None:
        return f"{grid.long.seconds:g} s"
    return f"{grid.prompts.frames} frames"


# Table 1's rows the harness reproduces: the baseline cell is the paper's OpenSora-V1.2 row, an ARLON
# cell its ARLON row; the other methods are not part of this project and stay reported only.
TABLE1_REPRODUCED = {True: "OpenSora-V1.2", False: "ARLON"}  # is_baseline -> paper row


def table1(grid: Grid, summary: pd.DataFrame, reference_dir: Path = REFERENCE_DIR) -> ReportTable | None:
    """Paper Table 1 layout (long video, seven dimensions, percent) for a long-video grid: each cell
    beside the paper's row it reproduces (the baseline: OpenSora-V1.2, ARLON cells: ARLON), the
    methods the harness does not run (FreeNoise, StreamingT2V) as rows reported only."""
    metrics = _metrics_for(grid, TABLE1_DIMENSIONS)
    if metrics is None or not grid.is_long:
        return None
    rows = [TableRow(cell.label, _entries(summary, cell), reference=_reference_of(summary, cell)) for cell in grid.cells]
    reference = read_reference("table1_long_video.csv", reference_dir)
    notes = [_setup(grid, summary), DIFFERENCE_NOTE]
    notes.append(f"Each video: {_long_length(grid)} (the paper's: 600 frames).")
    if reference is None:
        notes.append(f"No paper numbers: {Path(reference_dir) / 'table1_long_video.csv'} is missing.")
    else:
        papers = {str(paper["model"]): paper for paper in reference.to_dict("records")}
        for row, cell in zip(rows, grid.cells):
            paper = papers.get(TABLE1_REPRODUCED[cell.is_baseline])
            if paper is not None:
                row.paper_row = str(paper["model"])
                row.reported = {m: float(paper[dimension(m)]) for m in metrics}
        for name, paper in papers.items():
            if name not in TABLE1_REPRODUCED.values():
                rows.append(TableRow(f"{name} (paper, reported only)", reported={m: float(paper[dimension(m)]) for m in metrics}, is_paper_row=True))
        notes.append(
            "Paper columns: Table 1 of the paper (600 frames, Open-Sora v1.2 scale, VBench) beside the cell that "
            "reproduces the row: the baseline beside OpenSora-V1.2, ARLON beside ARLON. FreeNoise and StreamingT2V "
            "are other methods this project does not run: reported only, not reproduced."
        )
        if grid.preset != "paper":
            notes.append(
                f"This run uses preset {grid.preset}, not the paper's model size and data: compare the direction "
                "of the differences, not the absolute numbers."
            )
    notes.append("Bold: best reproduced value per column.")
    return ReportTable(
        "table1", f"Table 1 layout (long video): {grid.name}", " ".join(notes), [_column(m, dimension(m)) for m in metrics],
        rows, percent=True, reported_columns=reference is not None,
    )


def table5(grid: Grid, summary: pd.DataFrame, reference_dir: Path = REFERENCE_DIR) -> ReportTable | None:
    """Paper Table 5 layout (training data x the six VBench columns, percent) for a grid that varies
    only the training data (`data.*`); the paper's rows are named datasets (OpenVid, Mixkit), so they
    are listed as paper rows, never matched to a cell."""
    metrics = _metrics_for(grid, TABLE3_DIMENSIONS)
    keys = [key for key in grid.varying_keys if key != "baseline"]
    if metrics is None or not keys or not all(key.startswith("data.") for key in keys):
        return None
    rows = [TableRow(cell.label, _entries(summary, cell), reference=_reference_of(summary, cell)) for cell in grid.cells]
    reference = read_reference("table5_data_size.csv", reference_dir)
    notes = [_setup(grid, summary), DIFFERENCE_NOTE]
    if reference is not None:
        for paper in reference.to_dict("records"):
            rows.append(TableRow(f"{paper['training_data']} (paper)", reported={m: float(paper[dimension(m)]) for m in metrics}, is_paper_row=True))
        notes.append("Rows marked (paper) are the paper's training sets (table5_data_size.csv), not this run's data: context only.")
    notes.append("Bold: best reproduced value per column.")
    return ReportTable("table5", f"Table 5 layout (training data): {grid.name}", " ".join(notes),
                       [_column(m, dimension(m)) for m in metrics], rows, percent=True)


def build_tables(grid: Grid, summary: pd.DataFrame, reference_dir: Path = REFERENCE_DIR) -> list[ReportTable]:
    """The generic table, then every paper layout that applies to the run."""
    layouts = [
        table3(grid, summary, reference_dir), table2(grid, summary, reference_dir),
        table1(grid, summary, reference_dir), table5(grid, summary, reference_dir),
    ]
    layouts = [table for table in layouts if table is not None]
    covered = any(
        table.key == "table3" and {c.metric for c in table.columns} == set(grid.metrics) for table in layouts
    )  # the Table 3 layout of a table3 run already has one row per cell and every metric
    return layouts if covered else [generic_table(grid, summary), *layouts]


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _arrow(column: Column) -> str:
    return "↑" if column.higher_is_better else "↓"


def _number(table: ReportTable, value: float, signed: bool = False) -> str:
    return f"{value * table.scale:{'+' if signed else ''}.{table.digits}f}"


def entry_text(table: ReportTable, entry: Entry | None) -> str:
    """`mean [low, high]` in the table's unit; `-` when missing."""
    if entry is None or _missing(entry.value):
        return "-"
    if _missing(entry.low) or _missing(entry.high):
        return _number(table, entry.value)
    return f"{_number(table, entry.value)} [{_number(table, entry.low)}, {_number(table, entry.high)}]"


def difference_text(table: ReportTable, entry: Entry | None) -> str:
    """`+diff [low, high] p=...`; `-` when the row has no difference."""
    if entry is None or _missing(entry.diff):
        return "-"
    interval = f"{_number(table, entry.diff, True)} [{_number(table, entry.diff_low, True)}, {_number(table, entry.diff_high, True)}]"
    return f"{interval} p={entry.p_value:.2g}"


def _reported_text(table: ReportTable, row: TableRow, column: Column) -> str:
    value = row.reported.get(column.metric)
    return "-" if value is None else f"{value:.2f}"  # paper numbers are printed in percent


def _header(table: ReportTable) -> list[str]:
    header = ["row"]
    for column in table.columns:
        header.append(f"{column.header} {_arrow(column)}")
        if table.reported_columns:
            header.append("paper")
    return header


def markdown_text(text: str) -> str:
    """User text (a label, a grid's description) kept literal in a Markdown table or heading: on one
    line (a line break would end the row) and with `|` escaped (it would end the cell)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _cells(table: ReportTable, row: TableRow, best: dict[str, str], bold) -> list[str]:
    cells = [markdown_text(row.label)]
    for column in table.columns:
        if row.is_paper_row:
            cells.append(_reported_text(table, row, column))
        else:
            text = entry_text(table, row.entries.get(column.metric))
            cells.append(bold(text) if table.is_best(best, column, row) and text != "-" else text)
        if table.reported_columns:
            cells.append(_reported_text(table, row, column))
    return cells


def to_markdown(table: ReportTable) -> str:
    """The table (and its differences from the reference cells) as GitHub Markdown."""
    best = table.best()
    unit = " Values in percent." if table.percent else ""
    lines = [f"## {markdown_text(table.title)}", "", table.caption + unit, ""]
    header = _header(table)
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(_cells(table, row, best, lambda text: f"**{text}**")) + " |")
    if table.has_differences:
        lines += ["", f"Δ against the reference cell{' (percentage points)' if table.percent else ''}:", ""]
        header = ["row", "vs"] + [f"{c.header} {_arrow(c)}" for c in table.columns]
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * len(table.columns)) + "|"]
        for row in table.rows:
            if row.is_paper_row or row.reference is None:
                continue
            labels = [markdown_text(row.label), markdown_text(row.reference)]
            lines.append("| " + " | ".join(labels + [difference_text(table, row.entries.get(c.metric)) for c in table.columns]) + " |")
    return "\n".join(lines) + "\n"


# Brackets in braces: `\\` and `\midrule` read a `[` that follows them as their optional argument,
# so a row label starting with one would break the table.
LATEX_SPECIALS = {"[": "{[}", "]": "{]}", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "Δ": r"$\Delta$", "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


def _latex_entry(table: ReportTable, entry: Entry | None, is_best: bool) -> str:
    if entry is None or _missing(entry.value):
        return "--"
    value = _number(table, entry.value)
    value = rf"\textbf{{{value}}}" if is_best else value
    if _missing(entry.low) or _missing(entry.high):
        return value
    return rf"{value}\,{{\scriptsize[{_number(table, entry.low)}, {_number(table, entry.high)}]}}"


def to_latex(table: ReportTable) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); arrows as $\\uparrow$/$\\downarrow$."""
    best = table.best()
    per_column = 2 if table.reported_columns else 1
    spec = "l" + "r" * (len(table.columns) * per_column)
    header = ["Row"]
    for column in table.columns:
        arrow = r"$\uparrow$" if column.higher_is_better else r"$\downarrow$"
        header.append(f"{latex_escape(column.header)} {arrow}")
        if table.reported_columns:
            header.append("paper")
    lines = [
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}{' Values in percent.' if table.percent else ''}}}",
        rf"\label{{tab:{latex_escape(table.key)}}}",
        rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
    ]
    paper_rule_done = False
    for row in table.rows:
        if row.is_paper_row and not paper_rule_done:
            lines.append(r"\midrule")
            paper_rule_done = True
        cells = [latex_escape(row.label)]
        for column in table.columns:
            if row.is_paper_row:
                cells.append(_reported_text(table, row, column) if column.metric in row.reported else "--")
            else:
                cells.append(_latex_entry(table, row.entries.get(column.metric), table.is_best(best, column, row)))
            if table.reported_columns:
                cells.append(_reported_text(table, row, column) if column.metric in row.reported else "--")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "table", "row", "is_paper_row", "reference", "metric", "higher_is_better", "value", "low", "high",
    "diff", "diff_low", "diff_high", "p_value", "is_best", "paper_value", "unit",
)


def to_records(table: ReportTable) -> pd.DataFrame:
    """Long CSV form: one record per (row, column); values in the table's unit (percent or raw)."""
    best = table.best()
    records = []
    for row in table.rows:
        for column in table.columns:
            entry = row.entries.get(column.metric)
            scaled = {
                name: (getattr(entry, name) * table.scale if entry is not None and not _missing(getattr(entry, name)) else math.nan)
                for name in ("value", "low", "high", "diff", "diff_low", "diff_high")
            }
            if row.is_paper_row:
                scaled["value"] = row.reported.get(column.metric, math.nan)
            records.append({
                "table": table.key, "row": row.label, "is_paper_row": row.is_paper_row, "reference": row.reference,
                "metric": column.metric, "higher_is_better": column.higher_is_better, **scaled,
                "p_value": entry.p_value if entry is not None else math.nan,
                "is_best": table.is_best(best, column, row),
                "paper_value": math.nan if row.is_paper_row else row.reported.get(column.metric, math.nan),
                "unit": "percent" if table.percent else "raw",
            })
    return pd.DataFrame(records, columns=list(CSV_COLUMNS))
