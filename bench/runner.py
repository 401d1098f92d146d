"""Running an ablation grid: grid -> cells -> units -> executor -> store -> results table.

    from bench.grids import load_grid
    from bench.runner import run_grid

    summary = run_grid(load_grid("layers"), "runs/layers")     # what `arlon-bench ablate --grid layers` runs
    summary.table                                               # pandas DataFrame, one row per cell

1. Plan the videos: every (cell, prompt, k) whose video is not finished in the store (all with `force`).
2. Train what the cells with pending videos need: one `TrainUnit` per distinct stage, shared by the
   cells that train it identically; then gather each such cell's checkpoint folder.
3. Generate the pending videos (each job loads one cell's checkpoints once).
4. Score every (video, metric) without a current score (all with `force`).
5. Write the results table (CSV, Markdown, Parquet when pyarrow is importable) and the manifest.

The run holds the store's lock throughout, so a second run on the same folder is refused. A run
that is killed loses at most the units in flight; the next run skips everything finished.
`force` redoes the run's videos and scores; trained checkpoints stay in the training cache, which
is keyed by everything that determines them (clear ARLON_CACHE_DIR to retrain).

A folder holds one run (`bench.store.RunStore.claim`): another grid, other --set options or a
smaller --limit are refused before anything is written, unless `overwrite` deletes the old run
first. Scoring counts what it stored: a score "computed" is a record written now, and the videos
of the run that cannot be scored (not generated, or damaged since) are failures named one by one.
Metrics that `score_metrics` adds join the run's tables only when some video got a value.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from arlon.config import ArlonConfig
from arlon.training import DataConfig, TrainConfig
from arlon.training.cache import cache_root, hash_json, train_key_fields
from arlon.training.data import is_prepared
from arlon.training.stages import RECIPE_VERSIONS, check_trained_here, is_trained_here, stage_configs, stage_dependencies
from bench.errors import BenchError
from bench.executors import Executor, make_executor
from bench.executors.work import (
    LATENTS,
    SEED_RULE,
    GenerateUnit,
    GenerationJob,
    Progress,
    ScoreUnit,
    ScoringJob,
    TrainUnit,
    UnitFailure,
    WorkContext,
    cell_stages,
    failure,
    gather_checkpoints,
    score_key,
    seed_for,
)
from bench.grids import Cell, Grid, toy_judge_problems
from bench.metrics import METRICS
from bench.preflight import check_run_inputs
from bench.prompts import BenchPrompt, load_prompts
from bench.results import collect_scores, current_scores, require_scores, results_table, write_results
from bench.store import NOT_GENERATED, RunStore, provenance, resolve_run_dir

PHASES = ("train", "generate", "score")
# Training order in which every stage comes after the stages it needs (arlon.training.stages).
STAGE_ORDER = ("vae", LATENTS, "ar_vq", "dit_vq", "ar", "backbone", "injector")


def no_progress(task: str, done: int, total: int, loss: float | None = None) -> None:
    """The default progress callback."""


@dataclass
class PhaseCounts:
    """Units of one phase: how many there are, were already done, ran now, failed."""

    total: int = 0
    skipped: int = 0  # already finished (in the store, or in the training cache)
    run: int = 0
    failed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunSummary:
    run_dir: Path
    grid: str
    cells: int
    counts: dict[str, PhaseCounts]  # per phase: train, generate, score
    failures: list[UnitFailure] = field(default_factory=list)
    table: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    grid_as_run: Grid | None = None  # the grid saved in the run: with the metrics `score` added that got values
    metrics_left_out: tuple[str, ...] = ()  # metrics asked of `score` that no video got a value for

    @property
    def ok(self) -> bool:
        return not self.failures


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def needs_reference(grid: Grid) -> bool:
    """Whether a metric of the grid compares with the AR-decoded reference video."""
    return any("reference_video" in METRICS.get(metric).inputs for metric in grid.metrics)


def plan_videos(
    grid: Grid, prompts: list[BenchPrompt], store: RunStore, force: bool = False
) -> tuple[dict[str, list[GenerateUnit]], int]:
    """({cell id: its pending videos}, number of videos already finished)."""
    pending: dict[str, list[GenerateUnit]] = {}
    finished = 0
    for cell in grid.cells:
        for prompt in prompts:
            for k in range(grid.samples_per_prompt):
                unit = GenerateUnit(
                    cell.id, prompt.id, prompt.text, k, seed_for(prompt.id, k, grid.seed),
                    parts=grid.video_parts(prompt, cell.config.video.fps), overlap=grid.long.overlap if grid.long else None,
                )
                if not force and store.video_record(cell.id, unit.name, unit.seed) is not None:
                    finished += 1
                else:
                    pending.setdefault(cell.id, []).append(unit)
    return pending, finished


def plan_training(cells: list[tuple[Cell, tuple[str, ...]]]) -> tuple[list[TrainUnit], dict[str, set[str]]]:
    """The training units of `(cell, stages it loads)` pairs, each stage once per distinct identity,
    in dependency order; and {cell id: ids of the units it needs}.

    A unit's id hashes what determines the stage's weights (`TrainingSession.stage_key`'s inputs)
    with the ids of the units it trains on in place of their weights, so it is known before
    anything is trained; cells that agree on all of it share the unit.
    """
    units: dict[str, TrainUnit] = {}
    users: dict[str, list[str]] = {}
    needed_by_cell: dict[str, set[str]] = {}
    for cell, stages in cells:
        ids: dict[str, str] = {}
        wanted = _with_dependencies(cell, stages)
        for stage in (s for s in STAGE_ORDER if s in wanted):
            needs = _unit_needs(cell, stage)
            ids[stage] = _unit_id(cell, stage, {need: ids[need] for need in needs})
            if ids[stage] not in units:
                units[ids[stage]] = TrainUnit(
                    ids[stage], stage, stage, cell.config, cell.recipes, cell.data, tuple(ids[need] for need in needs)
                )
            users.setdefault(ids[stage], []).append(cell.label)
        needed_by_cell[cell.id] = set(ids.values())
    labelled = [
        dataclasses.replace(unit, label=unit.stage if len(users[unit.id]) > 1 else f"{unit.stage} ({users[unit.id][0]})")
        for unit in units.values()
    ]
    return labelled, needed_by_cell


def _unit_needs(cell: Cell, stage: str) -> tuple[str, ...]:
    if stage == LATENTS:
        return ("vae",) if is_trained_here("vae", cell.config) else ()
    needs = stage_dependencies(stage, cell.config)
    if is_prepared(cell.data.source):  # latents already encoded: no pool to make, no VAE to run
        return tuple(need for need in needs if need != "vae")
    return needs if stage == "vae" else (*needs, LATENTS)


def _with_dependencies(cell: Cell, stages: tuple[str, ...]) -> set[str]:
    wanted: set[str] = set()
    pending = list(stages)
    while pending:
        stage = pending.pop()
        if stage not in wanted:
            wanted.add(stage)
            pending.extend(_unit_needs(cell, stage))
    return wanted


def _unit_id(cell: Cell, stage: str, upstream: dict[str, str]) -> str:
    cfg = cell.config
    if stage == LATENTS:
        blob = {
            "stage": LATENTS,
            "recipe": RECIPE_VERSIONS["latents"],
            "data": dataclasses.asdict(cell.data),
            "video": dataclasses.asdict(cfg.video),
            "vae": upstream.get("vae") or dataclasses.asdict(cfg.vae),
        }
    else:
        blob = {
            "stage": stage,
            "recipe": RECIPE_VERSIONS[stage],
            "configs": stage_configs(stage, cfg),
            "train": train_key_fields(cell.recipe(stage), cell.data),
            "data": dataclasses.asdict(cell.data),
            "upstream": upstream,
        }
    return hash_json(blob)


def plan_scores(
    grid: Grid,
    prompts: list[BenchPrompt],
    store: RunStore,
    force: bool = False,
    metrics: tuple[str, ...] | None = None,
    backend: str | None = None,
) -> tuple[list[ScoringJob], int, list[tuple[Cell, str, str]]]:
    """(one scoring job per cell and metric backend with pending scores, scores already current,
    (cell, video, why) of the videos that cannot be scored); `metrics`: only these of the grid's
    metrics (default: all); `backend`: compute them with this backend where it can (`score --backend
    native`), else each metric keeps the backend the run's scores of it were made with (see
    `scoring_backends`)."""
    by_id = {prompt.id: prompt for prompt in prompts}
    chosen_metrics = grid.metrics if metrics is None else metrics
    records = {cell.id: store.read_scores(cell.id) for cell in grid.cells}  # read once, used twice
    backends = scoring_backends(records, chosen_metrics, backend)
    jobs, current, unavailable = [], 0, []
    for cell in grid.cells:
        stored = {(r["video"], r["metric"]): r.get("key") for r in records[cell.id]}
        units = []
        for prompt in prompts:
            for k in range(grid.samples_per_prompt):
                video = f"{prompt.id}-{k}"
                record, problem = store.check_video(cell.id, video, seed_for(prompt.id, k, grid.seed))
                if record is None:
                    unavailable.append((cell, video, problem))
                    continue
                for metric in chosen_metrics:
                    key = score_key(record, metric, prompt.id, backends[metric])
                    if not force and stored.get((video, metric)) == key:
                        current += 1
                    else:
                        units.append(ScoreUnit(cell.id, video, prompt.id, k, metric, key, backends[metric]))
        for job_backend in dict.fromkeys(unit.backend for unit in units):
            mine = tuple(unit for unit in units if unit.backend == job_backend)
            used = dict.fromkeys(unit.prompt_id for unit in mine)
            jobs.append(ScoringJob(cell.id, job_backend, mine, tuple(by_id[p] for p in used)))
    return jobs, current, unavailable


def scoring_backends(records: Mapping[str, list[dict]], metrics: Sequence[str], backend: str | None = None) -> dict[str, str]:
    """{metric: the backend that scores it}: `backend` for the metrics it computes; else the backend every
    stored score of the metric in this run was made with (a run scored with `--backend native` stays native
    when it is resumed or extended); else the metric's own."""
    made_with: dict[str, set[str]] = {}
    for cell_records in records.values():  # {cell id: its stored score records}
        for record in cell_records:
            made_with.setdefault(record["metric"], set()).add(record.get("backend"))
    chosen = {}
    for metric in metrics:
        spec = METRICS.get(metric)
        previous = made_with.get(metric, set())
        if backend is not None and backend in spec.backends:
            chosen[metric] = backend
        elif len(previous) == 1 and next(iter(previous)) in spec.backends:
            chosen[metric] = next(iter(previous))
        else:
            chosen[metric] = spec.backend
    return chosen


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_grid(
    grid: Grid,
    store: RunStore | str | os.PathLike,
    executor: Executor | str = "local",
    *,
    force: bool = False,
    limit: int | None = None,
    progress: Progress | None = None,
    phases: tuple[str, ...] = PHASES,
    cache_dir: str | os.PathLike | None = None,
    score_metrics: tuple[str, ...] | None = None,
    score_backend: str | None = None,
    overwrite: bool = False,
) -> RunSummary:
    """Train, generate, score and tabulate `grid` into `store` (see the module docstring).

    `executor`: an Executor or a key of EXECUTORS; `limit`: the first N prompts only; `phases`: a
    subset of PHASES ("generate" trains what it needs); `cache_dir`: the training cache (default
    $ARLON_CACHE_DIR, else ~/.cache/arlon-bench); `score_metrics`: score these metrics (added to the
    grid's when some video gets a value; `arlon-bench score --metrics/--backend`); `score_backend`:
    compute them with this backend where it can (`plan_scores`); `overwrite`:
    delete the run the folder holds first, whatever it is. Unit failures are collected in the summary.
    """
    unknown = [phase for phase in phases if phase not in PHASES]
    if unknown:
        raise BenchError(f"unknown phase(s) {unknown} (choices: {', '.join(PHASES)})")
    store = store if isinstance(store, RunStore) else RunStore(store)
    progress = progress or no_progress
    prompts = load_prompts(grid.prompts, limit)
    # The grid's own metrics were checked against its prompts when it loaded; metrics asked for here
    # (`score --metrics`) are checked now, before anything is written.
    problems = toy_judge_problems(grid.prompts, prompts, [m for m in score_metrics or () if m not in grid.metrics])
    if problems:
        more = f" (and {len(problems) - 1} more line(s))" if len(problems) > 1 else ""
        raise BenchError(f"{problems[0]}{more}")
    store.check_folder()  # before the lock file is made in a folder of other files
    owns_executor = isinstance(executor, str)
    with store.lock():
        if overwrite:
            store.clear()
        added = store.claim(grid, limit)
        grid = with_metrics(grid, added) if added else grid
        new_metrics = tuple(m for m in dict.fromkeys(score_metrics or ()) if m not in grid.metrics)
        if owns_executor:
            executor = make_executor(executor)
        try:
            context = WorkContext(str(store.root.resolve()), str(cache_root(cache_dir).resolve()), executor.device)
            summary = RunSummary(store.root, grid.name, len(grid.cells), {phase: PhaseCounts() for phase in PHASES})
            run = _Run(grid, store, executor, prompts, force, progress, context, summary, score_metrics, added, new_metrics,
                       score_backend)
            return _run_locked(run, limit, phases)
        finally:
            if owns_executor:
                executor.close()


