"""The report of a real (mini) run: files, the self-contained HTML page, the provenance footer,
and the report and ablate commands printing where the page is; the page's layout (wide tables
scroll in their own box, the prompt column keeps its width, a two-axis grid is a heatmap per
metric), checked in a real headless browser where Chromium is installed."""

from __future__ import annotations

import base64
import re

import matplotlib.colors
import pandas as pd
import pytest

from bench.grids import load_grid
from bench.metrics import METRICS
from bench.report import write_report
from bench.report.html import STYLE
from bench.report.stats import is_significant
from bench.runner import open_run, run_grid
from tests.bench.mini_run import mini_cache, write_mini_grid  # noqa: F401  (mini_cache is a fixture)
from tests.bench.cli_runner import run_main as _main
from tests.bench.report.browser import find_chromium, measure
from tests.bench.report.page_data import fusion_noise_grid, stored_run


@pytest.fixture(scope="module")
def mini_run(mini_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    grid = load_grid(write_mini_grid(root, prompts=2, samples=2))
    assert run_grid(grid, root / "run", cache_dir=mini_cache).ok
    return root / "run"


def test_the_report_holds_tables_figures_videos_and_provenance(mini_run):
    store, grid, limit = open_run(mini_run)
    report = write_report(store, grid, limit)
    assert set(report.files) == {"tables.md", "tables.tex", "tables.csv", "summary.csv", "report.html"}
    assert [f.name for f in report.figures] == [f"bars_{m}" for m in grid.metrics]
    markdown = report.files["tables.md"].read_text()
    assert "| baseline |" in markdown and "## Provenance" in markdown and "config hash" in markdown
    assert (report.summary["prompts"] == 2).all() and (report.summary["videos"] == 4).all()

    page = report.files["report.html"].read_text()
    assert "http://" not in page and "https://" not in page and "src=\"/" not in page  # self-contained
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(report.figures) and base64.b64decode(images[0])[:4] == b"\x89PNG"
    videos = re.findall(r'<video src="data:video/mp4;base64,([^"]+)"', page)
    assert len(videos) == 2 * 3  # two prompts, three cells side by side
    first = store.video_path(grid.cells[0].id, "toy_heldout_0_00000-0").read_bytes()
    assert base64.b64decode(videos[0]) == first
    manifest = store.read_json("manifest.json")["latest"]["provenance"]
    assert manifest["git_commit"] is None or manifest["git_commit"] in page
    assert "torch " in page and "base seed 0" in page and grid.cells[1].id in page
    assert "config of layers=last:1" in page and "&quot;adaptive_norm&quot;" in page  # every cell's resolved config


def test_report_and_ablate_commands_say_where_the_page_is(mini_run, mini_cache, tmp_path, capsys, monkeypatch):
    code, out, err = _main(capsys, monkeypatch, "report", str(mini_run), "--out", str(tmp_path / "out"), "--videos", "0")
    assert code == 0, err
    assert f"report: {tmp_path / 'out' / 'report.html'}" in out and f"wrote {mini_run / 'results.md'}" in out
    assert "<video" not in (tmp_path / "out" / "report.html").read_text()

    monkeypatch.setenv("ARLON_CACHE_DIR", str(mini_cache))
    grid = write_mini_grid(tmp_path, prompts=1, samples=1)
    monkeypatch.setenv("COLUMNS", "400")  # one path per line
    code, out, err = _main(capsys, monkeypatch, "ablate", "--grid", str(grid), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert out.rstrip().endswith(f"wrote {tmp_path / 'run' / 'report' / 'report.html'}")


@pytest.fixture(scope="module")
def fusion_noise_report(tmp_path_factory):
    """The report of a stored fusion x noise run (synthetic scores, small videos): a two-axis grid."""
    root = tmp_path_factory.mktemp("fusion_noise")
    grid = fusion_noise_grid(root, prompts=6)  # six prompts: a sign-flip p-value can fall below 0.05
    store = stored_run(root / "run", grid)
    return grid, write_report(store, grid, video_prompts=2)


def css_rule(selector: str) -> str:
    found = re.search(rf"(?m)^[^{{}}]*{re.escape(selector)}[^{{}}]*{{([^}}]*)}}", STYLE)
    assert found, f"no CSS rule for {selector}"
    return found.group(1)


def luminance(colour: str) -> float:
    red, green, blue = matplotlib.colors.to_rgb(colour)
    return 0.299 * red + 0.587 * green + 0.114 * blue


def test_every_table_scrolls_in_its_own_box_and_the_prompt_column_keeps_its_width(fusion_noise_report):
    _, report = fusion_noise_report
    page = report.files["report.html"].read_text()
    tables = page.count("<table")
    assert tables >= 10 and page.count('<div class="scroll"><table') == tables  # every table, the videos' too
    assert "overflow-x: auto" in css_rule(".scroll")
    prompt = css_rule("td.prompt")
    assert "white-space: normal" in prompt and re.search(r"min-width: \d+(\.\d+)?rem", prompt)
    assert page.count('<td class="prompt">') == 2 and '<th class="prompt">prompt</th>' in page


def test_a_two_axis_grid_is_a_heatmap_per_metric_with_its_settings_as_rows_and_columns(fusion_noise_report):
    grid, report = fusion_noise_report
    page = report.files["report.html"].read_text()
    summary = pd.read_csv(report.files["summary.csv"])
    stars = 0
    heatmaps = dict(re.findall(r'<table class="heatmap" data-metric="([^"]+)">(.*?)</table>', page, re.S))
    assert list(heatmaps) == list(grid.metrics)
    assert "<h3>Matrix: fusion × noise</h3>" in page
    for metric, table in heatmaps.items():
        head, body = table.split("</thead>")
        assert re.findall(r'<th class="axis"[^>]*>([^<]+)</th>', head) == ["noise", "fusion"]
        assert re.findall(r"<th>([^<]+)</th>", head) == ["none", "gaussian", "uncertainty"]
        assert re.findall(r'<th scope="row">([^<]+)</th>', body) == ["adaptive_norm", "controlnet", "mlp_adapter"]
        cells = re.findall(r'<td style="background:(#[0-9a-f]{6});[^"]*" title="([^"]+)">(.*?)</td>', body)
        labels = [label for _, label, _ in cells]
        assert labels == [f"fusion={f} noise={n}" for f in ("adaptive_norm", "controlnet", "mlp_adapter")
                          for n in ("none", "gaussian", "uncertainty")]  # row by row, in the grid's order
        rows = summary[summary["metric"] == metric].set_index("cell")
        for colour, label, text in cells:
            row = rows.loc[label]
            assert text.startswith(f"{row['value']:.3f}") and f"[{row['low']:.3f}, {row['high']:.3f}]" in text
            assert (" *" in text) == is_significant(row)
            stars += " *" in text
        # Darkest = best, by the metric's direction; the colour spans the metric's own range.
        darkest = min(cells, key=lambda cell: luminance(cell[0]))[1]
        lightest = max(cells, key=lambda cell: luminance(cell[0]))[1]
        best, worst = (rows["value"].idxmax(), rows["value"].idxmin())
        if not METRICS.get(metric).higher_is_better:
            best, worst = worst, best
        assert (darkest, lightest) == (best, worst), metric
    assert not METRICS.get("toy_trajectory_error").higher_is_better  # the page has a lower-is-better metric
    assert stars > 0 and "ref</span>" in heatmaps[grid.metrics[0]]  # the reference cell the stars are against


def test_report_command_on_a_two_axis_run_writes_the_heatmaps(fusion_noise_report, tmp_path, capsys, monkeypatch):
    grid, report = fusion_noise_report
    code, out, err = _main(capsys, monkeypatch, "report", str(report.directory.parent), "--out", str(tmp_path), "--videos", "0")
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert page.count('<table class="heatmap"') == len(grid.metrics) and "<video" not in page


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium to lay out the page (apt-get install -y chromium)")
@pytest.mark.parametrize("width", [1400, 800])
def test_the_page_is_never_wider_than_the_window_in_a_real_browser(fusion_noise_report, width):
    _, report = fusion_noise_report
    page = report.files["report.html"]
    found = measure(page, width)
    assert found["viewport"] == width and found["page"] <= width, found
    assert found["overflowing"] == []
    assert any(visible < full for visible, full in found["scroll_boxes"])  # the wide tables scroll instead
    assert found["prompt_column"] >= 200  # a prompt reads as a few lines, not one word per line
