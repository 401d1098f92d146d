"""`arlon-bench ablate`, `generate` and `score`: run an ablation grid (or part of it) into a run folder.

Each command is one call of `bench.runner.run_grid`; they differ only in the phases they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from bench.cli.console import cli_console, note_text, styled
from bench.cli.grids import print_grid_warnings
from bench.cli.options import DeviceOpt, SetOpt
from bench.cli.progress import task_bars
from bench.cli.run_options import (
    AddressOpt,
    ExecutorOpt,
    ForceOpt,
    GridOpt,
    LimitOpt,
    OutOpt,
    RunArg,
    WorkersOpt,
)
from bench.cli.sample import parse_device
from bench.cli.tables import ResultsTable, counts_line, differences_rich_table, failures_rich_table, results_rich_table
from bench.errors import BenchError
from bench.executors import make_executor
from bench.metrics import METRICS
from bench.metrics.backends import SCORING_BACKENDS
from bench.grids import Grid, load_grid
from bench.report import write_report
from bench.runner import PHASES, RunSummary, open_run, run_grid
from bench.store import DEFAULT_RUNS_DIR, RunStore

ABLATE_EXAMPLES = """Examples:

  arlon-bench ablate --grid layers

  arlon-bench ablate --grid table3 --limit 2                      # smoke run on two prompts

  arlon-bench ablate --grid fusion --set prompts.n=32 --set train.injector.steps=200 --out runs/fusion-long

  arlon-bench ablate --grid my_grid.yaml --executor ray --address auto

Re-running the same command resumes: finished videos and scores are kept, half-written ones redone;
a larger --limit (or none) extends the run. A run folder holds one run: another grid, other --set
options or a smaller --limit are refused (use another --out, or --overwrite to replace the old run).
Exit code 0: every unit finished; 1: some units failed (listed); 2: a usage or input error.
"""

GENERATE_EXAMPLES = """Examples:

  arlon-bench generate --grid steps

  arlon-bench generate --grid layers --executor ray --workers 4

Trains what the grid's cells need and writes their videos; `arlon-bench score RUN` scores them.
The run folder's rules are ablate's: the same grid and --set options resume it, --overwrite replaces it.
"""

SCORE_EXAMPLES = """Examples:

  arlon-bench score runs/layers

  arlon-bench score layers --force                                # rescore every video

  arlon-bench score layers --backend vbench                       # the six VBench dims of the paper's ablations

  arlon-bench score layers --backend native                       # the same dims computed natively (faster)

  arlon-bench score layers --metrics subject_consistency,temporal_flickering_formula

Scores already in the per-video score cache (ARLON_SCORE_CACHE, default ~/.cache/arlon-bench/scores)
are reused, --force included (ARLON_SCORE_CACHE=off recomputes everything); --backend vbench needs
`arlon-bench vbench setup` and the weights `arlon-bench vbench doctor` lists; --backend native reads the
same weights in this environment (`pip install -e ".[vbench]"`) and computes the dimensions it has a
scorer for with VBench's algorithm; a run keeps the backend its scores were made with. A metric of --metrics
joins the run's tables once a video gets a value for it. Videos of the run that are not generated or
cannot be read are listed as failures (exit code 1).
"""
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace the run the --out folder holds (its videos, scores and tables are deleted first)."),
]
# The VBench dimensions of the paper's ablation tables (Table 3): `--backend vbench` without --metrics.
ABLATION_DIMENSIONS = (
    "subject_consistency", "background_consistency", "motion_smoothness",
    "dynamic_degree", "aesthetic_quality", "imaging_quality",
)


def _run(
    grid: Grid,
    store: RunStore,
    phases: tuple[str, ...],
    executor: str,
    address: str | None,
    workers: int | None,
    device: str | None,
    force: bool,
    limit: int | None,
    score_metrics: tuple[str, ...] | None = None,
    overwrite: bool = False,
    score_backend: str | None = None,
) -> None:
    console = cli_console()
    # Another run in the folder is refused before anything is shown, started or written (run_grid
    # checks again under the run's lock, which is the check that counts).
    store.check_folder()
    if not overwrite:
        store.claim(grid, limit)
    if overwrite and store.holds_run():
        console.print(f"--overwrite: replacing the run in {store.root}: {store.describe()}")
    torch_device = parse_device(device)
    runner = make_executor(executor, address=address, workers=workers, device=str(torch_device) if torch_device else None)
    console.print(Text.assemble(
        "grid ", (grid.name, "bold"), f": {len(grid.cells)} cells, {grid.prompts.kind} prompts"
        f"{f' (first {limit})' if limit else ''}, {grid.samples_per_prompt} video(s) each -> {store.root}",
    ))
    print_grid_warnings(console, grid, limit=5)
    try:
        with task_bars(console) as progress:
            summary = run_grid(
                grid, store, runner, force=force, limit=limit, progress=progress, phases=phases,
                score_metrics=score_metrics, score_backend=score_backend, overwrite=overwrite,
            )
    finally:
        runner.close()
    grid = summary.grid_as_run or grid
    differences = None
    if summary.table is not None and summary.table["videos"].sum() > 0:  # the run ends with its report
        report = write_report(store, grid, limit)
        summary.files.update({f"report/{name}": path for name, path in report.files.items()})
        differences = differences_rich_table(grid, report.summary, saved_at=report.files.get("tables.md"))
    if summary.metrics_left_out:
        console.print(styled(
            "not added to the run's tables, no video got a value:", "yellow",
            f"{', '.join(summary.metrics_left_out)} (the failures below say why)",
        ))
    show_summary(console, grid, summary, differences)


def show_summary(console: Console, grid: Grid, summary: RunSummary, differences: ResultsTable | None = None) -> None:
    """The results table (and each cell's paired difference from its reference cell), the files,
    and the failures (exit code 1 when some unit failed)."""
    if summary.table is not None:
        console.print(results_rich_table(grid, summary.table, saved_at=summary.files.get("results.md")))
    if differences is not None:
        console.print(differences)
    console.print(counts_line(summary))
    for name, path in summary.files.items():
        console.print(f"wrote {path}")
    if summary.failures:
        console.print(failures_rich_table(summary.failures))
        raise typer.Exit(1)


def ablate(
    grid: GridOpt,
    overrides: SetOpt = None,
    executor: ExecutorOpt = "auto",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    limit: LimitOpt = None,
    force: ForceOpt = False,
    out: OutOpt = None,
    device: DeviceOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run an ablation grid: train what each cell needs, generate its videos, score them, print and save the table.

    --set reaches config fields, train.<stage>.<field> (or train.all.<field>), data.<field>,
    prompts.<field>, seed, samples_per_prompt, metrics and preset; the grid's rows and axes win.
    """
    loaded = load_grid(grid, overrides or [])
    store = RunStore(out or Path(DEFAULT_RUNS_DIR) / loaded.name)
    _run(loaded, store, PHASES, executor, address, workers, device, force, limit, overwrite=overwrite)


def generate(
    grid: GridOpt,
    overrides: SetOpt = None,
    executor: ExecutorOpt = "auto",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    limit: LimitOpt = None,
    force: ForceOpt = False,
    out: OutOpt = None,
    device: DeviceOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train what a grid's cells need and generate their videos, without scoring them."""
    loaded = load_grid(grid, overrides or [])
    store = RunStore(out or Path(DEFAULT_RUNS_DIR) / loaded.name)
    _run(loaded, store, ("train", "generate"), executor, address, workers, device, force, limit, overwrite=overwrite)


def score(
    run: RunArg,
    metrics: Annotated[
        Optional[str], typer.Option("--metrics", help="Comma-separated metrics to score (added to the run's table).")
    ] = None,
    backend: Annotated[
        Optional[str],
        typer.Option("--backend", help="Only metrics this backend computes, computed by it: vbench, native, toyworld, formula "
                     "(vbench or native alone: Table 3's six dims)."),
    ] = None,
    executor: ExecutorOpt = "auto",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
) -> None:
    """Score the videos of a run (those without a current score; all with --force) and write the table."""
    store, grid, limit = open_run(run)
    chosen = scoring_metrics(grid, metrics, backend)
    if backend == "native" and metrics is None:
        asked = [m for m in grid.metrics if METRICS.get(m).backend == "vbench"] or ABLATION_DIMENSIONS
        left = [m for m in asked if "native" not in METRICS.get(m).backends]
        if left:
            cli_console().print(note_text(f"the native backend has no scorer for {', '.join(left)} yet: "
                                          f"score them with --backend vbench"), soft_wrap=True)
    _run(grid, store, ("score",), executor, address, workers, None, force, limit, chosen, score_backend=backend)


def scoring_metrics(grid: Grid, metrics: str | None, backend: str | None) -> tuple[str, ...] | None:
    """The metrics `score` computes: --metrics, else the grid's, kept to those --backend computes (None: the grid's)."""
    if metrics is None and backend is None:
        return None
    names = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else grid.metrics
    for name in names:
        METRICS.get(name)  # ConfigError with close matches for a typo
    if backend is not None:
        SCORING_BACKENDS.get(backend)
        if metrics is None:
            names = tuple(m for m in names if backend in METRICS.get(m).backends)
            if not names and backend in ("vbench", "native"):  # native: those of the six it has a scorer for
                names = tuple(m for m in ABLATION_DIMENSIONS if backend in METRICS.get(m).backends)
        wrong = [m for m in names if backend not in METRICS.get(m).backends]
        if wrong:
            official_only = backend == "native" and all(METRICS.get(m).backend == "vbench" for m in wrong)
            hint = "; score them with --backend vbench (the native backend has no scorer for them)" if official_only else ""
            raise BenchError(f"{', '.join(wrong)} not computed by the {backend} backend{hint}")
    if not names:
        raise BenchError(f"no metric to score: the grid lists none of backend {backend!r}; name them with --metrics")
    return names
