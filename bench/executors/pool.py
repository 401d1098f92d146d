"""What the executors that run units as parallel tasks share: training waves, generation and scoring parts.

A subclass says how a task is started (`_submit`) and how finished tasks come back (`_finished`);
`bench.executors.processes` (worker processes on this machine) and `bench.executors.ray_executor`
(Ray tasks, on this machine or a cluster) are the two.

- A training unit starts as soon as the units it needs are done (the AR model as soon as the AR-ratio
  VQ-VAE is, while the backbone may still train), each unit a task, so two workers never train the
  same stage and every cell's injector trains in parallel.
- Generation and scoring run as one task per cell, split into parts when there are fewer cells than
  workers (and into parts of at most `max_videos_per_task` videos), so a worker loads a cell's
  checkpoints once for the videos of its part.
- Workers write videos straight into the run's store; score records come back to the calling
  process, which holds the run's lock and writes the score files.
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from typing import Any, Callable, Iterator, Sequence

from bench.executors.base import Commit, Executor, skipped
from bench.executors.work import (
    GenerationJob,
    Progress,
    ScoringJob,
    TrainUnit,
    UnitFailure,
    WorkContext,
    collect_scoring_job,
    run_generation_job,
    run_train_unit,
)


def split_parts(items: Sequence, parts: int) -> list[tuple]:
    """`items` in at most `parts` contiguous, nearly equal, non-empty pieces."""
    size = math.ceil(len(items) / max(1, parts))
    return [tuple(items[start : start + size]) for start in range(0, len(items), size)]


def one_line(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message[:300]}"


def units_alone(units: Sequence[TrainUnit]) -> set[str]:
    """Ids of the units that never run beside another: every other unit needs them or is needed by
    them (the VAE and its latent pools in `train --all`). A function of the plan alone, not of
    timing, so the thread count a unit trains with (and so its weights, to the last bit) is too."""
    needs = {unit.id: set(unit.needs) for unit in units}
    ancestors: dict[str, set[str]] = {}
    for unit in units:  # plans list units after the units they need
        ancestors[unit.id] = set().union(*({need} | ancestors.get(need, set()) for need in needs[unit.id]))
    related = {uid: set(ancestors[uid]) for uid in ancestors}
    for uid, above in ancestors.items():
        for ancestor in above:
            related.setdefault(ancestor, set()).add(uid)
    everyone = set(ancestors)
    return {uid for uid in everyone if related[uid] >= everyone - {uid}}


class TaskPoolExecutor(Executor):
    """Runs units as tasks on `workers` parallel workers; see the module docstring."""

    workers: int = 1
    max_videos_per_task: int | None = None  # None: one part per worker share of a cell

    @abstractmethod
    def _submit(self, fn: Callable, *args: Any, alone: bool = False) -> Any:
        """Start `fn(*args)` on a worker; returns a handle. `alone`: no other task can run meanwhile
        (the plan says so), so the task may use every core of its machine."""

    @abstractmethod
    def _finished(self, handles: Sequence[Any], progress: Progress) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """Yield (handle, result or None, error or None) as the tasks finish."""

    def _parts(self, items: Sequence, jobs: int) -> list[tuple]:
        parts = max(1, math.ceil(self.workers / max(1, jobs)))
        if self.max_videos_per_task is not None:
            parts = max(parts, math.ceil(len(items) / self.max_videos_per_task))
        return split_parts(items, parts)

    def _results(self, tasks: dict[Any, Any], progress: Progress) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """(payload, result, error) of every task of `tasks` (handle -> payload), as they finish."""
        for handle, result, error in self._finished(list(tasks), progress):
            yield tasks[handle], result, error

    def train(
        self, units: Sequence[TrainUnit], context: WorkContext, progress: Progress
    ) -> tuple[dict[str, bool], list[UnitFailure]]:
        cached: dict[str, bool] = {}
        failures: list[UnitFailure] = []
        failed: dict[str, str] = {}  # unit id -> its label
        finished: set[str] = set()
        planned = {unit.id for unit in units}
        alone = units_alone(units)
        waiting, running = list(units), {}
        while waiting or running:
            # Start every unit whose needs are done (a need outside the plan counts as done);
            # a unit whose need failed is not run.
            still_waiting = []
            for unit in waiting:
                blocked = [failed[need] for need in unit.needs if need in failed]
                if blocked:
                    failures.append(skipped(unit, blocked[0]))
                    failed[unit.id] = unit.label
                    progress("train", len(finished) + len(failed), len(units))
                elif all(need in finished or need not in planned for need in unit.needs):
                    running[self._submit(run_train_unit, unit, context, alone=unit.id in alone)] = unit
                else:
                    still_waiting.append(unit)
            if not running:
                if len(still_waiting) == len(waiting):
                    raise ValueError(f"training units wait on each other: {', '.join(u.label for u in waiting)}")
                waiting = still_waiting
                continue  # the units just skipped may block others: go round again
            waiting = still_waiting
            handle, result, error = next(self._finished(list(running), progress))
            unit = running.pop(handle)
            if error is None:
                cached[unit.id] = result
                finished.add(unit.id)
            else:
                failures.append(UnitFailure("train", unit.label, one_line(error), str(error)))
                failed[unit.id] = unit.label
            progress("train", len(finished) + len(failed), len(units))
        return cached, failures

    def generate(self, jobs: Sequence[GenerationJob], context: WorkContext, progress: Progress) -> list[UnitFailure]:
        total = sum(len(job.units) for job in jobs)
        tasks = {
            self._submit(run_generation_job, dataclasses.replace(job, units=part), context): (job, part)
            for job in jobs
            for part in self._parts(job.units, len(jobs))
        }
        failures: list[UnitFailure] = []
        done = 0
        for (job, part), result, error in self._results(tasks, progress):
            if error is None:
                failures.extend(result)
            else:
                failures.extend(UnitFailure("generate", f"{job.cell.label}: {u.name}", one_line(error), str(error)) for u in part)
            done += len(part)
            progress("videos", done, total)
        return failures

    def score(self, jobs: Sequence[ScoringJob], context: WorkContext, commit: Commit, progress: Progress) -> list[UnitFailure]:
        total = sum(len(job.units) for job in jobs)
        tasks = {}
        for job in jobs:
            videos = list(dict.fromkeys(unit.video for unit in job.units))  # split between videos, not inside one
            for part in self._parts(videos, len(jobs)):
                chosen = set(part)
                units = tuple(unit for unit in job.units if unit.video in chosen)
                tasks[self._submit(collect_scoring_job, dataclasses.replace(job, units=units), context)] = (job, units)
        failures: list[UnitFailure] = []
        done = 0
        for (job, units), result, error in self._results(tasks, progress):
            if error is None:
                records, failed = result
                commit(job.cell_id, records)
                failures.extend(failed)
            else:
                failures.extend(UnitFailure("score", f"{u.video} {u.metric}", one_line(error), str(error)) for u in units)
            done += len(units)
            progress("scores", done, total)
        return failures
