"""The report of a real (mini) run: files, the self-contained HTML page, the provenance footer,
and the report and ablate commands printing where the page is."""

from __future__ import annotations

import base64
import re

import pytest

from bench.grids import load_grid
from bench.report import write_report
from bench.runner import open_run, run_grid
from tests.bench.mini_run import mini_cache, write_mini_grid  # noqa: F401  (mini_cache is a fixture)
from tests.bench.cli_runner import run_main as _main



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
