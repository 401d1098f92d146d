"""Video VAEs: pixels (B, 3, T, H, W) in [-1, 1] <-> DiT latents (B, C, T', H', W').

ARLON (paper section 2.1) runs its latent VQ-VAE and its DiT on the latents of Open-Sora v1.2's video VAE.
Two kinds, registered in `VIDEO_VAES` (the `VAEConfig.kind` axis):

- "opensora_v1_2" (`OpenSoraVAE`): Open-Sora v1.2's VideoAutoencoderPipeline (upstream `vae.py`). Each frame goes
  through the SDXL 2D VAE (`sdxl_vae.py`, 8x8 space, latents x 0.18215), then chunks of 17 frames go through
  the causal temporal VAE (`temporal_vae.py`, 17 -> 5 latent frames), and the result is normalised per channel,
  z = (z - shift) / scale. Loads hpcai-tech/OpenSora-VAE-v1.2 strictly (`from_pretrained`); Open-Sora's
  parameter names are kept in this module and the two stage modules for that reason.
- "tiny" (`TinyVAE`): a small trainable KL-VAE for the tiny preset, factorised into per-frame 2D convs and
  temporal convs, cheap enough to train on two CPU cores.

`build_video_vae(cfg)` builds either one with random weights; only `OpenSoraVAE.from_pretrained` loads weights.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlon.checkpoints.io import check_state_dict
from arlon.checkpoints.opensora import load_opensora_vae_state_dict
from arlon.config import VAEConfig
from arlon.errors import ConfigError, MissingWeightsError
from arlon.models.sdxl_vae import DiagonalGaussian, FramewiseAutoencoderKL
from arlon.models.temporal_vae import TemporalVAE, latent_frames
from arlon.registry import Registry

VIDEO_VAES: Registry = Registry("video VAE")

# Per-channel latent statistics of hpcai-tech/OpenSora-VAE-v1.2 (its config.json); z = (z - shift) / scale.
OPENSORA_LATENT_SHIFT = (-0.10, 0.34, 0.27, 0.98)
OPENSORA_LATENT_SCALE = (3.85, 2.32, 2.33, 3.06)


class VideoVAE(nn.Module, ABC):
    """A video autoencoder between pixels in [-1, 1] and the (normalised) latents the DiT sees.

    Inputs are cast to the weights' dtype and device; outputs come in the weights' dtype.
    """

    latent_channels: int

    @abstractmethod
    def encode(self, video: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """video (B, 3, T, H, W) in [-1, 1] -> latent (B, C, T', H', W') with (T', H', W') = latent_size(T, H, W).

        sample=False returns the posterior mean; sample=True draws from the posterior with `generator`.
        """

    @abstractmethod
    def decode(self, latent: Tensor, num_frames: int) -> Tensor:
        """latent (B, C, T', H', W') -> video (B, 3, num_frames, H, W), nominally in [-1, 1] (not clamped)."""

    @abstractmethod
    def latent_size(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') of the latent of a num_frames x height x width video."""

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


# ----------------------------------------------------------------------------------------------
# Open-Sora v1.2 VideoAutoencoderPipeline
# ----------------------------------------------------------------------------------------------


@VIDEO_VAES.register("opensora_v1_2")
class OpenSoraVAE(VideoVAE):
    """Open-Sora v1.2's video VAE: SDXL 2D VAE per frame, then the causal temporal VAE per 17-frame chunk.

    Pixel frames T -> latent frames 5 * (T // 17) + ceil((T mod 17) / 4); space / 8; 4 channels.
    The `encode_*` / `decode_*` stage methods are public so tests can compare each stage and replay recorded
    posterior noise (`noise=`); `encode`/`decode` chain them exactly like the reference pipeline.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        if cfg.latent_channels != len(OPENSORA_LATENT_SHIFT):
            raise ConfigError(f"vae.latent_channels must be 4 for kind 'opensora_v1_2', got {cfg.latent_channels}")
        if cfg.micro_frame_size < 1 or cfg.micro_batch_size < 1:
            raise ConfigError(
                f"vae.micro_frame_size ({cfg.micro_frame_size}) and vae.micro_batch_size ({cfg.micro_batch_size}) "
                "must be >= 1"
            )
        self.latent_channels = cfg.latent_channels
        self.micro_frame_size = cfg.micro_frame_size  # pixel frames per temporal chunk (17)
        self.micro_latent_frames = latent_frames(cfg.micro_frame_size)  # latent frames per chunk (5)
        # Persistent buffers, part of the checkpoint (first in its state_dict order).
        self.register_buffer("scale", torch.tensor(OPENSORA_LATENT_SCALE).view(1, -1, 1, 1, 1))
        self.register_buffer("shift", torch.tensor(OPENSORA_LATENT_SHIFT).view(1, -1, 1, 1, 1))
        self.spatial_vae = FramewiseAutoencoderKL(cfg)
        self.temporal_vae = TemporalVAE(cfg)

    @classmethod
    def from_pretrained(cls, cfg: VAEConfig, path: str | os.PathLike | None = None) -> "OpenSoraVAE":
        """Build from `cfg` and load hpcai-tech/OpenSora-VAE-v1.2 strictly, in eval mode, on CPU.

        `path` (else `cfg.pretrained`): a directory holding model.safetensors, the file itself (.safetensors,
        .pt, .pth, .bin), or the Hugging Face id if it is in the local cache. Raises MissingWeightsError if
        nothing is found, CheckpointMismatchError if the entries do not match `cfg`'s architecture.
        """
        source = path if path is not None else cfg.pretrained
        if source is None:
            raise MissingWeightsError(
                "vae.pretrained is not set: point it at hpcai-tech/OpenSora-VAE-v1.2 (a local directory, its "
                "model.safetensors, or the Hugging Face id once downloaded with "
                "`huggingface-cli download hpcai-tech/OpenSora-VAE-v1.2`)"
            )
        state = load_opensora_vae_state_dict(source)
        # Built on the meta device, so no random weights are allocated (393M parameters at paper size); the
        # checkpoint tensors become the parameters and buffers (assign=True).
        with torch.device("meta"):
            model = cls(cfg)
        check_state_dict(model.state_dict(), state, source=str(source))
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()

    # -- stages -------------------------------------------------------------------------------

    def encode_spatial(
        self,
        video: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """video (B, 3, T, H, W) -> per-frame 2D latents x 0.18215, (B, 4, T, H/8, W/8)."""
        return self.spatial_vae.encode(video.to(self.device, self.dtype), sample, generator, noise)

    def encode_temporal(
        self,
        x_z: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """2D latents (B, 4, T, h, w) -> unnormalised latent (B, 4, T', h, w), one temporal pass per 17 frames.

        With sample=True each chunk draws its own N(0, 1) (after all 2D draws, as in the reference), or takes
        its slice of `noise` (B, 4, T', h, w).
        """
        chunks = []
        for start in range(0, x_z.shape[2], self.micro_frame_size):
            posterior = DiagonalGaussian(self.temporal_vae.encode(x_z[:, :, start : start + self.micro_frame_size]))
            if sample:
                done = sum(chunk.shape[2] for chunk in chunks)
                chunk_noise = None if noise is None else noise[:, :, done : done + posterior.mean.shape[2]]
                chunks.append(posterior.sample(generator=generator, noise=chunk_noise))
            else:
                chunks.append(posterior.mean)  # (B, 4, 5, h, w) for a full 17-frame chunk
        return torch.cat(chunks, dim=2)

    def normalize_latent(self, z: Tensor) -> Tensor:
        return (z - self.shift.to(z.dtype)) / self.scale.to(z.dtype)

    def denormalize_latent(self, latent: Tensor) -> Tensor:
        return latent * self.scale.to(latent.dtype) + self.shift.to(latent.dtype)

    def decode_temporal(self, z: Tensor, num_frames: int) -> Tensor:
        """unnormalised latent (B, 4, T', h, w) -> 2D latents (B, 4, num_frames, h, w), 5 latent frames at a time."""
        expected = self.latent_size(num_frames, 0, 0)[0]
        if z.shape[2] != expected:
            raise ConfigError(
                f"num_frames={num_frames} needs {expected} latent frames, but the latent has {z.shape[2]}"
            )
        chunks = []
        remaining = num_frames
        for start in range(0, z.shape[2], self.micro_latent_frames):
            chunk_frames = min(self.micro_frame_size, remaining)  # the last chunk may be shorter than 17
            chunks.append(self.temporal_vae.decode(z[:, :, start : start + self.micro_latent_frames], chunk_frames))
            remaining -= self.micro_frame_size
        return torch.cat(chunks, dim=2)

    def decode_spatial(self, x_z: Tensor) -> Tensor:
        """2D latents (B, 4, T, h, w) -> video (B, 3, T, 8h, 8w)."""
        return self.spatial_vae.decode(x_z)

    # -- VideoVAE -----------------------------------------------------------------------------

    def encode(self, video: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        x_z = self.encode_spatial(video, sample, generator)  # (B, 4, T, H/8, W/8)
        z = self.encode_temporal(x_z, sample, generator)  # (B, 4, T', H/8, W/8)
        return self.normalize_latent(z)

    def decode(self, latent: Tensor, num_frames: int) -> Tensor:
        z = self.denormalize_latent(latent.to(self.device, self.dtype))
        x_z = self.decode_temporal(z, num_frames)  # (B, 4, num_frames, h, w)
        return self.decode_spatial(x_z)  # (B, 3, num_frames, 8h, 8w)

    def latent_size(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        full_chunks, rest = divmod(num_frames, self.micro_frame_size)
        frames = full_chunks * self.micro_latent_frames + latent_frames(rest)
        factor = self.spatial_vae.downsample_factor
        return frames, height // factor, width // factor


# ----------------------------------------------------------------------------------------------
# Tiny trainable VAE
# ----------------------------------------------------------------------------------------------


@dataclass
class VAELoss:
    total: Tensor  # () reconstruction + kl_weight * kl
    reconstruction: Tensor  # () mean squared error in pixel space
    kl: Tensor  # () mean per-element KL(q(z|x) || N(0, 1))


def _num_halvings(factor: int, field: str) -> int:
    if factor < 1 or factor & (factor - 1):
        raise ConfigError(f"{field} must be a power of two, got {factor}")
    return int(math.log2(factor))


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class FactorisedResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, with a residual; the kernel is (1, 3, 3) (space) or (3, 1, 1) (time)."""

    def __init__(self, channels: int, kernel_size: tuple[int, int, int]):
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.norm1 = _group_norm(channels)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size, padding=padding)
        self.norm2 = _group_norm(channels)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


SPACE_KERNEL = (1, 3, 3)
TIME_KERNEL = (3, 1, 1)


@VIDEO_VAES.register("tiny")
class TinyVAE(VideoVAE):
    """Small KL-regularised video VAE for the tiny preset (16x32x32 video -> 4x8x8x8 latent).

    Space and time are factorised: stride-2 (1,3,3) convs downsample space first (cheap: every later layer
    runs at 1/4 resolution), then stride-2 (3,1,1) convs downsample time. Frames are padded at the end by
    repeating the last one up to a multiple of `temporal_compression`; decode crops to `num_frames`.
    Latents are normalised with `shift`/`scale` buffers (0 and 1 until `set_latent_normalization`), the way
    Open-Sora normalises its latents, so the DiT sees roughly unit-variance inputs once the recipe sets them.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        spatial_stages = _num_halvings(cfg.spatial_compression, "vae.spatial_compression")
        temporal_stages = _num_halvings(cfg.temporal_compression, "vae.temporal_compression")
        if spatial_stages == 0:
            raise ConfigError("vae.spatial_compression must be >= 2 for kind 'tiny'")
        self.latent_channels = cfg.latent_channels
        self.spatial_compression = cfg.spatial_compression
        self.temporal_compression = cfg.temporal_compression
        self.kl_weight = cfg.kl_weight
        widths = [cfg.tiny_channels[min(i, len(cfg.tiny_channels) - 1)] for i in range(spatial_stages)]
        width = widths[-1]

        # encoder: space down, space block, time down, time block, moments
        self.space_down = nn.ModuleList(
            [
                nn.Conv3d(3 if i == 0 else widths[i - 1], widths[i], SPACE_KERNEL, stride=(1, 2, 2), padding=(0, 1, 1))
                for i in range(spatial_stages)
            ]
        )
        self.encoder_space_block = FactorisedResBlock(width, SPACE_KERNEL)
        self.time_down = nn.ModuleList(
            [nn.Conv3d(width, width, TIME_KERNEL, stride=(2, 1, 1), padding=(1, 0, 0)) for _ in range(temporal_stages)]
        )
        self.encoder_time_block = FactorisedResBlock(width, TIME_KERNEL)
        self.to_moments = nn.Conv3d(width, 2 * cfg.latent_channels, 1)

        # decoder: the mirror image, nearest-neighbour upsampling followed by a conv
        self.from_latent = nn.Conv3d(cfg.latent_channels, width, 1)
        self.decoder_time_block = FactorisedResBlock(width, TIME_KERNEL)
        self.time_up = nn.ModuleList(
            [nn.Conv3d(width, width, TIME_KERNEL, padding=(1, 0, 0)) for _ in range(temporal_stages)]
        )
        self.decoder_space_block = FactorisedResBlock(width, SPACE_KERNEL)
        self.space_up = nn.ModuleList(
            [
                nn.Conv3d(widths[i], widths[max(i - 1, 0)], SPACE_KERNEL, padding=(0, 1, 1))
                for i in reversed(range(spatial_stages))
            ]
        )
        self.to_pixels = nn.Conv3d(widths[0], 3, SPACE_KERNEL, padding=(0, 1, 1))

        self.register_buffer("shift", torch.zeros(1, cfg.latent_channels, 1, 1, 1))
        self.register_buffer("scale", torch.ones(1, cfg.latent_channels, 1, 1, 1))

    def set_latent_normalization(self, shift: Tensor, scale: Tensor) -> None:
        """Set the per-channel statistics (C,) that encode subtracts / divides by (e.g. measured on the data)."""
        self.shift.copy_(shift.reshape(self.shift.shape))
        self.scale.copy_(scale.reshape(self.scale.shape))

    def posterior(self, video: Tensor) -> DiagonalGaussian:
        """video (B, 3, T, H, W) -> q(z | x) over unnormalised latents (B, C, T', H/s, W/s)."""
        num_frames, height, width = video.shape[2:]
        if height % self.spatial_compression or width % self.spatial_compression:
            raise ConfigError(
                f"video size {height}x{width} is not divisible by vae.spatial_compression ({self.spatial_compression})"
            )
        x = video.to(self.device, self.dtype)
        pad = -num_frames % self.temporal_compression
        if pad:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)  # (B, 3, T' * t, H, W)
        for conv in self.space_down:
            x = F.silu(conv(x))  # (B, width, T, H/s, W/s) after the last stage
        x = self.encoder_space_block(x)
        for conv in self.time_down:
            x = F.silu(conv(x))  # (B, width, T', H/s, W/s) after the last stage
        x = self.encoder_time_block(x)
        return DiagonalGaussian(self.to_moments(x))  # moments (B, 2C, T', H/s, W/s)

    def decode_unnormalized(self, z: Tensor, num_frames: int) -> Tensor:
        """unnormalised latent (B, C, T', h, w) -> video (B, 3, num_frames, h*s, w*s)."""
        if num_frames > z.shape[2] * self.temporal_compression or num_frames < 1:
            raise ConfigError(f"num_frames={num_frames} does not fit a latent of {z.shape[2]} frames")
        x = self.decoder_time_block(self.from_latent(z))  # (B, width, T', h, w)
        for conv in self.time_up:
            x = F.silu(conv(F.interpolate(x, scale_factor=(2, 1, 1), mode="nearest")))  # time x2
        x = self.decoder_space_block(x)
        for conv in self.space_up:
            x = F.silu(conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")))  # space x2
        return self.to_pixels(x)[:, :, :num_frames]  # (B, 3, num_frames, H, W)

    def loss(self, video: Tensor, generator: torch.Generator | None = None) -> VAELoss:
        """Training loss on a video batch (B, 3, T, H, W): pixel MSE of decode(sample) + kl_weight * KL."""
        posterior = self.posterior(video)
        reconstruction = self.decode_unnormalized(posterior.sample(generator=generator), video.shape[2])
        mse = F.mse_loss(reconstruction.float(), video.to(reconstruction.device).float())
        kl = posterior.kl().float().mean()
        return VAELoss(total=mse + self.kl_weight * kl, reconstruction=mse, kl=kl)

    def encode(self, video: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        posterior = self.posterior(video)
        z = posterior.sample(generator=generator) if sample else posterior.mean
        return (z - self.shift.to(z.dtype)) / self.scale.to(z.dtype)

    def decode(self, latent: Tensor, num_frames: int) -> Tensor:
        latent = latent.to(self.device, self.dtype)
        return self.decode_unnormalized(latent * self.scale + self.shift, num_frames)

    def latent_size(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        return (
            math.ceil(num_frames / self.temporal_compression),
            height // self.spatial_compression,
            width // self.spatial_compression,
        )


def build_video_vae(cfg: VAEConfig) -> VideoVAE:
    """The VAE of kind `cfg.kind` with freshly initialised weights.

    No weights are loaded, not even for "opensora_v1_2" with `cfg.pretrained` set: use
    `OpenSoraVAE.from_pretrained(cfg)` for the real checkpoint, or the training recipe's loader for a TinyVAE.
    """
    return VIDEO_VAES.get(cfg.kind)(cfg)
