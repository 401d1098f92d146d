from __future__ import annotations

import math

from matplotlib.container import ErrorbarContainer

from bench.grids import load_grid
from bench.report.plots import bar_chart, is_steps_grid, radar_chart, steps_figure, steps_metrics, value_limits, write_figures
from bench.report.stats import is_significant, summarize
from tests.bench.mini_run import write_mini_grid
from tests.bench.report.report_data import TABLE2_METRICS, synthetic_scores, table3_grid


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


def test_bars_sit_on_an_axis_fitted_to_the_means_and_intervals_with_stars_where_compare_would_see_a_difference():
    grid = table3_grid(["toy_layout_iou", "toy_trajectory_error"])
    # 0.01 apart per cell (the synthetic base) plus a clear step for two cells: on a 0-1 axis all alike.
    summary = summarize(grid, synthetic_scores(grid, prompts=8, samples=1, shift={"layers_3": 0.03, "layers_8": -0.02}), resamples=400)
    for metric in grid.metrics:
        rows = summary[summary["metric"] == metric]
        figure = bar_chart(grid, summary, metric)
        axes = figure.axes[0]
        low, high = axes.get_ylim()
        assert (low, high) == value_limits(rows["value"], rows["low"], rows["high"])
        assert low <= rows["low"].min() and rows["high"].max() <= high  # every interval in view
        span = rows["high"].max() - rows["low"].min()
        assert high - low < 1.5 * span and low > 0.4  # fitted to the data, not 0-1
        bars = axes.patches
        assert [round(bar.get_y() + bar.get_height(), 9) for bar in bars] == [round(v, 9) for v in rows["value"]]
        errorbar = next(c for c in axes.containers if isinstance(c, ErrorbarContainer))
        whiskers = errorbar.lines[2][0].get_segments()  # a 95% error bar on each bar
        assert [(round(s[0][1], 9), round(s[1][1], 9)) for s in whiskers] == [
            (round(lo, 9), round(hi, 9)) for lo, hi in zip(rows["low"], rows["high"])
        ]
        stars = [text for text in axes.texts if text.get_text() == "*"]
        assert len(stars) == sum(is_significant(row) for row in rows.to_dict("records")) > 0
        assert any(line.get_linestyle() == "--" for line in axes.lines)  # the baseline's mean


def test_value_limits_of_equal_or_missing_values():
    low, high = value_limits([0.5, 0.5], [math.nan, math.nan], [math.nan, math.nan])
    assert low < 0.5 < high and high - low < 0.1
    assert value_limits([math.nan], [math.nan], [math.nan]) is None
