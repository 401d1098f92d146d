"""Training on several processes: torchrun, torch.distributed and DistributedDataParallel.

    torchrun --nproc_per_node 8 --no-python arlon-bench train --preset paper --stage injector --data /data/arlon ...

torchrun starts one process per GPU and sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address;
`from_environment` joins the process group (NCCL on CUDA, gloo on the CPU) and gives each rank its
GPU. Without torchrun the same code runs as one process (`SINGLE`), on the CPU or one GPU.

How a run is split (the rest lives in `arlon/training/common.py` and `arlon/training/data.py`):
- `TrainConfig.batch_size` is the *global* batch: each of the W ranks takes a contiguous 1/W of
  every global batch (`EpochSampler`), split again into micro-batches of `train.micro_batch_size`
  for gradient accumulation (DDP's `no_sync` on all but the last);
- DDP averages gradients over ranks; each micro-batch's loss is weighted by its share of the global
  batch, so one step's gradient is that of the whole global batch whatever the split;
- per-sample random draws are made for the global batch and sliced (`arlon/global_batch.py`), so a
  run on W ranks trains what one process with the same global batch trains (equal to rounding), and
  a run stopped on W ranks resumes on any other number;
- only rank 0 writes (training states, checkpoints, latent pools), atomically; the others wait at a
  barrier and read what it wrote.

Stages that train on several processes: `DISTRIBUTED_STAGES`. The video VAE and the latent VQ-VAEs
keep one process: the VQ-VAEs move their codebooks (EMA buffers, dead-code restarts) inside the
forward, which DDP would leave to rank 0's batch alone. They are small; train them first without
torchrun, and the distributed stages find them in the cache.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from arlon.errors import ConfigError

DISTRIBUTED_STAGES = ("ar", "backbone", "injector")

# A rank waits this long at a barrier while rank 0 writes (a latent pool is encoded by rank 0 alone).
BARRIER_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: rank of world_size, and its GPU index on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """`model` in DistributedDataParallel on several ranks, else itself. Frozen parameters stay out of
        the gradient all-reduce (DDP skips parameters without requires_grad)."""
        if not self.is_distributed:
            return model
        device_ids = [device.index] if device.type == "cuda" else None
        # Buffers (the frozen backbone's, an EMA's) are equal on every rank: no sync before each forward.
        # torch 2.13 renamed the switch; its init-time sync is harmless here.
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
            return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
        return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)

    def mean(self, value: float) -> float:
        """The mean of a float over the ranks (the logged loss of a step)."""
        if not self.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size

    def check_stage(self, stage: str) -> None:
        """One clear ConfigError when `stage` cannot train on several processes."""
        if self.is_distributed and stage not in DISTRIBUTED_STAGES:
            raise ConfigError(
                f"stage {stage!r} trains in one process (only {', '.join(DISTRIBUTED_STAGES)} run under torchrun): "
                f"run `arlon-bench train --stage {stage}` without torchrun first; the distributed run then finds it cached"
            )


SINGLE = Distributed()


def from_environment() -> Distributed:
    """The run torchrun started this process in (joining its process group once), else `SINGLE`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except (KeyError, ValueError) as err:
        raise ConfigError(f"WORLD_SIZE={world_size} but RANK/LOCAL_RANK are not set: start several processes with torchrun") from err
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)
    return Distributed(rank, world_size, local_rank)


def device_for(run: Distributed, requested: torch.device | None) -> torch.device:
    """The device of this rank: its own GPU under torchrun with CUDA, else `requested` (or the default)."""
    if run.is_distributed and torch.cuda.is_available():
        if requested is not None and requested.type != "cuda":
            return requested  # a CPU run under torchrun (the gloo tests)
        return torch.device("cuda", run.local_rank)
    if requested is not None:
        return requested
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
