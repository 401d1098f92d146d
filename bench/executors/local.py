"""The in-process executor: one unit after another in this process, on CUDA if available, else the CPU."""

from __future__ import annotations

from typing import Sequence

from bench.errors import BenchError
from bench.executors.base import EXECUTORS, Commit, Executor, skipped
from bench.executors.work import (
    GenerationJob,
    Progress,
    ScoringJob,
    TrainUnit,
    UnitFailure,
    WorkContext,
    failure,
    run_generation_job,
    run_scoring_job,
    run_train_unit,
)


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Runs every unit here, in plan order; each cell's checkpoints are loaded once."""

    def __init__(self, device: str | None = None):
        self.device = device

    @classmethod
    def from_options(cls, *, address: str | None, workers: int | None, device: str | None) -> "LocalExecutor":
        if address is not None:
            raise BenchError("--address is an option of --executor ray")
        if workers not in (None, 1):
            raise BenchError("--executor local runs in this process: use --executor processes (or ray) for --workers")
        return cls(device=device)

    def train(
        self, units: Sequence[TrainUnit], context: WorkContext, progress: Progress
    ) -> tuple[dict[str, bool], list[UnitFailure]]:
        cached: dict[str, bool] = {}
        failures: list[UnitFailure] = []
        failed: dict[str, str] = {}  # unit id -> its label
        for done, unit in enumerate(units, start=1):
            blocked = [failed[need] for need in unit.needs if need in failed]
            if blocked:
                failures.append(skipped(unit, blocked[0]))
                failed[unit.id] = unit.label
            else:
                try:
                    cached[unit.id] = run_train_unit(unit, context, progress)
                except Exception as err:  # collected: the cells that need it fail, the others go on
                    failures.append(failure("train", unit.label, err))
                    failed[unit.id] = unit.label
            progress("train", done, len(units))
        return cached, failures

    def generate(self, jobs: Sequence[GenerationJob], context: WorkContext, progress: Progress) -> list[UnitFailure]:
        total = sum(len(job.units) for job in jobs)
        done = 0

        def tick(_unit) -> None:
            nonlocal done
            done += 1
            progress("videos", done, total)

        failures: list[UnitFailure] = []
        for job in jobs:
            failures.extend(run_generation_job(job, context, on_video=tick))
        return failures

    def score(self, jobs: Sequence[ScoringJob], context: WorkContext, commit: Commit, progress: Progress) -> list[UnitFailure]:
        total = sum(len(job.units) for job in jobs)
        done = 0

        def tick(units: int) -> None:
            nonlocal done
            done += units
            progress("scores", done, total)

        failures: list[UnitFailure] = []
        for job in jobs:
            failures.extend(run_scoring_job(job, context, commit, on_video=tick))
        return failures
