"""`arlon-bench grids`: the shipped ablation grids and their cells."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from bench.cli.console import cli_console, styled
from bench.grids import Grid, load_grid, shipped_grids

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
        if grid.prompts.kind in ("toyworld", "toyworld_long"):
            prompts += f" {grid.prompts.split} x{grid.prompts.n}"
        if grid.prompts.kind == "toyworld_long":
            prompts += f", {grid.prompts.frames}-frame long videos"
        elif grid.long is not None:
            prompts += f", long videos of {grid.long.frames} frames" if grid.long.frames else f", long videos of {grid.long.seconds:g} s"
        console.print(Text.assemble((name, "bold"), f"  {grid.description}"), soft_wrap=True)
        console.print(f"  {len(grid.cells)} cells: {', '.join(cell.label for cell in grid.cells)}", soft_wrap=True)
        console.print(f"  prompts: {prompts}, {grid.samples_per_prompt} video(s) each; metrics: {', '.join(grid.metrics)}", soft_wrap=True)
    console.print("run one with: arlon-bench ablate --grid NAME")


def print_grid_warnings(console: Console, grid: Grid, limit: int | None = None) -> None:
    """One yellow line per warning of the grid (`Grid.warnings`); past `limit`, one line saying how
    many more there are and where to see them. The console is one of `cli_console()`'s (no markup)."""
    shown = grid.warnings if limit is None else grid.warnings[:limit]
    for warning in shown:
        console.print(styled("warning:", "yellow", str(warning)), soft_wrap=True)
    if len(grid.warnings) > len(shown):
        more = len(grid.warnings) - len(shown)
        console.print(styled("warning:", "yellow", f"{more} more; `arlon-bench validate {grid.source}` lists every one"), soft_wrap=True)
