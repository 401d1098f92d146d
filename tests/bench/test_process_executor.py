"""The worker-process executor makes exactly the videos the in-process one makes (seeds never depend
on the executor or the number of workers), relays training progress, and reports a failing unit."""

from __future__ import annotations

import dataclasses

import pytest

from bench.executors import make_executor
from bench.executors.base import resolve_auto
from bench.executors.local import LocalExecutor
from bench.executors.pool import TaskPoolExecutor, units_alone
from bench.executors.processes import ProcessExecutor
from bench.executors.work import LATENTS, WorkContext, cell_stages
from bench.grids import load_grid
from bench.runner import needs_reference, plan_training, run_grid
from bench.store import RunStore

from mini_run import checkpoint_hashes, run_on_one_thread, video_hashes, write_mini_grid


@pytest.mark.slow
def test_two_worker_processes_train_and_generate_what_the_local_executor_does(tmp_path, monkeypatch):
    grid = load_grid(write_mini_grid(tmp_path))
    local = run_on_one_thread(grid, tmp_path / "local", tmp_path / "local-cache")

    monkeypatch.setattr("bench.executors.processes.available_cpus", lambda: 1)  # the VAE alone: one thread too
    executor = make_executor("processes", workers=2, device="cpu")
    seen: list[tuple[str, int, int]] = []
    try:
        parallel = RunStore(tmp_path / "processes")
        # A fresh cache: the workers train every stage too (each as soon as its needs are done), then generate and score.
        summary = run_grid(
            grid, parallel, executor, cache_dir=tmp_path / "fresh-cache", progress=lambda *event: seen.append(event)
        )
    finally:
        executor.close()
    assert summary.ok, summary.failures
    assert summary.counts["train"].run == 8 and summary.counts["generate"].run == 12

    assert checkpoint_hashes(parallel) == checkpoint_hashes(local)
    assert video_hashes(parallel) == video_hashes(local) and len(video_hashes(local)) == 12
    assert (tmp_path / "processes" / "results.csv").read_text() == (tmp_path / "local" / "results.csv").read_text()
    # Each training step reached the caller from its worker, not only each finished unit.
    steps = [event for event in seen if event[0] == "train injector (layers=first:1)"]
    assert [event[1:3] for event in steps] == [(step, 4) for step in range(1, 5)]
    assert all(len(event) == 4 and event[3] > 0 for event in steps)  # with the loss of the step
    assert seen[-1][0] == "scores" and ("videos", 12, 12) in seen


def test_an_error_in_a_worker_fails_its_unit_and_skips_the_units_that_need_it(tmp_path):
    grid = load_grid(write_mini_grid(tmp_path))
    units, _ = plan_training([(cell, cell_stages(cell, needs_reference(grid))) for cell in grid.cells])
    missing = tmp_path / "missing.csv"
    broken = [dataclasses.replace(unit, data=dataclasses.replace(unit.data, source=str(missing))) for unit in units]
    executor = make_executor("processes", workers=2, device="cpu")
    try:
        context = WorkContext(str(tmp_path / "store"), str(tmp_path / "cache"), "cpu")
        cached, failures = executor.train(broken, context, lambda *event: None)
    finally:
        executor.close()
    assert cached == {}
    first, *rest = failures
    assert first.unit == "vae" and str(missing) in first.error  # raised in the worker, reported here
    assert len(rest) == len(units) - 1 and all(f.error.startswith("skipped: ") for f in rest)


@pytest.mark.parametrize(
    "workers, device, cpus, cuda, expected",
    [
        (None, None, 2, False, "processes"),
        (None, None, 1, False, "local"),
        (None, None, 16, True, "local"),
        (None, "cpu", 4, True, "processes"),
        (1, None, 8, False, "local"),
        (3, "cuda", 8, True, "processes"),
    ],
)
def test_auto_picks_local_on_a_gpu_or_one_core_and_processes_on_several(monkeypatch, workers, device, cpus, cuda, expected):
    monkeypatch.setattr("bench.executors.processes.available_cpus", lambda: cpus)
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    assert resolve_auto(workers, device) == expected


def test_the_executors_take_only_their_options():
    assert isinstance(make_executor("auto", workers=1, device="cpu"), LocalExecutor)
    executor = make_executor("auto", workers=2, device="cpu")
    try:
        assert isinstance(executor, ProcessExecutor) and executor.workers == 2
    finally:
        executor.close()


class _ScriptedPool(TaskPoolExecutor):
    """Finishes the running units in the order of `finish_order` (stage names); records every start."""

    workers = 4

    def __init__(self, finish_order: list[str]):
        self.finish_order, self.started, self.handles = list(finish_order), [], {}

    @classmethod
    def from_options(cls, **_):
        raise NotImplementedError

    def _submit(self, fn, unit, context, alone=False):
        self.started.append(unit.stage)
        self.handles[len(self.handles)] = unit
        return len(self.handles) - 1

    def _finished(self, handles, progress):
        stage = self.finish_order.pop(0)
        handle = next(h for h in handles if self.handles[h].stage == stage)
        yield handle, False, (RuntimeError("boom") if stage == "dit_vq" else None)


def test_only_the_units_that_every_other_unit_depends_on_or_follows_run_alone():
    steps = load_grid("steps")
    units, _ = plan_training([(c, cell_stages(c, True)) for c in steps.cells])
    assert sorted(u.stage for u in units if u.id in units_alone(units)) == ["latents", "vae"]
    chain = [u for u in units if u.stage in ("vae", LATENTS, "backbone")]
    assert len(units_alone(chain)) == 3


def test_a_unit_starts_as_soon_as_its_needs_are_done_and_a_failure_skips_its_dependants():
    steps = load_grid("steps")
    units, _ = plan_training([(c, cell_stages(c, True)) for c in steps.cells])
    pool = _ScriptedPool(["vae", LATENTS, "ar_vq", "dit_vq", "ar", "backbone"])
    context = WorkContext("store", "cache", "cpu")
    cached, failures = pool.train(units, context, lambda *event: None)
    # The AR model started when the AR-ratio VQ-VAE finished, before the backbone (still running) did.
    assert pool.started == ["vae", LATENTS, "ar_vq", "dit_vq", "backbone", "ar"]
    assert [(f.unit, f.error) for f in failures] == [("dit_vq", "RuntimeError: boom"), ("injector", "skipped: dit_vq failed")]
    assert sorted(cached.values()) == [False] * 5


def test_workers_end_when_the_caller_is_killed():
    """A SIGKILLed `arlon-bench` must not leave its workers training on the cores."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "import time\n"
        "from bench.executors.processes import ProcessExecutor, _run_in_worker\n"
        "executor = ProcessExecutor(workers=1)\n"
        "executor._pool.submit(_run_in_worker, time.sleep, (120,), 1)\n"
        "while not executor._pool._processes: time.sleep(0.05)\n"
        "print(*executor._pool._processes, flush=True)\n"
        "time.sleep(120)\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(caller.stdout.readline())
    time.sleep(1.0)  # the worker is up (importing, or sleeping in its task)
    caller.send_signal(signal.SIGKILL)
    caller.wait()

    def running(pid: int) -> bool:
        status = Path(f"/proc/{pid}/status")
        if not status.exists():
            return False
        return "State:\tZ" not in status.read_text()  # a zombie has ended, whoever reaps it

    deadline = time.monotonic() + 30
    while running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = running(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive
