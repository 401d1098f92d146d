"""The worker-process executor: the units of a run in parallel on this machine's CPU cores.

On the tiny preset a training step or a video is too small for two threads to speed it up (one
injector trains in the same time on one core as on two), so a two-core machine finishes a grid
nearly twice as fast with two single-threaded worker processes as with one two-threaded process.
Scheduling, parts and failures are `TaskPoolExecutor`'s; a training unit the plan runs alone (the
VAE, a convolutional network that two threads do speed up) gets every core; training progress (each
step's bar, with its loss) comes back from the workers through a queue. Workers are started with "spawn" (safe with torch's threads and
with CUDA) and live until `close()`.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import queue as queue_module
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import torch

from bench.errors import BenchError
from bench.executors.base import EXECUTORS
from bench.executors.pool import TaskPoolExecutor
from bench.executors.work import Progress, run_train_unit

POLL_SECONDS = 0.2  # how often the calling process relays the workers' progress while it waits
PARENT_POLL_SECONDS = 1.0  # how often a worker checks that the process that started it still runs

_progress_queue = None  # in a worker: where its training progress goes


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _start_worker(progress_queue, parent: int) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A killed caller (SIGKILL, or SIGTERM without cleanup) leaves its pool's workers behind, still
    training on the cores; a worker whose parent is gone ends itself. What it trained is in its
    resume states, so the next run continues from there."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _relay_progress(task: str, done: int, total: int, loss: float | None = None) -> None:
    _progress_queue.put((task, done, total, loss))


def _run_in_worker(fn: Callable, args: tuple, threads: int) -> Any:
    torch.set_num_threads(threads)
    if fn is run_train_unit:  # the steps of a long training show in the caller's progress bars
        return fn(*args, progress=_relay_progress)
    return fn(*args)


@EXECUTORS.register("processes")
class ProcessExecutor(TaskPoolExecutor):
    """Runs units in `workers` worker processes here, each with cores // workers torch threads (all
    the cores for a training unit that the plan runs alone, such as the VAE)."""

    # Parts of a few videos keep the video bar moving; loading a tiny cell's checkpoints takes well under a second.
    max_videos_per_task = 4

    def __init__(self, workers: int | None = None, device: str | None = None):
        if workers is not None and workers < 1:
            raise BenchError(f"--workers must be at least 1, got {workers}")
        self.workers = workers or available_cpus()
        self.device = device
        self._context = multiprocessing.get_context("spawn")
        self._queue = self._context.Queue()
        self._pool = self._new_pool()

    def _new_pool(self) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=self._context, initializer=_start_worker, initargs=(self._queue, os.getpid())
        )

    @classmethod
    def from_options(cls, *, address: str | None, workers: int | None, device: str | None) -> "ProcessExecutor":
        if address is not None:
            raise BenchError("--address is an option of --executor ray")
        return cls(workers=workers, device=device)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, fn: Callable, *args: Any, alone: bool = False) -> futures.Future:
        threads = available_cpus() if alone else max(1, available_cpus() // self.workers)
        try:
            return self._pool.submit(_run_in_worker, fn, args, threads)
        except futures.process.BrokenProcessPool:  # a worker died (its units failed with it): start afresh
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(_run_in_worker, fn, args, threads)

    def _relay(self, progress: Progress) -> None:
        while True:
            try:
                task, done, total, loss = self._queue.get_nowait()
            except queue_module.Empty:
                return
            progress(task, done, total, loss)

    def _finished(self, handles: Sequence[Any], progress: Progress) -> Iterator[tuple[Any, Any, BaseException | None]]:
        pending = set(handles)
        while pending:
            done, pending = futures.wait(pending, timeout=POLL_SECONDS, return_when=futures.FIRST_COMPLETED)
            self._relay(progress)
            for future in done:
                error = future.exception()  # a task's exception, or BrokenProcessPool if a worker died
                yield future, (None if error is not None else future.result()), error
