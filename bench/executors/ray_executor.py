"""The Ray executor: the same work units as Ray tasks, on this machine or a cluster (`--address auto`).

- Training runs in waves of dependency depth (the VAE; its latent pools; the VQ-VAEs and the
  backbone; the AR model and the injectors), each unit of a wave a task, so two workers never
  train the same stage and every cell's injector trains in parallel.
- Generation and scoring run as one task per cell (split into parts when there are fewer cells
  than workers), so a worker loads a cell's checkpoints once for all the videos it makes.
- Workers write videos straight into the run's store and read checkpoints from the cache: on a
  cluster both must live on a file system every node mounts. Score records come back to the
  driver, which holds the run's lock and writes the score files.

Ray is an optional dependency: `pip install 'arlon-bench[ray]'`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from bench.errors import BenchError
from bench.executors.base import EXECUTORS, Commit, Executor, skipped, training_waves
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


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray: pip install 'arlon-bench[ray]' (or run with --executor local)") from None
    return ray


def _split(items: Sequence, parts: int) -> list[tuple]:
    """`items` in at most `parts` contiguous, nearly equal, non-empty pieces."""
    size = math.ceil(len(items) / max(1, parts))
    return [tuple(items[start : start + size]) for start in range(0, len(items), size)]


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Runs units as Ray tasks: 1 CPU each (and 1 GPU each when the cluster has GPUs)."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        ray = _import_ray()
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            # A local cluster of `workers` CPUs; with an address, the cluster decides.
            ray.init(
                address=address,
                num_cpus=workers if address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="warning",
            )
        resources = ray.cluster_resources()
        self.workers = workers or max(1, int(resources.get("CPU", 1)))
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        # One task at a time per CPU; never retried, because a failure is reported, not hidden.
        self._train = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_train_unit)
        self._generate = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_generation_job)
        self._score = ray.remote(num_cpus=1, max_retries=0)(collect_scoring_job)

    @classmethod
    def from_options(cls, *, address: str | None, workers: int | None, device: str | None) -> "RayExecutor":
        if device is not None:
            raise BenchError("--device is an option of --executor local; Ray gives each task a GPU when the cluster has one")
        if workers is not None and workers < 1:
            raise BenchError(f"--workers must be at least 1, got {workers}")
        return cls(address=address, workers=workers)

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()

    def _results(self, refs: dict[Any, Any]):
        """Yield (payload, result or None, error or None) as tasks finish."""
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            ref = ready[0]
            try:
                yield refs[ref], self.ray.get(ref), None
            except Exception as err:  # a task's exception (or a lost worker) fails its units
                yield refs[ref], None, getattr(err, "cause", None) or err

    def train(
        self, units: Sequence[TrainUnit], context: WorkContext, progress: Progress
    ) -> tuple[dict[str, bool], list[UnitFailure]]:
        cached: dict[str, bool] = {}
        failures: list[UnitFailure] = []
        failed: dict[str, str] = {}
        done = 0
        for wave in training_waves(units):
            refs = {}
            for unit in wave:
                blocked = [failed[need] for need in unit.needs if need in failed]
                if blocked:
                    failures.append(skipped(unit, blocked[0]))
                    failed[unit.id] = unit.label
                    done += 1
                    progress("train", done, len(units))
                else:
                    refs[self._train.remote(unit, context)] = unit
            for unit, result, error in self._results(refs):
                if error is None:
                    cached[unit.id] = result
                else:
                    failures.append(UnitFailure("train", unit.label, _one_line(error), str(error)))
                    failed[unit.id] = unit.label
                done += 1
                progress("train", done, len(units))
        return cached, failures

    def generate(self, jobs: Sequence[GenerationJob], context: WorkContext, progress: Progress) -> list[UnitFailure]:
        total = sum(len(job.units) for job in jobs)
        parts_per_job = max(1, math.ceil(self.workers / max(1, len(jobs))))
        refs = {
            self._generate.remote(dataclasses.replace(job, units=part), context): (job, part)
            for job in jobs
            for part in _split(job.units, parts_per_job)
        }
        failures: list[UnitFailure] = []
        done = 0
        for (job, part), result, error in self._results(refs):
            if error is None:
                failures.extend(result)
            else:
                failures.extend(UnitFailure("generate", f"{job.cell.label}: {u.name}", _one_line(error), str(error)) for u in part)
            done += len(part)
            progress("videos", done, total)
        return failures

    def score(self, jobs: Sequence[ScoringJob], context: WorkContext, commit: Commit, progress: Progress) -> list[UnitFailure]:
        total = sum(len(job.units) for job in jobs)
        parts_per_job = max(1, math.ceil(self.workers / max(1, len(jobs))))
        refs = {}
        for job in jobs:
            videos = list(dict.fromkeys(unit.video for unit in job.units))  # split between videos, not inside one
            for part in _split(videos, parts_per_job):
                units = tuple(unit for unit in job.units if unit.video in set(part))
                refs[self._score.remote(dataclasses.replace(job, units=units), context)] = (job, units)
        failures: list[UnitFailure] = []
        done = 0
        for (job, units), result, error in self._results(refs):
            if error is None:
                records, failed = result
                commit(job.cell_id, records)
                failures.extend(failed)
            else:
                failures.extend(UnitFailure("score", f"{u.video} {u.metric}", _one_line(error), str(error)) for u in units)
            done += len(units)
            progress("scores", done, total)
        return failures


def _one_line(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message[:300]}"
