"""The report page of a run: one self-contained HTML file (no network, no side files) holding the
tables, the figures as base64 PNGs, a grid of sample videos as base64 MP4s (the same prompt and seed
in every cell, side by side, looping) and the provenance footer."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape
from pathlib import Path

from bench.report.plots import FigureFile
from bench.report.provenance import Provenance
from bench.report.tables import ReportTable, difference_text, entry_text

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav a { margin-right: 1rem; } .caption { color: #555; font-size: .9rem; max-width: 60rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .85rem; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; } thead th { border-bottom: 2px solid #444; }
td.paper, th.paper { background: #f6f3ea; color: #6b5b2e; font-style: italic; }
tr.paper-row td { background: #f6f3ea; color: #6b5b2e; font-style: italic; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 1rem; }
figure { margin: 0; } figure img { max-width: 100%; } figcaption { font-size: .8rem; color: #555; }
figure.wide { grid-column: 1 / -1; }
video { width: 128px; height: 128px; image-rendering: pixelated; background: #000; }
td.prompt { white-space: normal; max-width: 18rem; text-align: left; font-size: .8rem; }
footer { margin-top: 3rem; font-size: .8rem; color: #444; } footer dt { font-weight: 600; margin-top: .3rem; }
footer dd { margin-left: 1rem; word-break: break-all; } pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; }
"""


@dataclass(frozen=True)
class VideoRow:
    prompt_id: str
    prompt: str
    seed: int | None
    videos: list[tuple[str, Path | None]]  # (cell label, mp4 or None when not generated)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


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
                text = escape(entry_text(table, row.entries.get(column.metric)))
                cells.append(f"<td><strong>{text}</strong></td>" if table.is_best(best, column, row) and text != "-" else f"<td>{text}</td>")
            if table.reported_columns:
                cells.append(f'<td class="paper">{reported_text}</td>')
        row_class = ' class="paper-row"' if row.is_paper_row else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    unit = " Values in percent." if table.percent else ""
    parts = [
        f"<h3>{escape(table.title)}</h3>",
        f'<p class="caption">{escape(table.caption + unit)}</p>',
        f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    ]
    if table.has_differences:
        head = "<th>row</th><th>vs</th>" + "".join(f"<th>Δ {escape(c.header)}</th>" for c in table.columns)
        rows = []
        for row in table.rows:
            if row.is_paper_row or row.reference is None:
                continue
            values = "".join(f"<td>{escape(difference_text(table, row.entries.get(c.metric)))}</td>" for c in table.columns)
            rows.append(f"<tr><td>{escape(row.label)}</td><td>{escape(row.reference)}</td>{values}</tr>")
        unit = " (percentage points)" if table.percent else ""
        parts += [
            f'<p class="caption">Paired differences from the reference cell{unit}: Δ [95% interval] and p-value.</p>',
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
        ]
    return "\n".join(parts)


def videos_html(rows: list[VideoRow]) -> str:
    if not rows:
        return "<p>No videos in this run yet.</p>"
    labels = [label for label, _ in rows[0].videos]
    head = "<th>prompt</th>" + "".join(f"<th>{escape(label)}</th>" for label in labels)
    body = []
    for row in rows:
        cells = [f'<td class="prompt"><code>{escape(row.prompt_id)}</code> seed {row.seed}<br>{escape(row.prompt)}</td>']
        for label, path in row.videos:
            if path is None:
                cells.append("<td>not generated</td>")
            else:
                cells.append(f'<td><video src="{_data_uri(path, "video/mp4")}" autoplay loop muted playsinline title="{escape(label)}"></video></td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def provenance_html(provenance: Provenance) -> str:
    items = "".join(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in provenance.items)
    cells = "".join(
        f"<tr><td>{escape(label)}</td><td><code>{escape(cell_id)}</code></td><td style='text-align:left'>{escape(checkpoints)}</td></tr>"
        for label, cell_id, checkpoints in provenance.cells
    )
    return (
        f"<dl>{items}</dl>"
        f"<table><thead><tr><th>cell</th><th>config hash (cell id)</th><th>checkpoints (sha256)</th></tr></thead><tbody>{cells}</tbody></table>"
        f"<details><summary>grid.yaml as run</summary><pre>{escape(provenance.grid_yaml)}</pre></details>"
        + "".join(
            f"<details><summary>config of {escape(label)}</summary><pre>{escape(config)}</pre></details>"
            for label, config in provenance.configs.items()
        )
    )


def render_page(
    title: str, description: str, tables: list[ReportTable], figures: list[FigureFile], videos: list[VideoRow], provenance: Provenance
) -> str:
    figure_html = "".join(
        f'<figure class="{"wide" if not figure.name.startswith("bars_") else ""}"><img alt="{escape(figure.name)}" '
        f'src="{_data_uri(figure.png, "image/png")}"><figcaption>{escape(figure.caption)}</figcaption></figure>'
        for figure in figures
    )
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
{"".join(table_html(table) for table in tables)}
<h2 id="figures">Figures</h2>
<div class="figures">{figure_html}</div>
<h2 id="videos">Videos</h2>
<p class="caption">{video_note}</p>
{videos_html(videos)}
<footer id="provenance"><h2>Provenance</h2>{provenance_html(provenance)}</footer>
</body></html>
"""