def train_stages(
    cfg: ArlonConfig,
    stages: Sequence[str],
    recipes: Mapping[str, TrainConfig],
    data: DataConfig = DataConfig(),
    executor: Executor | str = "local",
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    use_shipped: bool = True,
    injector_cells: Sequence[Cell] = (),
) -> tuple[dict[str, bool], list[UnitFailure]]:
    """Train `stages` of one config (and the stages they need) into the cache, as the units of a
    grid are trained: each unit starts as soon as its needs are done, so an executor with several
    workers trains independent stages (the AR model and the backbone) side by side.

    `recipes` holds a TrainConfig for every stage trained (dependencies included; see
    `bench.cli.train.stage_recipes`); `use_shipped=False` trains the stages the package ships too.
    `injector_cells` (grid cells) get their injectors trained in the same plan, sharing the stages
    they have in common with `cfg`.
    Returns ({stage, or "injector (<cell label>)" for a cell's own injector: True when it came from
    the cache}, failures).
    """
    for stage in stages:
        check_trained_here(stage, cfg)
    cell = Cell(label=cfg.name, config=cfg.validate(), is_baseline=False, recipes=tuple(recipes.items()), data=data)
    plan = [(cell, tuple(stages)), *((other, ("injector",)) for other in injector_cells)]
    units, needed_by_cell = plan_training(plan)
    for planned, _ in plan:
        for unit in units:
            if unit.stage != LATENTS and unit.id in needed_by_cell[planned.id]:
                planned.recipe(unit.stage).validate(unit.stage)  # a missing step count fails here, not in a worker
    own = needed_by_cell[cell.id]
    units = [dataclasses.replace(unit, label=unit.stage) if unit.id in own else unit for unit in units]
    owns_executor = isinstance(executor, str)
    if owns_executor:
        executor = make_executor(executor)
    try:
        cache = str(cache_root(cache_dir).resolve())
        context = WorkContext(cache, cache, executor.device, use_shipped)
        cached, failures = executor.train(units, context, progress or no_progress)
    finally:
        if owns_executor:
            executor.close()
    by_id = {unit.id: unit.label for unit in units}
    return {by_id[unit_id]: was_cached for unit_id, was_cached in cached.items()}, failures


