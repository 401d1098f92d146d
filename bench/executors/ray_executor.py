"""The Ray executor: the same work units as Ray tasks, on this machine or a cluster (`--address auto`).

Waves, parts and progress are `TaskPoolExecutor`'s (`bench/executors/pool.py`). Workers write videos
straight into the run's store and read checkpoints from the cache: on a cluster both must live on a
file system every node mounts. Score records come back to the driver, which holds the run's lock and
writes the score files.

Ray is an optional dependency: `pip install 'arlon-bench[ray]'`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from bench.errors import BenchError
from bench.executors.base import EXECUTORS
from bench.executors.pool import TaskPoolExecutor
from bench.executors.work import Progress, collect_scoring_job, run_generation_job, run_train_unit


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray: pip install 'arlon-bench[ray]' (or run with --executor local)") from None
    return ray


@EXECUTORS.register("ray")
class RayExecutor(TaskPoolExecutor):
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
        self._remote: dict[Callable, Any] = {
            run_train_unit: ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_train_unit),
            run_generation_job: ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_generation_job),
            collect_scoring_job: ray.remote(num_cpus=1, max_retries=0)(collect_scoring_job),
        }

    @classmethod
    def from_options(cls, *, address: str | None, workers: int | None, device: str | None) -> "RayExecutor":
        if device is not None:
            raise BenchError("--device is an option of --executor local and processes; Ray gives each task a GPU when the cluster has one")
        if workers is not None and workers < 1:
            raise BenchError(f"--workers must be at least 1, got {workers}")
        return cls(address=address, workers=workers)

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()

    def _submit(self, fn: Callable, *args: Any, alone: bool = False) -> Any:
        return self._remote[fn].remote(*args)  # one CPU a task: Ray sizes its workers' threads

    def _finished(self, handles: Sequence[Any], progress: Progress) -> Iterator[tuple[Any, Any, BaseException | None]]:
        pending = list(handles)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            ref = ready[0]
            try:
                yield ref, self.ray.get(ref), None
            except Exception as err:  # a task's exception (or a lost worker) fails its units
                yield ref, None, getattr(err, "cause", None) or err
