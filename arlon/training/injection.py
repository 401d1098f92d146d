"""Stage "injector": ARLON's semantic injection modules on the frozen backbone (paper sections 2.2-2.3).

Training (section 2.3, eq. 6): each sample is (video latent X^0, caption Y, condition F). F is the
video latent passed through a latent VQ-VAE, F = D_latent(E_latent(X^0)) (eq. 3): the coarse DiT-ratio
one ("coarser visual latent tokens") unless `injection.condition_vq` is "ar". F is computed once per
pool clip, or per batch when the latents stream from prepared shards. The loss is the backbone's rectified-flow loss with the injection in place, over the
generated frames of a random frame mask ("we randomly unmask frames, leaving them noise-free").

Only the injector learns: the backbone's parameters are frozen, but it runs in train mode so its
caption dropout still replaces captions by the null caption (Open-Sora's training forward), which
teaches the injector to work under both branches of classifier-free guidance. The injector's own
noise strategy (`noise.strategy`: none, gaussian, uncertainty sampling, eq. 7) is active because the
injector is in train mode. Its weights are kept as an EMA, as Open-Sora does for the DiT.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from arlon.config import FlowConfig, InjectionConfig, NoiseConfig, VideoConfig
from arlon.injection.adapters import SemanticInjector
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.text_encoders import TextEncoder
from arlon.rectified_flow import FrameMaskGenerator, RectifiedFlow
from arlon.training.backbone import flow_matching_loss, heldout_flow_loss
from arlon.training.common import RunContext, StageOutput, TrainConfig, run_training, seeded
from arlon.training.data import Batch, ClipPool, Stream, TrainingData
from arlon.training.vq import decode_codes, encode_codes


def train_injector(
    cfg: InjectionConfig,
    noise: NoiseConfig,
    flow_cfg: FlowConfig,
    video: VideoConfig,
    backbone: STDiT3,
    condition_vq: LatentVQVAE,
    text_encoder: TextEncoder,
    data: TrainingData | Stream,
    heldout: ClipPool,
    train: TrainConfig,
    run: RunContext,
) -> StageOutput:
    """Train a SemanticInjector on the frozen `backbone`; the returned module holds the EMA weights."""
    # F per pool clip, computed once; a stream of shards (paper scale) computes each batch's as it comes.
    conditions = latent_conditions(condition_vq, data.source.x, run.device) if isinstance(data, TrainingData) else None
    heldout_conditions = latent_conditions(condition_vq, heldout.x, run.device)
    backbone.requires_grad_(False)
    backbone.to(run.device).train()  # frozen, but with Open-Sora's training-time caption dropout
    backbone.grad_checkpointing = train.activation_checkpointing
    with seeded(train.seed, run.device):
        injector = SemanticInjector(cfg, noise, backbone).to(run.device)
    flow = RectifiedFlow(flow_cfg)

    def loss_fn(model: SemanticInjector, batch: Batch, generator: torch.Generator) -> Tensor:
        if conditions is not None:
            F = conditions[batch.indices].to(run.device)  # (B, C, T, H, W)
        else:
            with torch.no_grad():
                F = condition_vq.decode(condition_vq.encode(batch.x)).to(batch.x.dtype)  # eq. 3 on this batch
        model_fn = partial(backbone, injection=model(F))
        return flow_matching_loss(model_fn, flow, batch, text_encoder, video, generator, FrameMaskGenerator(generator=generator))

    result = run_training("injector", injector, loss_fn, data, train, run)
    if result.ema is not None:
        result.ema.copy_to(injector)
    injector.eval()
    backbone.eval()

    def injected(batch: Batch):
        return partial(backbone, injection=injector(heldout_conditions[batch.indices.cpu()].to(run.device)))

    metrics = {
        **result.loss_metrics(),
        "heldout_loss": heldout_flow_loss(injected, flow, heldout, text_encoder, video, run.device),
        # The same draws without injection: how much the condition F helps the frozen backbone.
        "heldout_loss_without_injection": heldout_flow_loss(lambda batch: backbone, flow, heldout, text_encoder, video, run.device),
        "trainable_parameters": float(injector.num_parameters()),
    }
    return StageOutput(injector, metrics, result)


@torch.no_grad()
def latent_conditions(vq: LatentVQVAE, latents: Tensor, device: torch.device) -> Tensor:
    """F = D_latent(E_latent(X^0)) for every latent (N, C, T, H, W), float32 on the CPU (eq. 3)."""
    vq.eval()
    return decode_codes(vq, encode_codes(vq, latents, device), device)