def with_metrics(grid: Grid, metrics: tuple[str, ...]) -> Grid:
    """The grid with `metrics` added to its own (and to the document saved as the run's grid.yaml)."""
    merged = tuple(dict.fromkeys(grid.metrics + tuple(metrics)))
    return dataclasses.replace(grid, metrics=merged, document={**grid.document, "metrics": list(merged)})


@dataclass
class _Run:
    """What every phase of one invocation works with."""

    grid: Grid
    store: RunStore
    executor: Executor
    prompts: list[BenchPrompt]
    force: bool
    progress: Progress
    context: WorkContext
    summary: RunSummary
    score_metrics: tuple[str, ...] | None = None
    added_metrics: tuple[str, ...] = ()  # metrics an earlier `score` added to the run
    new_metrics: tuple[str, ...] = ()  # metrics this `score` adds, if some video gets a value
    score_backend: str | None = None  # `score --backend`: the backend that computes the metrics it can


def _run_locked(run: _Run, limit: int | None, phases: tuple[str, ...]) -> RunSummary:
    grid, store, summary = run.grid, run.store, run.summary
    started = time.perf_counter()
    entry = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "grid": grid.name,
        "grid_version": grid.version,
        "grid_source": grid.source,
        "overrides": list(grid.overrides),
        "executor": type(run.executor).__name__,
        "phases": list(phases),
        "force": run.force,
        "limit": limit,
        "prompts": len(run.prompts),
        "seeds": {"base_seed": grid.seed, "rule": SEED_RULE},
        "cache_dir": run.context.cache_dir,
        "provenance": provenance(run.context.torch_device),
    }
    store.save_grid(grid, limit, run.added_metrics)
    store.save_prompts(run.prompts)
    for cell in grid.cells:
        store.save_cell(cell)
    store.record_invocation(entry)
    summary.grid_as_run = grid
    try:
        if "train" in phases or "generate" in phases:
            _train_and_generate(run, generate="generate" in phases)
        if "score" in phases:
            _score(run, unavailable_fail="generate" not in phases)
            clock = time.perf_counter()
            if run.new_metrics:
                scored = collect_scores(with_metrics(grid, run.new_metrics), store, run.prompts)
                valued = set(scored.loc[scored["value"].notna(), "metric"])
                kept = tuple(m for m in run.new_metrics if m in valued)
                summary.metrics_left_out = tuple(m for m in run.new_metrics if m not in valued)
                if kept:
                    grid = summary.grid_as_run = with_metrics(grid, kept)
                    store.save_grid(grid, limit, run.added_metrics + kept)
            scores = collect_scores(grid, store, run.prompts)
            summary.table = results_table(grid, scores)
            summary.files = write_results(grid, store, summary.table, scores)
            summary.wall_s["table"] = round(time.perf_counter() - clock, 2)
    except BaseException:
        entry.update(status="interrupted", wall_s=summary.wall_s)
        store.record_invocation(entry)
        raise
    summary.wall_s["total"] = round(time.perf_counter() - started, 2)
    store.write_json("failures.json", [f.to_dict() for f in summary.failures])
    entry.update(
        status="ok" if summary.ok else "failed units",
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        counts={phase: counts.to_dict() for phase, counts in summary.counts.items()},
        failures=len(summary.failures),
        wall_s=summary.wall_s,
    )
    store.record_invocation(entry)
    return summary


