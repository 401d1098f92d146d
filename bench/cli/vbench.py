"""`arlon-bench vbench setup|doctor`, `arlon-bench export-vbench` and `arlon-bench import-vbench`.

Thin wrappers over `bench.metrics.vbench` (env, doctor, results_io).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from arlon.checkpoints.io import check_output_dir
from bench.cli.console import cli_console, styled
from bench.metrics.vbench.dimensions import DIMENSIONS
from bench.metrics.vbench.doctor import doctor as run_doctor
from bench.metrics.vbench.env import create_environment, setup_steps
from bench.metrics.vbench.results_io import export_run, import_results, leaderboard_scores
from bench.prompts import load_prompts
from bench.runner import open_run
from bench.store import RunStore, resolve_run_dir

app = typer.Typer(
    name="vbench",
    help="The official VBench package in its own environment: set it up, check its weight files.",
    no_args_is_help=True,
    add_completion=False,
)

SETUP_EXAMPLES = """Examples:

  arlon-bench vbench setup                                   # ~/.cache/arlon-bench/vbench-env

  arlon-bench vbench setup --dir /scratch/vbench-env --torch 2.14.1

  arlon-bench vbench setup --dry-run                         # print the commands only
"""

DOCTOR_EXAMPLES = """Examples:

  arlon-bench vbench doctor

  VBENCH_CACHE_DIR=/data/vbench TORCH_HOME=/data/torch arlon-bench vbench doctor --json

Exit code 0: the environment exists and every dimension listed can run; 1: something is missing.
"""

EXPORT_EXAMPLES = """Examples:

  arlon-bench export-vbench runs/layers /tmp/layers-vbench    # one folder per cell, {prompt}-{i}.mp4
"""

IMPORT_EXAMPLES = """Examples:

  arlon-bench import-vbench evaluation_results/results_eval_results.json

  arlon-bench import-vbench results_eval_results.json --run runs/layers --export-dir /tmp/layers-vbench
