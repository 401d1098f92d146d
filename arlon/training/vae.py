"""Stage "vae": the tiny preset's video VAE (`TinyVAE`), trained on pixels.

The paper loads Open-Sora v1.2's pretrained VAE (`opensora/models/vae/vae.py`); the tiny preset has no such
checkpoint, so it trains its own KL-VAE on the toy world: pixel MSE + kl_weight * KL
(`TinyVAE.loss`). After training, the latent normalisation is measured on training clips and
written into the VAE (`set_latent_normalization`), as Open-Sora's VAE carries its own per-channel
shift/scale, so the latent VQ-VAEs and the DiT see roughly unit-variance latents.

Cheap on the CPU: the VAE is made of local convolutions, so it can train on random temporal crops
(`train.clip_frames`) and still encode whole clips.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from arlon.config import VAEConfig
from arlon.errors import ConfigError
from arlon.models.video_vae import TinyVAE, build_video_vae
from arlon.training.common import RunContext, StageOutput, TrainConfig, run_training, seeded
from arlon.training.data import ClipSource, TrainingData

NORMALIZATION_CLIPS = 256  # training clips the latent mean/std are measured on
EVAL_BATCH = 16


def train_vae(cfg: VAEConfig, data: TrainingData, heldout: ClipSource, train: TrainConfig, run: RunContext) -> StageOutput:
    """Train a TinyVAE on `data` (pixel clips), set its latent normalisation, report held-out PSNR."""
    if cfg.kind != "tiny":
        raise ConfigError(
            f"stage 'vae' trains the tiny VAE only; vae.kind is {cfg.kind!r}, whose weights load from vae.pretrained"
        )
    with seeded(train.seed, run.device):
        vae = build_video_vae(cfg).to(run.device)

    def loss_fn(model: TinyVAE, batch, generator: torch.Generator) -> Tensor:
        video = random_frame_crop(batch.x, train.clip_frames, generator)  # (B, 3, clip_frames, H, W)
        return model.loss(video, generator=generator).total

    result = run_training("vae", vae, loss_fn, data, train, run)
    vae.eval()
    shift, scale = latent_statistics(vae, data.source, run.device)
    vae.set_latent_normalization(shift, scale)
    metrics = {**result.loss_metrics(), "heldout_psnr_db": heldout_psnr(vae, heldout, run.device)}
    metrics.update({f"latent_shift_{c}": float(v) for c, v in enumerate(shift)})
    metrics.update({f"latent_scale_{c}": float(v) for c, v in enumerate(scale)})
    return StageOutput(vae, metrics, result)


def random_frame_crop(video: Tensor, num_frames: int, generator: torch.Generator) -> Tensor:
    """video (B, 3, T, H, W) -> (B, 3, num_frames, H, W) from one random start; unchanged if num_frames is 0 or >= T."""
    total = video.shape[2]
    if num_frames <= 0 or num_frames >= total:
        return video
    start = int(torch.randint(0, total - num_frames + 1, (), generator=generator))
    return video[:, :, start : start + num_frames]


@torch.no_grad()
def latent_statistics(vae: TinyVAE, source: ClipSource, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std (C,) of the unnormalised posterior means over up to 256 clips of `source`."""
    was_shift, was_scale = vae.shift.clone(), vae.scale.clone()
    vae.set_latent_normalization(torch.zeros_like(was_shift), torch.ones_like(was_scale))
    latents = []
    for start in range(0, min(len(source), NORMALIZATION_CLIPS), EVAL_BATCH):
        stop = min(start + EVAL_BATCH, len(source), NORMALIZATION_CLIPS)
        video = torch.stack([source.clip(i)[0] for i in range(start, stop)]).to(device)
        latents.append(vae.encode(video).float().cpu())  # (b, C, T', H', W')
    vae.set_latent_normalization(was_shift, was_scale)
    z = torch.cat(latents).transpose(0, 1).flatten(1)  # (C, N * T' * H' * W')
    return z.mean(dim=1), z.std(dim=1).clamp_min(1e-6)


@torch.no_grad()
def heldout_psnr(vae: TinyVAE, source: ClipSource, device: torch.device) -> float:
    """Mean per-clip PSNR (dB) of encode -> decode on `source`, on frames quantised to uint8 like a written video."""
    psnrs = []
    for start in range(0, len(source), EVAL_BATCH):
        video = torch.stack([source.clip(i)[0] for i in range(start, min(start + EVAL_BATCH, len(source)))]).to(device)
        recon = vae.decode(vae.encode(video), video.shape[2]).float()
        original = to_uint8_levels(video.float())
        mse = (to_uint8_levels(recon) - original).pow(2).flatten(1).mean(dim=1)  # (b,) on a [0, 1] scale
        psnrs.extend(10 * math.log10(1.0 / max(float(m), 1e-12)) for m in mse)
    return sum(psnrs) / len(psnrs)


def to_uint8_levels(video: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] rounded to the 256 levels of a uint8 frame."""
    return (((video.clamp(-1, 1) + 1) * 127.5).round() / 255.0)
