from __future__ import annotations

from bench.grids import load_grid
from bench.report.plots import is_steps_grid, radar_chart, steps_figure, steps_metrics, write_figures
from bench.report.stats import summarize
from tests.bench.mini_run import write_mini_grid
from tests.bench.report.report_data import TABLE2_METRICS, synthetic_scores


def steps_grid(tmp_path, metrics: str | None = None):
    path = tmp_path / "steps.yaml"
    text = write_mini_grid(tmp_path).read_text().replace(
        "rows:\n  - {name: baseline, baseline: true}\naxes:\n  injection.layers: [first:1, last:1]",
        "axes:\n  baseline: [false, true]\n  flow.num_sampling_steps: [2, 3, 5]",
    )
    path.write_text(text)
    return load_grid(path, [f"metrics=[{metrics}]"] if metrics else [])


def test_figure7_plots_aesthetic_and_imaging_against_steps_or_says_what_stands_in(tmp_path):
    grid = steps_grid(tmp_path, "aesthetic_quality, imaging_quality, dynamic_degree")
    assert is_steps_grid(grid) and steps_metrics(grid) == (["aesthetic_quality", "imaging_quality"], True)
    figure = steps_figure(grid, summarize(grid, synthetic_scores(grid, prompts=3), resamples=200))
    assert len(figure.axes) == 2 and "own metrics" not in figure._suptitle.get_text()
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["ARLON", "baseline"] and list(lines[0].get_xdata()) == [2, 3, 5]

    toy = steps_grid(tmp_path)
    figure = steps_figure(toy, summarize(toy, synthetic_scores(toy, prompts=3), resamples=200))
    assert len(figure.axes) == 3 and "its own metrics are shown" in figure._suptitle.get_text()
    layers = load_grid(write_mini_grid(tmp_path))
    assert not is_steps_grid(layers) and steps_figure(layers, summarize(layers, synthetic_scores(layers, prompts=2), resamples=200)) is None


def test_every_figure_is_written_as_png_and_pdf(tmp_path):
    grid = steps_grid(tmp_path)
    files = write_figures(grid, summarize(grid, synthetic_scores(grid, prompts=2), resamples=200), tmp_path / "figures")
    assert [f.name for f in files] == ["figure7_steps"] + [f"bars_{m}" for m in grid.metrics]
    for figure in files:
        assert figure.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.pdf.read_bytes()[:5] == b"%PDF-"
    assert "own metrics stand in" in files[0].caption


def test_radar_chart_needs_the_eleven_dimensions(tmp_path):
    grid = load_grid(write_mini_grid(tmp_path), [f"metrics=[{', '.join(TABLE2_METRICS)}]"])
    figure = radar_chart(grid, summarize(grid, synthetic_scores(grid, prompts=2), resamples=200))
    labels = [line.get_label() for line in figure.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert labels == ["baseline", "layers=first:1", "layers=last:1", "OpenSora-V1.2 (paper)", "ARLON (paper)"]
    assert len(figure.axes[0].get_lines()) == 3 + 11  # every paper model is drawn, two of them labelled
    toy = load_grid(write_mini_grid(tmp_path))
    assert radar_chart(toy, summarize(toy, synthetic_scores(toy, prompts=2), resamples=200)) is None
