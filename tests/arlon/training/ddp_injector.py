"""The injector stage on a mini config, in one process or under torchrun (tests/arlon/training/test_distributed.py).

    torchrun --standalone --nproc_per_node 2 tests/arlon/training/ddp_injector.py OUT.safetensors STATE_DIR [--stop-after 5]

Every rank trains `train_injector` on the same 32-clip latent pool with a global batch of 8; rank 0
saves the injector's weights to OUT. The randomness is all switched on (caption dropout in the frozen
backbone, uncertainty sampling with probability 0.5, frame masks), so that equality with one process
checks that every per-sample draw is split by rows of the global batch.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from arlon.checkpoints.io import save_safetensors
from arlon.config import ArlonConfig
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.text_encoders import build_text_encoder
from arlon.presets import tiny
from arlon.training.common import Checkpointer, RunContext, TrainConfig
from arlon.training.data import ClipPool, TrainingData
from arlon.training.distributed import SINGLE, Distributed, from_environment, shutdown
from arlon.training.injection import train_injector

STEPS = 10
# The paper's injector learning rate (section 4.1). Adam divides each gradient by its own running scale,
# so the rounding of a different reduction order (two ranks' sums, micro-batches) becomes an update
# error of up to the learning rate where a gradient nearly cancels: at lr 1e-2 the split runs differ by
# 3e-5 after 10 steps, at 2e-5 by about 1e-7, while a wrong draw moves the weights by about 1.7e-4.
LR = 2e-5
GLOBAL_BATCH = 8
POOL = 32


def mini_config() -> ArlonConfig:
    """4-frame 16x16 clips (latent 4x2x4x4), a 2-pair backbone, narrow widths, noisy training on."""
    cfg = tiny()
    width = 32
    return dataclasses.replace(
        cfg,
        video=dataclasses.replace(cfg.video, num_frames=4, height=16, width=16),
        text=dataclasses.replace(cfg.text, dim=width),
        ar=dataclasses.replace(cfg.ar, text_dim=width),
        dit_vq=dataclasses.replace(cfg.dit_vq, codebook_size=32, code_dim=8, hidden_channels=16),
        backbone=dataclasses.replace(cfg.backbone, hidden_size=32, depth=2, caption_channels=width, class_dropout_prob=0.3),
        injection=dataclasses.replace(cfg.injection, layers="first:2"),
        noise=dataclasses.replace(cfg.noise, strategy="uncertainty", probability=0.5),
    ).validate()


def pool(size: int, seed: int) -> ClipPool:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 4, 2, 4, 4, generator=generator)
    captions = [f"a {('red', 'green', 'blue', 'yellow')[i % 4]} square moves {('left', 'right')[i % 2]}" for i in range(size)]
    return ClipPool(x, captions, {"source": "ddp-test", "size": size, "seed": seed})


def train(
    state_dir: Path,
    ranks: Distributed = SINGLE,
    micro_batch_size: int = 0,
    steps: int = STEPS,
    stop_after: int | None = None,
    activation_checkpointing: bool = False,
) -> dict[str, torch.Tensor] | None:
    """The injector's weights after `steps` steps (resuming from `state_dir`), or None when stopped
    after `stop_after` steps (a state is saved there)."""
    cfg = mini_config()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = STDiT3(cfg.backbone)
        condition_vq = LatentVQVAE(cfg.dit_vq)
    text_encoder = build_text_encoder(cfg.text)
    recipe = TrainConfig(
        steps=steps, batch_size=GLOBAL_BATCH, micro_batch_size=micro_batch_size, lr=LR, warmup_steps=2,
        ema_decay=0.0, checkpoint_every=stop_after or steps, seed=3, activation_checkpointing=activation_checkpointing,
    )
    data = TrainingData(pool(POOL, 0), GLOBAL_BATCH, recipe.seed, ranks.rank, ranks.world_size)
    if stop_after is not None:
        data = StoppingData(data, stop_after)
    run = RunContext(torch.device("cpu"), Checkpointer(state_dir), None, ranks)
    try:
        output = train_injector(
            cfg.injection, cfg.noise, cfg.flow, cfg.video, backbone, condition_vq, text_encoder, data, pool(8, 1), recipe, run
        )
    except StopIteration:
        return None
    return {name: value.detach().clone() for name, value in output.module.state_dict().items()}


class StoppingData(TrainingData):
    """The batches of `data` up to step `stop` and no further: a run stopped there, its state saved."""

    def __init__(self, data: TrainingData, stop: int):
        self.__dict__.update(data.__dict__)
        self.stop = stop

    def batches(self, start_step: int = 0):
        stream = super().batches(start_step)
        for _ in range(start_step, self.stop):
            yield next(stream)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("state_dir")
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args()
    ranks = from_environment()
    try:
        weights = train(Path(args.state_dir), ranks, stop_after=args.stop_after)
        if ranks.is_main and weights is not None:
            save_safetensors(weights, Path(args.out))
    finally:
        shutdown()
