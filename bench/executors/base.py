"""The executor contract and the `EXECUTORS` registry.

An executor runs the units a plan hands it and reports what failed; it never decides what to run.
Every executor calls the same unit functions (`bench.executors.work`), so the files it writes and
the videos it makes are the same, whatever the executor and its number of workers, as long as each
worker runs as many torch threads (the thread count orders float sums: the last bits would differ).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

from arlon.errors import ConfigError
from arlon.registry import Registry
from bench.errors import BenchError
from bench.executors.work import GenerationJob, Progress, ScoringJob, TrainUnit, UnitFailure, WorkContext

# commit(cell_id, records): store one video's score records (called in the process that holds the run lock).
Commit = Callable[[str, list[dict]], None]


class Executor(ABC):
    """Runs work units.

    - `train(units)`: every unit after the units it `needs`; a unit whose need failed is not run
      (it fails as "skipped"). Returns ({unit id: True when it came from the cache}, failures).
    - `generate(jobs)`: every video of every job, loading each job's checkpoints once per worker;
      videos and their records are written to the store by the worker. Returns the failures.
    - `score(jobs, commit)`: every score unit; the records reach the store through `commit`,
      called in the calling process. Returns the failures.
    Unit failures are collected, never raised; `progress(task, done, total[, loss])` follows the work.
    """

    device: str | None = None  # torch device of the workers (None: CUDA if available, else CPU)

    @classmethod
    @abstractmethod
    def from_options(cls, *, address: str | None, workers: int | None, device: str | None) -> "Executor":
        """Build from the CLI's options, refusing the ones this executor does not take."""

    @abstractmethod
    def train(
        self, units: Sequence[TrainUnit], context: WorkContext, progress: Progress
    ) -> tuple[dict[str, bool], list[UnitFailure]]: ...

    @abstractmethod
    def generate(self, jobs: Sequence[GenerationJob], context: WorkContext, progress: Progress) -> list[UnitFailure]: ...

    @abstractmethod
    def score(
        self, jobs: Sequence[ScoringJob], context: WorkContext, commit: Commit, progress: Progress
    ) -> list[UnitFailure]: ...

    def close(self) -> None:
        """Release what the executor started (a Ray cluster it launched)."""


EXECUTORS: Registry[type[Executor]] = Registry("executor")


def skipped(unit: TrainUnit, failed_need: str) -> UnitFailure:
    return UnitFailure("train", unit.label, f"skipped: {failed_need} failed")


AUTO = "auto"  # the CLI's default executor: see `resolve_auto`


def resolve_auto(workers: int | None, device: str | None) -> str:
    """"local" on a GPU (one device, one process) or a single core; "processes" on several CPU cores."""
    import torch

    from bench.executors.processes import available_cpus

    on_gpu = device.startswith("cuda") if device is not None else torch.cuda.is_available()
    if workers is not None:
        return "local" if workers == 1 else "processes"
    return "local" if on_gpu or available_cpus() < 2 else "processes"


def make_executor(name: str, *, address: str | None = None, workers: int | None = None, device: str | None = None) -> Executor:
    """The executor `name` ("auto" picks one, see `resolve_auto`) with the CLI's options
    (`--address` is Ray's, `--workers` Ray's and processes', `--device` local's and processes')."""
    if name == AUTO:
        name = "ray" if address is not None else resolve_auto(workers, device)
    try:
        cls = EXECUTORS.get(name)
    except ConfigError as err:
        raise BenchError(f"--executor: {err}") from None
    return cls.from_options(address=address, workers=workers, device=device)
