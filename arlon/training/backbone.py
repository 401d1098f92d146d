"""Stage "backbone": the tiny preset's base STDiT3, standing in for the frozen Open-Sora v1.2.

The paper starts from Open-Sora v1.2's released STDiT3 and keeps it frozen (section 4.1). The tiny
preset has no such checkpoint, so it pretrains a tiny STDiT3 on the toy world's latents with Open-Sora's
own objective (`RFlowScheduler.training_losses`): rectified-flow velocity MSE on logit-normal timesteps, only over the
generated frames of a random frame mask (`FrameMaskGenerator`, stage-3 ratios), caption dropout to the
`y_embedding` null caption (`backbone.class_dropout_prob`, active in train mode) so classifier-free
guidance works, AdamW and an EMA of the weights (the EMA is what is saved, as Open-Sora samples with it).
The null caption buffer is drawn from the training seed and never trained.

`flow_matching_loss` and `heldout_flow_loss` are shared with the injector stage.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from arlon.config import BackboneConfig, FlowConfig, VideoConfig
from arlon.global_batch import per_sample
from arlon.models.stdit3 import STDiT3
from arlon.models.text_encoders import TextEncoder
from arlon.rectified_flow import FrameMaskGenerator, ModelFn, RectifiedFlow
from arlon.training.common import RunContext, StageOutput, TrainConfig, run_training, seeded
from arlon.training.data import Batch, ClipPool, TrainingData

EVAL_BATCH = 16
EVAL_SEED = 1234  # held-out losses use the same timesteps and noise for every model compared


def train_backbone(
    cfg: BackboneConfig,
    flow_cfg: FlowConfig,
    video: VideoConfig,
    text_encoder: TextEncoder,
    data: TrainingData,
    heldout: ClipPool,
    train: TrainConfig,
    run: RunContext,
) -> StageOutput:
    """Pretrain a tiny STDiT3 on the latent pool of `data`; the returned module holds the EMA weights."""
    with seeded(train.seed, run.device):
        backbone = STDiT3(cfg)
    init_null_caption(backbone, train.seed)
    backbone.to(run.device)
    flow = RectifiedFlow(flow_cfg)

    def loss_fn(model: STDiT3, batch: Batch, generator: torch.Generator) -> Tensor:
        return flow_matching_loss(model, flow, batch, text_encoder, video, generator, FrameMaskGenerator(generator=generator))

    result = run_training("backbone", backbone, loss_fn, data, train, run)
    if result.ema is not None:
        result.ema.copy_to(backbone)
    backbone.eval()
    metrics = {
        **result.loss_metrics(),
        "heldout_loss": heldout_flow_loss(lambda batch: backbone, flow, heldout, text_encoder, video, run.device),
    }
    return StageOutput(backbone, metrics, result)


@torch.no_grad()
def init_null_caption(backbone: STDiT3, seed: int) -> None:
    """Draw the CFG null caption `y_embedding` (L, C) ~ N(0, 1/C) from `seed`, as Open-Sora initialises it.

    It is a buffer: fixed from here on, saved with the weights, never trained.
    """
    table = backbone.y_embedder.y_embedding
    generator = torch.Generator().manual_seed(seed)
    table.copy_(torch.randn(table.shape, generator=generator) / table.shape[1] ** 0.5)


def flow_matching_loss(
    model_fn: ModelFn,
    flow: RectifiedFlow,
    batch: Batch,
    text_encoder: TextEncoder,
    video: VideoConfig,
    generator: torch.Generator,
    masks: FrameMaskGenerator | None,
) -> Tensor:
    """Mean rectified-flow loss of `model_fn` on a latent batch (`RFlowScheduler.training_losses`; ARLON eq. 6).

    Timesteps, noise and frame masks are drawn on the CPU from `generator` (the same draws on any
    device); masked-out frames stay clean and are left out of the loss.
    """
    x0 = batch.x  # (B, C, T, H, W) clean latents
    B, device = x0.shape[0], x0.device
    model_kwargs = dit_model_kwargs(text_encoder, batch.captions, video, device)
    # Each draw is made for the whole global batch of a split step (arlon/global_batch.py).
    num_frames = batch.num_frames or video.num_frames  # pixel frames: the timestep shift depends on the length
    t = per_sample(lambda n: flow.sample_training_timesteps(n, video.height, video.width, num_frames, generator=generator), B)
    noise = per_sample(lambda n: torch.randn((n, *x0.shape[1:]), generator=generator), B).to(device, x0.dtype)
    mask = per_sample(lambda n: masks(n, x0.shape[2]), B).to(device) if masks is not None else None  # (B, T) True = generated
    return flow.training_loss(model_fn, x0, model_kwargs, mask=mask, noise=noise, t=t.to(device)).mean()


def dit_model_kwargs(text_encoder: TextEncoder, captions: list[str], video: VideoConfig, device: torch.device) -> dict:
    """The caption and size inputs of STDiT3.forward, as the sampling pipeline passes them."""
    y, y_mask = text_encoder.encode(captions)  # (B, L, D), (B, L)
    return dict(
        y=y.to(device)[:, None],  # (B, 1, L, D)
        mask=y_mask.to(device),
        fps=torch.full((1,), float(video.fps), device=device),
        height=torch.full((1,), float(video.height), device=device),
        width=torch.full((1,), float(video.width), device=device),
    )


@torch.no_grad()
def heldout_flow_loss(
    model_for: Callable[[Batch], ModelFn],
    flow: RectifiedFlow,
    heldout: ClipPool,
    text_encoder: TextEncoder,
    video: VideoConfig,
    device: torch.device,
) -> float:
    """Mean rectified-flow loss over the held-out pool, all frames generated, with draws fixed by EVAL_SEED.

    `model_for(batch)` gives the model function of a batch (the injector builds its condition there).
    """
    generator = torch.Generator().manual_seed(EVAL_SEED)
    total = 0.0
    for start in range(0, len(heldout), EVAL_BATCH):
        indices = torch.arange(start, min(start + EVAL_BATCH, len(heldout)))
        batch = Batch(heldout.x[indices], [heldout.captions[i] for i in indices.tolist()], indices).to(device)
        loss = flow_matching_loss(model_for(batch), flow, batch, text_encoder, video, generator, masks=None)
        total += float(loss) * len(indices)
    return total / len(heldout)
