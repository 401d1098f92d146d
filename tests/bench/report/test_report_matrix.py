"""A grid that crosses two settings is found from its cells (never its name) and laid out as a matrix."""

from __future__ import annotations

import math

from bench.grids import load_grid
from bench.report.matrix import grid_matrix, matrix_frame
from bench.report.stats import summarize
from tests.bench.mini_run import write_mini_grid
from tests.bench.report.page_data import fusion_noise_grid
from tests.bench.report.report_data import synthetic_scores


def mini_grid(tmp_path, name: str, block: str):
    """The mini grid with its rows and axes replaced by `block`, saved as `name`.yaml."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(write_mini_grid(tmp_path).read_text().replace(
        "rows:\n  - {name: baseline, baseline: true}\naxes:\n  injection.layers: [first:1, last:1]", block,
    ).replace("name: mini", f"name: {name}"))
    return load_grid(path)


def test_two_crossed_axes_are_rows_and_columns_in_file_order(tmp_path):
    grid = fusion_noise_grid(tmp_path, prompts=2)
    matrix = grid_matrix(grid)
    assert (matrix.row_name, matrix.column_name) == ("fusion", "noise")
    assert matrix.row_labels() == ["adaptive_norm", "controlnet", "mlp_adapter"]
    assert matrix.column_labels() == ["none", "gaussian", "uncertainty"]
    for (fusion, noise), cell in matrix.cells.items():
        assert (cell.config.injection.fusion, cell.config.noise.strategy) == (fusion, noise)
    assert matrix.outside == ()

    summary = summarize(grid, synthetic_scores(grid, prompts=2, samples=1), resamples=100)
    frame = matrix_frame(matrix, summary, "toy_layout_iou")
    assert frame.shape == (3, 3) and frame.index.name == "fusion" and frame.columns.name == "noise"
    cell = matrix.cells[("controlnet", "gaussian")]
    expected = summary[(summary["cell_id"] == cell.id) & (summary["metric"] == "toy_layout_iou")]["value"].iloc[0]
    assert math.isclose(frame.loc["controlnet", "gaussian"], expected)


def test_the_structure_comes_from_the_cells_not_the_name(tmp_path):
    # A baseline row beside two crossed axes: the row stays outside the matrix; the name says nothing.
    grid = mini_grid(tmp_path, "layers", (
        "rows:\n  - {name: baseline, baseline: true}\n"
        "axes:\n  injection.layers: [first:1, last:1]\n  injection.fusion: [adaptive_norm, mlp_adapter]"
    ))
    matrix = grid_matrix(grid)
    assert (matrix.row_name, matrix.column_name) == ("layers", "fusion")
    assert [cell.label for cell in matrix.outside] == ["baseline"]
    # Rows that cross two settings in full are a matrix too; the baseline flag reads arlon / baseline.
    rows = mini_grid(tmp_path, "anything", "rows:\n" + "".join(
        f"  - {{name: r{i}, baseline: {b}, flow.num_sampling_steps: {s}}}\n"
        for i, (b, s) in enumerate([(b, s) for b in ("false", "true") for s in (2, 3)])
    ))
    matrix = grid_matrix(rows)
    assert matrix.row_labels() == ["arlon", "baseline"] and matrix.column_labels() == ["2", "3"]
    assert matrix.cells[(True, 3)].label == "r3"


def test_one_axis_a_diagonal_or_single_settings_are_no_matrix(tmp_path):
    assert grid_matrix(load_grid(write_mini_grid(tmp_path))) is None  # a baseline row + one axis
    assert grid_matrix(load_grid("table3")) is None  # nine rows, each changing one setting
    diagonal = mini_grid(tmp_path, "fusion_noise", (
        "rows:\n  - {injection.fusion: adaptive_norm, noise.strategy: none}\n"
        "  - {injection.fusion: mlp_adapter, noise.strategy: gaussian}"
    ))
    assert grid_matrix(diagonal) is None  # two settings, but not crossed: a flat list
    assert grid_matrix(mini_grid(tmp_path, "one", "axes:\n  injection.fusion: [adaptive_norm]\n  noise.strategy: [none, gaussian]")) is None
