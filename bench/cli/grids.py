"""`arlon-bench grids`: the shipped ablation grids and their cells."""

from __future__ import annotations

from rich.text import Text

from bench.cli.console import cli_console
from bench.grids import load_grid, shipped_grids

EXAMPLES = """Examples:

  arlon-bench grids

  arlon-bench ablate --grid layers                                # run one of them
"""


def grids() -> None:
    """List the shipped grids: their cells, prompts and metrics."""
    console = cli_console()
    for name, path in shipped_grids().items():
        grid = load_grid(path)
        prompts = grid.prompts.kind
        if grid.prompts.kind == "toyworld":
            prompts += f" {grid.prompts.split} x{grid.prompts.n}"
        console.print(Text.assemble((name, "bold"), f"  {grid.description}"), soft_wrap=True)
        console.print(f"  {len(grid.cells)} cells: {', '.join(cell.label for cell in grid.cells)}", soft_wrap=True)
        console.print(f"  prompts: {prompts}, {grid.samples_per_prompt} video(s) each; metrics: {', '.join(grid.metrics)}", soft_wrap=True)
    console.print("run one with: arlon-bench ablate --grid NAME")
