"""`arlon-bench validate`: check a grid file and report every problem with its file and line."""

from __future__ import annotations

import typer

from bench.cli.console import cli_console, error_text
from bench.cli.grids import print_grid_warnings
from bench.cli.options import SetOpt
from bench.cli.run_options import GridFileArg
from bench.grids import find_grid, load_grid, validate_grid

EXAMPLES = """Examples:

  arlon-bench validate my_grid.yaml

  arlon-bench validate layers --set prompts.n=4
"""


def validate(grid: GridFileArg, overrides: SetOpt = None) -> None:
    """Check a grid file: keys, config fields and values (types and ranges), registry keys, prompts, metrics,
    duplicate cells. Problems are errors (exit code 2); what runs but may not be meant (no metrics, words
    the model does not know) is a warning."""
    issues = validate_grid(grid, overrides or [])
    if issues:
        err = cli_console(stderr=True)
        for issue in issues:
            err.print(error_text(str(issue)), soft_wrap=True)
        err.print(f"{len(issues)} problem(s) in {find_grid(grid)}", soft_wrap=True)
        raise typer.Exit(2)
    loaded = load_grid(grid, overrides or [])
    print_grid_warnings(cli_console(stderr=True), loaded)
    cli_console().print(f"{find_grid(grid)}: ok, {len(loaded.cells)} cells: {', '.join(c.label for c in loaded.cells)}", soft_wrap=True)