def _train_and_generate(run: _Run, generate: bool) -> None:
    grid, summary = run.grid, run.summary
    clock = time.perf_counter()
    pending, finished = plan_videos(grid, run.prompts, run.store, run.force)
    videos = summary.counts["generate"]
    videos.total, videos.skipped = finished + sum(len(units) for units in pending.values()), finished
    with_reference = needs_reference(grid)
    cells = [cell for cell in grid.cells if cell.id in pending]
    check_run_inputs(grid, cells)  # a missing released checkpoint stops the run here, before any work
    stages = {cell.id: cell_stages(cell, with_reference) for cell in cells}

    # 1. Train what the pending videos need.
    units, needed = plan_training([(cell, stages[cell.id]) for cell in cells])
    cached, failures = run.executor.train(units, run.context, run.progress) if units else ({}, [])
    summary.failures.extend(failures)
    training = summary.counts["train"]
    training.total, training.skipped = len(units), sum(cached.values())
    training.run, training.failed = len(cached) - training.skipped, len(units) - len(cached)
    summary.wall_s["train"] = round(time.perf_counter() - clock, 2)
    if not generate:
        return

    # 2. Gather each cell's checkpoints, then generate.
    clock = time.perf_counter()
    jobs = []
    for cell in cells:
        missing = sorted(unit for unit in needed[cell.id] if unit not in cached)
        try:
            if missing:
                raise BenchError(f"{len(missing)} training unit(s) it needs failed")
            directory, checkpoints = gather_checkpoints(cell, stages[cell.id], run.context.cache_dir)
        except Exception as err:  # the cell's videos fail; the other cells go on
            broken = failure("generate", f"{cell.label}: checkpoints", err)
            summary.failures.extend(
                UnitFailure("generate", f"{cell.label}: {u.name}", broken.error, broken.details) for u in pending[cell.id]
            )
            videos.failed += len(pending[cell.id])
            continue
        run.store.save_checkpoints(cell.id, checkpoints)
        jobs.append(GenerationJob(cell, directory, with_reference, tuple(pending[cell.id])))
    failures = run.executor.generate(jobs, run.context, run.progress) if jobs else []
    summary.failures.extend(failures)
    videos.failed += len(failures)
    videos.run = videos.total - videos.skipped - videos.failed
    summary.wall_s["generate"] = round(time.perf_counter() - clock, 2)