"""


@app.command(name="setup", epilog=SETUP_EXAMPLES)
def setup(
    directory: Annotated[Optional[str], typer.Option("--dir", help="Where to create the environment.")] = None,
    torch_version: Annotated[
        Optional[str], typer.Option("--torch", help="torch version for the environment (default: this one's).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the commands without running them.")] = False,
) -> None:
    """Create the isolated environment with vbench==0.1.5 and its pins (setuptools<81, this machine's torch)."""
    console = cli_console()
    if directory is not None:
        check_output_dir(directory, "--dir")
    if dry_run:
        for step in setup_steps(directory, torch_version):
            console.print(f"# {step.what}\n{' '.join(step.command)}", soft_wrap=True)
        return
    python = create_environment(directory, torch_version, echo=lambda line: console.print(line, soft_wrap=True))
    console.print(f"VBench environment ready: {python}; next: `arlon-bench vbench doctor`", soft_wrap=True)


@app.command(name="doctor", epilog=DOCTOR_EXAMPLES)
def doctor(
    dimensions: Annotated[
        Optional[str], typer.Option("--dimensions", help="Comma-separated dimensions (default: all).")
    ] = None,
    directory: Annotated[Optional[str], typer.Option("--dir", help="The environment's folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Per VBench dimension: each weight file present or missing, where VBench reads it, where to get it."""
    names = [d.strip() for d in dimensions.split(",")] if dimensions else None
    for name in names or []:
        if name not in DIMENSIONS:
            raise typer.BadParameter(f"unknown dimension {name!r} (choices: {', '.join(DIMENSIONS)})")
    report = run_doctor(names, directory)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(0 if report.ok else 1)
    console = cli_console()
    env_state = Text("ready", "green") if report.environment_ready else styled("missing:", "red", "run `arlon-bench vbench setup`")
    console.print(Text.assemble(f"environment {report.environment}: ", env_state), soft_wrap=True)
    console.print(f"VBench cache (VBENCH_CACHE_DIR): {report.vbench_cache}", soft_wrap=True)
    console.print(f"torch hub (TORCH_HOME/hub): {report.torch_hub}", soft_wrap=True)
    table = Table(show_lines=True)
    table.add_column("dimension", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("file", "expected at", "get it from"):
        table.add_column(column, overflow="fold")
    for status in report.dimensions:
        state = Text("available", "green") if status.available else Text("unavailable", "red")
        if not status.files:
            table.add_row(Text(status.dimension), state, "(no weights)", "", "")
        for i, f in enumerate(status.files):
            mark = styled("present", "green", f.what) if f.present else styled("missing", "red", f.what)
            where = str(f.found) if f.present and f.found != f.expected else str(f.expected)
            table.add_row(Text(status.dimension if i == 0 else ""), state if i == 0 else "", mark, Text(where),
                          Text("" if f.present else f.source))
        if status.module_missing:
            table.add_row("", "", styled("missing", "red", f"Python module {status.module_missing}"), Text(str(report.environment)),
                          Text(f"install {status.module_missing} into the environment"))
    console.print(table)
    commands = fetch_commands(report)
    if commands:
        console.print("\nto fetch the missing files (on a machine with network, then copy them to the same paths):")
        for line in commands:
            console.print(f"  {line}", soft_wrap=True)
    raise typer.Exit(0 if report.ok else 1)


def fetch_commands(report) -> list[str]:
    """Shell lines that put each missing downloadable file where VBench reads it (each file once)."""
    lines: dict[str, None] = {}
    for status in report.dimensions:
        for f in status.files:
            if f.present:
                continue
            url = f.source.split()[0]
            if url.startswith("https://") and url.endswith(".zip"):
                folder = f.expected.parent.parent
                lines[f"mkdir -p {folder} && wget -P {folder} {url} && unzip -d {folder} {folder}/{url.rsplit('/', 1)[1]}"] = None
            elif url.startswith("https://"):
                lines[f"mkdir -p {f.expected.parent} && wget -O {f.expected} {url}"] = None
            else:
                lines[f"# {f.expected}: {f.source}"] = None
    return list(lines)


def export_vbench(
    run: Annotated[str, typer.Argument(help="A run folder (runs/<name>), or a run name under ./runs.")],
    directory: Annotated[str, typer.Argument(help="Folder to write (one sub-folder per cell).")],
) -> None:
    """Write a run's videos in VBench's standard naming ({prompt}-{i}.mp4) for scoring elsewhere."""
    check_output_dir(directory, "export folder")
    store, grid, limit = open_run(run)
    counts = export_run(store, grid, load_prompts(grid.prompts, limit), directory)
    console = cli_console()
    for cell in grid.cells:
        console.print(f"{cell.label}: {counts[cell.id]} videos -> {Path(directory) / cell.id}", soft_wrap=True)


def import_vbench(
    results: Annotated[str, typer.Argument(help="A VBench *_eval_results.json file.")],
    run: Annotated[Optional[str], typer.Option("--run", help="The run to write into (default: the one the export names).")] = None,
    export_dir: Annotated[
        Optional[str], typer.Option("--export-dir", help="The export folder, when VBench ran on another machine.")
    ] = None,
) -> None:
    """Read VBench's per-video results into the run's store (as the vbench backend's scores)."""
    store = RunStore(resolve_run_dir(run)) if run else None
    summary = import_results(results, store, export_dir)
    console = cli_console()
    for dimension, count in summary.imported.items():
        console.print(f"{dimension}: {count} per-video scores -> {summary.run}", soft_wrap=True)
    for dimension in summary.skipped_dimensions:
        console.print(f"{dimension}: not a dimension this harness scores; left out", soft_wrap=True)
    board = leaderboard_scores({d: v for d, v in summary.aggregates.items() if isinstance(v, (int, float))})
    console.print(
        f"leaderboard (VBench's constants; {len(board.missing)} dimension(s) not scored count as 0): "
        f"quality {board.quality:.4f}, semantic {board.semantic:.4f}, total {board.total:.4f}",
    )
    if summary.unmatched:
        console.print(styled(f"{len(summary.unmatched)} result(s) matched no exported video,", "yellow", f"e.g. {summary.unmatched[0]}"), soft_wrap=True)
        raise typer.Exit(1)
    if run is None and summary.run is None:
        console.print(Text("nothing imported", "yellow"))
        raise typer.Exit(1)
