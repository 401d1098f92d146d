"""The report page of a run: one self-contained HTML file (no network, no side files) holding the
tables, the figures as base64 PNGs, a grid of sample videos as base64 MP4s (the same prompt and seed
in every cell, side by side, looping) and the provenance footer. A grid that crosses two settings
(`bench.report.matrix`) first gets one heatmap per metric: rows one setting, columns the other.

It reads at any window width: a table wider than the page scrolls sideways in its own box with its
first column held in view, and the prompt column keeps the width of a few words per line."""

from __future__ import annotations

import base64
import dataclasses
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import matplotlib
import pandas as pd

from bench.metrics import METRICS
from bench.report.matrix import GridMatrix
from bench.report.plots import FigureFile
from bench.report.provenance import Provenance
from bench.report.stats import is_significant
from bench.report.tables import Entry, ReportTable, difference_text, entry_text

# Wide tables scroll inside their own box (`.scroll`) so that the page is never wider than the
# window; their first column (the row or the prompt) stays in view while they scroll.
STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 1500px; color: #222; padding: 0 1.5rem; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav a { margin-right: 1rem; } .caption { color: #555; font-size: .9rem; max-width: 60rem; }
.scroll { overflow-x: auto; max-width: 100%; margin: .6rem 0 1.2rem; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; vertical-align: top; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: #fff; }
thead th { border-bottom: 2px solid #444; vertical-align: bottom; }
.ci { display: block; font-size: .75rem; color: #666; }
td.paper, th.paper { background: #f6f3ea; color: #6b5b2e; font-style: italic; }
tr.paper-row td { background: #f6f3ea; color: #6b5b2e; font-style: italic; }
.heatmaps { display: flex; flex-wrap: wrap; gap: 0 1.25rem; } .heatmaps > .scroll { min-width: 0; }
table.heatmap { margin: 0; } table.heatmap caption { text-align: left; font-weight: 600; padding: .2rem 0; }
table.heatmap td { text-align: center; border: 2px solid #fff; min-width: 4.6rem; padding: .3rem .35rem; }
table.heatmap td .ci { font-size: .7rem; }
table.heatmap th, table.heatmap td { vertical-align: middle; }
table.heatmap td .ci { color: inherit; opacity: .8; }
table.heatmap th.axis { text-align: center; font-weight: normal; font-style: italic; border-bottom: 1px solid #444; }
table.heatmap tr.outside th, table.heatmap tr.outside td { border-top: 2px solid #444; }
.ref { font-size: .7rem; font-style: italic; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 480px), 1fr)); gap: 1rem 1.5rem; }
figure { margin: 0; } figure img { max-width: 100%; } figcaption { font-size: .8rem; color: #555; }
figure.wide { grid-column: 1 / -1; }
video { width: 128px; height: 128px; image-rendering: pixelated; background: #000; }
th.video-cell { white-space: normal; min-width: 128px; max-width: 11rem; text-align: center; } td.video-cell { text-align: center; }
td.prompt, th.prompt { white-space: normal; width: 18rem; min-width: 18rem; max-width: 22rem; text-align: left; font-size: .8rem; }
footer { margin-top: 3rem; font-size: .8rem; color: #444; } footer dt { font-weight: 600; margin-top: .3rem; }
footer dd { margin-left: 1rem; overflow-wrap: anywhere; } pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; }
"""
# Heatmap colours: light (worst mean shown) to dark (best), per metric; the ends of the map are
# left out so that the lightest cell is still tinted and the darkest still readable.
HEATMAP_COLOURS = matplotlib.colormaps["YlGnBu"]
HEATMAP_RANGE = (0.08, 0.85)
MISSING_COLOUR = "#eeeeee"


def scroll(table: str) -> str:
    """A table in a box of its own that scrolls sideways when the table is wider than the page."""
    return f'<div class="scroll">{table}</div>'


@dataclass(frozen=True)
class VideoRow:
    prompt_id: str
    prompt: str
    seed: int | None
    videos: list[tuple[str, Path | None]]  # (cell label, mp4 or None when not generated)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def _two_lines(text: str, strong: bool = False, mark: str = "") -> str:
    """`mean [low, high]` (as `entry_text` / `difference_text` write it) with the interval on a
    second, smaller line, so that a column is as wide as its number rather than number and interval;
    `mark` (HTML of ours: a star, a reference tag) follows the number."""
    head, bracket, tail = text.partition(" [")
    head = (f"<strong>{escape(head)}</strong>" if strong else escape(head)) + mark
    return head + (f'<span class="ci">[{escape(tail)}</span>' if bracket else "")


def _significant(entry: Entry | None) -> bool:
    return entry is not None and is_significant(dataclasses.asdict(entry))


def table_html(table: ReportTable) -> str:
    best = table.best()
    head = ["<th>row</th>"]
    for column in table.columns:
        arrow = "↑" if column.higher_is_better else "↓"
        head.append(f"<th>{escape(column.header)} {arrow}</th>")
        if table.reported_columns:
            head.append('<th class="paper">paper</th>')
    body = []
    for row in table.rows:
        cells = [f"<td>{escape(row.label)}</td>"]
        for column in table.columns:
            reported = row.reported.get(column.metric)
            reported_text = "-" if reported is None else f"{reported:.2f}"
            if row.is_paper_row:
                cells.append(f"<td>{reported_text}</td>")
            else:
                text = entry_text(table, row.entries.get(column.metric))
                cells.append(f"<td>{_two_lines(text, table.is_best(best, column, row) and text != '-')}</td>")
            if table.reported_columns:
                cells.append(f'<td class="paper">{reported_text}</td>')
        row_class = ' class="paper-row"' if row.is_paper_row else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    unit = " Values in percent." if table.percent else ""
    parts = [
        f"<h3>{escape(table.title)}</h3>",
        f'<p class="caption">{escape(table.caption + unit)}</p>',
        scroll(f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"),
    ]
    if table.has_differences:
        head = "<th>row</th><th>vs</th>" + "".join(f"<th>Δ {escape(c.header)}</th>" for c in table.columns)
        rows = []
        for row in table.rows:
            if row.is_paper_row or row.reference is None:
                continue
            values = []
            for column in table.columns:
                entry = row.entries.get(column.metric)
                star = " *" if _significant(entry) else ""
                values.append(f"<td>{_two_lines(difference_text(table, entry), mark=star)}</td>")
            rows.append(f"<tr><td>{escape(row.label)}</td><td>{escape(row.reference)}</td>{''.join(values)}</tr>")
        unit = " (percentage points)" if table.percent else ""
        parts += [
            f'<p class="caption">Paired differences from the reference cell{unit}: Δ [95% interval] and p-value; '
            "* significant: the interval excludes 0 and p &lt; 0.05 (the rule <code>arlon-bench compare</code> gates on).</p>",
            scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"),
        ]
    return "\n".join(parts)


def heat_colours(values: list[float], higher_is_better: bool) -> list[str]:
    """A background colour per value, scaled to this metric's values: the best is the darkest (by the
    metric's direction), the worst the lightest; missing values grey, equal values all mid-scale."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    colours = []
    for value in values:
        if value is None or not math.isfinite(value):
            colours.append(MISSING_COLOUR)
            continue
        goodness = 0.5 if high <= low else (value - low) / (high - low)
        if not higher_is_better:
            goodness = 1.0 - goodness
        start, stop = HEATMAP_RANGE
        colours.append(matplotlib.colors.to_hex(HEATMAP_COLOURS(start + (stop - start) * goodness)))
    return colours


def _text_colour(background: str) -> str:
    red, green, blue = matplotlib.colors.to_rgb(background)
    return "#111" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.55 else "#fff"


def _matrix_cell(row, colour: str, is_reference: bool, digits: int = 3, colspan: int = 1) -> str:
    """One heatmap cell: the mean, its interval below, * for a significant difference from its reference."""
    span = f' colspan="{colspan}"' if colspan > 1 else ""
    style = f' style="background:{colour};color:{_text_colour(colour)}"'
    if row is None or not math.isfinite(row["value"]):
        return f"<td{span}{style}>-</td>"
    text = f"{row['value']:.{digits}f}"
    if math.isfinite(row["low"]) and math.isfinite(row["high"]):
        text += f" [{row['low']:.{digits}f}, {row['high']:.{digits}f}]"
    mark = (" *" if is_significant(row) else "") + (' <span class="ref">ref</span>' if is_reference else "")
    return f'<td{span}{style} title="{escape(row["cell"])}">{_two_lines(text, mark=mark)}</td>'


def matrix_html(matrix: GridMatrix, summary: pd.DataFrame, metrics: list[str] | tuple[str, ...]) -> str:
    """The two crossed settings of a grid as one heatmap table per metric: rows = the first
    setting's values, columns = the second's, each cell its mean with its 95% interval; colour
    scaled per metric from its worst to its best mean (the metric's direction respected). Cells
    outside the matrix (a baseline row) sit under it on the same colour scale."""
    references = set(summary["reference"].dropna())
    shared = next(iter(references)) if len(references) == 1 else None
    blocks = []
    for metric in metrics:
        mine = {row["cell_id"]: row for row in summary[summary["metric"] == metric].to_dict("records")}
        grid_cells = [[matrix.cells[(r, c)] for c in matrix.column_values] for r in matrix.row_values]
        shown = [cell for line in grid_cells for cell in line] + list(matrix.outside)
        means = [mine[cell.id]["value"] if cell.id in mine else math.nan for cell in shown]
        colour = dict(zip([cell.id for cell in shown], heat_colours(means, METRICS.get(metric).higher_is_better)))
        arrow = "↑" if METRICS.get(metric).higher_is_better else "↓"
        columns = len(matrix.column_values)
        head = (
            f'<tr><th></th><th class="axis" colspan="{columns}">{escape(matrix.column_name)}</th></tr>'
            f'<tr><th class="axis">{escape(matrix.row_name)}</th>'
            + "".join(f"<th>{escape(label)}</th>" for label in matrix.column_labels()) + "</tr>"
        )
        body = []
        for label, line in zip(matrix.row_labels(), grid_cells):
            cells = "".join(_matrix_cell(mine.get(c.id), colour[c.id], c.label in references) for c in line)
            body.append(f'<tr><th scope="row">{escape(label)}</th>{cells}</tr>')
        for cell in matrix.outside:
            body.append(
                f'<tr class="outside"><th scope="row">{escape(cell.label)}</th>'
                f"{_matrix_cell(mine.get(cell.id), colour[cell.id], cell.label in references, colspan=columns)}</tr>"
            )
        blocks.append(scroll(
            f'<table class="heatmap" data-metric="{escape(metric)}"><caption>{escape(metric)} {arrow}</caption>'
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
        ))
    against = f"the reference cell {shared}" if shared else "its reference cell"
    caption = (
        f"The grid crosses {matrix.row_name} (rows) with {matrix.column_name} (columns). Each cell: mean over "
        "prompts with its 95% interval. Colour per metric, from its worst mean shown (light) to its best (dark), "
        f"↑ higher is better, ↓ lower is better. * the paired difference from {against} (ref) is significant: "
        "its 95% interval excludes 0 and p < 0.05, the rule "
    )
    return (
        f'<h3>Matrix: {escape(matrix.row_name)} × {escape(matrix.column_name)}</h3>'
        f'<p class="caption">{escape(caption)}<code>arlon-bench compare</code> gates on.</p><div class="heatmaps">{"".join(blocks)}</div>'
    )


def videos_html(rows: list[VideoRow]) -> str:
    if not rows:
        return "<p>No videos in this run yet.</p>"
    labels = [label for label, _ in rows[0].videos]
    head = '<th class="prompt">prompt</th>' + "".join(f'<th class="video-cell">{escape(label)}</th>' for label in labels)
    body = []
    for row in rows:
        cells = [f'<td class="prompt"><code>{escape(row.prompt_id)}</code> seed {row.seed}<br>{escape(row.prompt)}</td>']
        for label, path in row.videos:
            if path is None:
                cells.append('<td class="video-cell">not generated</td>')
            else:
                cells.append(f'<td class="video-cell"><video src="{_data_uri(path, "video/mp4")}" autoplay loop muted playsinline title="{escape(label)}"></video></td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return scroll(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def provenance_html(provenance: Provenance) -> str:
    items = "".join(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in provenance.items)
    cells = "".join(
        f"<tr><td>{escape(label)}</td><td><code>{escape(cell_id)}</code></td><td style='text-align:left'>{escape(checkpoints)}</td></tr>"
        for label, cell_id, checkpoints in provenance.cells
    )
    return (
        f"<dl>{items}</dl>"
        + scroll(f"<table><thead><tr><th>cell</th><th>config hash (cell id)</th><th>checkpoints (sha256)</th></tr></thead><tbody>{cells}</tbody></table>")
        + f"<details><summary>grid.yaml as run</summary><pre>{escape(provenance.grid_yaml)}</pre></details>"
        + "".join(
            f"<details><summary>config of {escape(label)}</summary><pre>{escape(config)}</pre></details>"
            for label, config in provenance.configs.items()
        )
    )


def render_page(
    title: str, description: str, tables: list[ReportTable], figures: list[FigureFile], videos: list[VideoRow],
    provenance: Provenance, matrix: GridMatrix | None = None, summary: pd.DataFrame | None = None,
) -> str:
    """The whole page; a grid that crosses two settings (`matrix`, with the run's `summary`) gets
    its heatmaps before the tables."""
    figure_html = "".join(
        f'<figure class="{"wide" if not figure.name.startswith("bars_") else ""}"><img alt="{escape(figure.name)}" '
        f'src="{_data_uri(figure.png, "image/png")}"><figcaption>{escape(figure.caption)}</figcaption></figure>'
        for figure in figures
    )
    metrics = list(dict.fromkeys(summary["metric"])) if summary is not None else []
    video_note = (
        "The same prompt and seed in every cell (column), side by side; videos loop. "
        "Scaled up with nearest-neighbour pixels."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="caption">{escape(description)}</p>
<nav><a href="#tables">Tables</a><a href="#figures">Figures</a><a href="#videos">Videos</a><a href="#provenance">Provenance</a></nav>
<h2 id="tables">Tables</h2>
{matrix_html(matrix, summary, metrics) if matrix is not None and summary is not None else ""}
{"".join(table_html(table) for table in tables)}
<h2 id="figures">Figures</h2>
<div class="figures">{figure_html}</div>
<h2 id="videos">Videos</h2>
<p class="caption">{video_note}</p>
{videos_html(videos)}
<footer id="provenance"><h2>Provenance</h2>{provenance_html(provenance)}</footer>
</body></html>
"""