def _score(run: _Run, unavailable_fail: bool) -> None:
    """Score what is pending; `unavailable_fail`: a video of the run that cannot be scored is a failure
    (when this invocation generated nothing: otherwise its generation failure already says so)."""
    clock = time.perf_counter()
    metrics = run.score_metrics
    jobs, current, unavailable = plan_scores(run.grid, run.prompts, run.store, run.force, metrics, run.score_backend)
    stored = 0

    def commit(cell_id: str, records: list[dict]) -> None:
        nonlocal stored
        run.store.add_scores(cell_id, records)
        stored += len(records)

    failures = run.executor.score(jobs, run.context, commit, run.progress) if jobs else []
    run.summary.failures.extend(failures)
    scores = run.summary.counts["score"]
    scores.total = current + sum(len(job.units) for job in jobs)
    scores.skipped, scores.run = current, stored
    # A failure may stand for many units (a metric its backend cannot compute at all): count units.
    scores.failed = scores.total - current - stored
    if unavailable_fail and unavailable:
        per_video = len(metrics if metrics is not None else run.grid.metrics)
        scores.total += per_video * len(unavailable)
        scores.failed += per_video * len(unavailable)
        command = run.store.resume_command()
        run.summary.failures.extend(
            UnitFailure("score", f"{cell.label}: {video}", unavailable_error(problem, command)) for cell, video, problem in unavailable
        )
    run.summary.wall_s["score"] = round(time.perf_counter() - clock, 2)


