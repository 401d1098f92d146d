"""Training on several processes gives what one process gives (arlon/training/distributed.py,
arlon/global_batch.py): torchrun with 2 CPU ranks (gloo) against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arlon.checkpoints.io import load_safetensors
from arlon.errors import ConfigError
from arlon.training import common
from arlon.training.common import TrainConfig, batch_pieces
from arlon.training.distributed import Distributed

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ddp_injector  # noqa: E402

TOLERANCE = 1e-6


def torchrun(tmp_path: Path, *args: str) -> None:
    """Run ddp_injector.py on 2 CPU ranks; fails the test with the ranks' output when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(HERE / "ddp_injector.py"), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The injector after 10 steps of the global batch of 8 in this process."""
    return ddp_injector.train(tmp_path_factory.mktemp("single"))


def test_two_ranks_train_what_one_process_trains_with_the_doubled_batch(tmp_path, one_process):
    out = tmp_path / "two-ranks.safetensors"
    torchrun(tmp_path, str(out), str(tmp_path / "state"))
    two_ranks = load_safetensors(out)
    assert max_difference(two_ranks, one_process) <= TOLERANCE
    # The check has teeth: the injector moved far more than the tolerance in 10 steps.
    after_one_step = ddp_injector.train(tmp_path / "one-step", steps=1)
    assert max_difference(after_one_step, one_process) > 100 * TOLERANCE


def test_stopped_on_two_ranks_resumes_on_one(tmp_path, one_process):
    state = tmp_path / "state"
    torchrun(tmp_path, str(tmp_path / "unused.safetensors"), str(state), "--stop-after", "5")
    assert sorted(p.name for p in state.iterdir()) == ["state-00000005.json", "state-00000005.safetensors"]
    resumed = ddp_injector.train(state)  # one process, global batch 8, from step 5
    assert max_difference(resumed, one_process) <= TOLERANCE


def test_micro_batches_train_what_the_whole_batch_trains(tmp_path, one_process):
    accumulated = ddp_injector.train(tmp_path, micro_batch_size=2)  # 4 micro-batches of 2 per step
    assert max_difference(accumulated, one_process) <= TOLERANCE


def test_activation_checkpointing_trains_the_same_injector(tmp_path, one_process):
    """Recomputing the frozen backbone's blocks in the backward changes memory, not the result."""
    recomputed = ddp_injector.train(tmp_path, activation_checkpointing=True)
    assert max_difference(recomputed, one_process) <= TOLERANCE


def test_micro_batches_drawing_on_from_each_other_would_differ(tmp_path, one_process, monkeypatch):
    """Without restoring the RNG states between micro-batches, their draws are not the global batch's."""
    monkeypatch.setattr(common, "_set_rng_states", lambda *args: None)
    drifting = ddp_injector.train(tmp_path, micro_batch_size=4)
    assert max_difference(drifting, one_process) > 100 * TOLERANCE


def test_batch_pieces_are_rows_of_the_global_batch():
    cfg = TrainConfig(steps=1, batch_size=8, micro_batch_size=2)
    pieces = batch_pieces(cfg, Distributed(rank=1, world_size=2))
    assert [(p.start, p.stop, p.total) for p in pieces] == [(4, 6, 8), (6, 8, 8)]
    with pytest.raises(ConfigError, match="multiple of 3"):
        batch_pieces(cfg, Distributed(rank=0, world_size=3))
    with pytest.raises(ConfigError, match="micro_batch_size"):
        batch_pieces(TrainConfig(steps=1, batch_size=8, micro_batch_size=3), Distributed())
