"""A grid that varies two settings, laid out as a matrix: one setting's values as rows, the other's
as columns, one cell of the grid at each crossing (the report page's heatmaps).

    from bench.report.matrix import grid_matrix, matrix_frame

    matrix = grid_matrix(grid)                      # None unless two settings are crossed
    matrix_frame(matrix, summary, "toy_layout_iou")  # rows x columns of means (a DataFrame)

The structure is read from the cells' own settings, never from the grid's name: the cells that set
exactly the same two keys form the matrix when every combination of their values is present (an
`axes:` block of two keys always is; `rows:` that cross two keys in full are too). The grid's other
cells, such as a baseline row, stay outside it and are shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.grids import BASELINE, GENERIC_FIELD_NAMES, Cell, Grid


@dataclass(frozen=True)
class GridMatrix:
    """The cells of a grid crossing two settings: `cells[(row value, column value)]`."""

    row_key: str
    column_key: str
    row_values: tuple[Any, ...]  # in the order the grid lists them
    column_values: tuple[Any, ...]
    cells: dict[tuple[Any, Any], Cell]  # every combination is present
    outside: tuple[Cell, ...] = ()  # the grid's other cells (e.g. a baseline row)

    @property
    def row_name(self) -> str:
        return setting_name(self.row_key)

    @property
    def column_name(self) -> str:
        return setting_name(self.column_key)

    def row_labels(self) -> list[str]:
        return [value_text(self.row_key, value) for value in self.row_values]

    def column_labels(self) -> list[str]:
        return [value_text(self.column_key, value) for value in self.column_values]


def setting_name(key: str) -> str:
    """A setting's short name as cell labels write it: injection.fusion -> fusion, noise.strategy -> noise."""
    group, _, name = key.rpartition(".")
    return group.split(".")[0] if name in GENERIC_FIELD_NAMES and group else name


def value_text(key: str, value: Any) -> str:
    """A setting's value as cell labels write it (the baseline flag reads baseline / arlon)."""
    if key == BASELINE:
        return BASELINE if value else "arlon"
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def grid_matrix(grid: Grid) -> GridMatrix | None:
    """The grid's two crossed settings as a matrix (see the module docstring); None when it has none."""
    by_keys: dict[tuple[str, str], list[Cell]] = {}
    for cell in grid.cells:
        keys = tuple(key for key, _ in cell.settings)
        if len(keys) == 2 and keys[0] != keys[1]:
            by_keys.setdefault(keys, []).append(cell)
    for (row_key, column_key), cells in sorted(by_keys.items(), key=lambda item: -len(item[1])):
        at = {(dict(c.settings)[row_key], dict(c.settings)[column_key]): c for c in cells}
        rows = tuple(dict.fromkeys(r for r, _ in at))
        columns = tuple(dict.fromkeys(c for _, c in at))
        if len(rows) < 2 or len(columns) < 2 or len(at) != len(cells) or len(at) != len(rows) * len(columns):
            continue
        inside = {cell.id for cell in cells}
        outside = tuple(cell for cell in grid.cells if cell.id not in inside)
        return GridMatrix(row_key, column_key, rows, columns, at, outside)
    return None


def matrix_frame(matrix: GridMatrix, summary: pd.DataFrame, metric: str, column: str = "value") -> pd.DataFrame:
    """One column of the run's summary (`bench.report.stats.summarize`; default the mean) for
    `metric`, as a rows x columns DataFrame labelled with the settings' values."""
    mine = summary[summary["metric"] == metric].set_index("cell_id")[column]
    values = [[mine.get(matrix.cells[(r, c)].id, float("nan")) for c in matrix.column_values] for r in matrix.row_values]
    frame = pd.DataFrame(values, index=matrix.row_labels(), columns=matrix.column_labels(), dtype=float)
    frame.index.name, frame.columns.name = matrix.row_name, matrix.column_name
    return frame