def unavailable_error(problem: str, resume_command: str) -> str:
    """Why a video of a run cannot be scored (`RunStore.check_video`'s reason), and what makes it."""
    if problem == NOT_GENERATED:
        return f"not generated yet; resuming the run makes it: {resume_command}"
    return f"{problem}; resuming the run makes it again: {resume_command}"


# ---------------------------------------------------------------------------------------------
# Existing runs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellStatus:
    label: str
    cell_id: str
    is_baseline: bool
    has_checkpoints: bool
    videos_done: int
    videos_total: int
    scores_done: int
    scores_total: int
    unfinished_segments: int = 0  # DiT segments kept for long videos still being made (resumed next run)


def open_run(run: str | os.PathLike) -> tuple[RunStore, Grid, int | None]:
    """(store, grid as last run, its --limit) of an existing run folder (or a name under ./runs)."""
    store = RunStore(resolve_run_dir(run))
    grid, limit = store.load_grid()
    return store, grid, limit


def run_status(store: RunStore, grid: Grid, limit: int | None = None) -> list[CellStatus]:
    """What is finished, per cell: checkpoints gathered, videos, current scores (reads only)."""
    prompts = load_prompts(grid.prompts, limit)
    statuses = []
    for cell in grid.cells:
        finished = list(current_scores(grid, store, cell, prompts))
        videos, scores = len(finished), sum(len(current) for *_, current in finished)
        total_videos = len(prompts) * grid.samples_per_prompt
        statuses.append(
            CellStatus(
                cell.label, cell.id, cell.is_baseline, store.has_checkpoints(cell.id),
                videos, total_videos, scores, total_videos * len(grid.metrics),
                len(list((store.cell_dir(cell.id) / "unfinished").glob("*/segment-*.pt"))),
            )
        )
    return statuses


def report_run(store: RunStore, grid: Grid, limit: int | None = None) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Rebuild the results table and its files from the scores in the store (computes nothing new);
    a run without any score is a BenchError that says which command makes them. What the table
    lacks is `run_coverage`'s to tell."""
    prompts = load_prompts(grid.prompts, limit)
    with store.lock():
        scores = collect_scores(grid, store, prompts)
        require_scores(grid, store, prompts, scores)
        table = results_table(grid, scores)
        return table, write_results(grid, store, table, scores)
