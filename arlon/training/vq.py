"""Stages "ar_vq" and "dit_vq": the two latent VQ-VAEs (paper sections 2.1 and 2.3).

Both train on the same cached DiT latents with the same objective (`LatentVQVAE.loss`: latent
reconstruction MSE + commitment loss; the codebook moves by EMA with dead-code restarts). They differ
only in their compression: (r, o, o) gives the AR model's tokens, the coarser (r, 2o, 2o) the DiT's
training condition ("coarser visual latent tokens", section 2.3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from arlon.config import LatentVQConfig
from arlon.models.latent_vq import LatentVQVAE
from arlon.training.common import RunContext, StageOutput, TrainConfig, run_training, seeded
from arlon.training.data import ClipPool, Stream, TrainingData

EVAL_BATCH = 64


def train_latent_vq(
    stage: str, cfg: LatentVQConfig, data: TrainingData | Stream, heldout: ClipPool, train: TrainConfig, run: RunContext
) -> StageOutput:
    """Train a LatentVQVAE on the latents of `data` (a pool or a stream); report held-out reconstruction and code usage."""
    with seeded(train.seed, run.device):
        vq = LatentVQVAE(cfg).to(run.device)

    def loss_fn(model: LatentVQVAE, batch, generator: torch.Generator) -> Tensor:
        loss, _ = model.loss(batch.x)  # (B, C, T', H', W') latents
        return loss

    result = run_training(stage, vq, loss_fn, data, train, run)
    vq.eval()
    # Code usage over (up to 1024) training clips of a pool; a stream of shards has none at hand, so its held-out clips.
    usage_latents = data.source.x[:1024] if isinstance(data, TrainingData) else heldout.x
    train_codes = encode_codes(vq, usage_latents, run.device)
    metrics = {
        **result.loss_metrics(),
        "heldout_mse": heldout_reconstruction_mse(vq, heldout, run.device),
        "codebook_usage": float(train_codes.unique().numel() / cfg.codebook_size),
        "perplexity": code_perplexity(train_codes, cfg.codebook_size),
    }
    return StageOutput(vq, metrics, result)


@torch.no_grad()
def encode_codes(vq: LatentVQVAE, latents: Tensor, device: torch.device) -> Tensor:
    """latents (N, C, T, H, W) -> codes Q (N, t, h, w) long on the CPU, in batches."""
    return torch.cat([vq.encode(latents[i : i + EVAL_BATCH].to(device)).cpu() for i in range(0, len(latents), EVAL_BATCH)])


@torch.no_grad()
def decode_codes(vq: LatentVQVAE, codes: Tensor, device: torch.device) -> Tensor:
    """codes Q (N, t, h, w) -> F (N, C, T, H, W) float32 on the CPU, in batches (eq. 3 after the encoder)."""
    return torch.cat([vq.decode(codes[i : i + EVAL_BATCH].to(device)).float().cpu() for i in range(0, len(codes), EVAL_BATCH)])


@torch.no_grad()
def heldout_reconstruction_mse(vq: LatentVQVAE, heldout: ClipPool, device: torch.device) -> float:
    recon = decode_codes(vq, encode_codes(vq, heldout.x, device), device)
    return float((recon - heldout.x.float()).pow(2).mean())


def code_perplexity(codes: Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code histogram: the effective number of codes in use."""
    probs = torch.bincount(codes.flatten(), minlength=codebook_size).float()
    probs = probs / probs.sum()
    return float(torch.exp(-(probs * torch.log(probs + 1e-10)).sum()))
