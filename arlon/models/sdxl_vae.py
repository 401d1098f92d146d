"""SDXL's 2D AutoencoderKL: the per-frame stage of Open-Sora v1.2's video VAE (its `VideoAutoencoderKL`).

Open-Sora v1.2 wraps the SDXL VAE that PixArt-Sigma ships (`PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers`,
subfolder `vae`, a diffusers `AutoencoderKL`) and runs it frame by frame. This is our own re-implementation of
that architecture: images (N, 3, H, W) in [-1, 1] <-> posterior moments (N, 2C, H/8, W/8) <-> latents (N, C, H/8,
W/8). Module and parameter names are diffusers' (>= 0.14 attention names) so that the `spatial_vae.module.*`
entries of Open-Sora's checkpoint load strictly; registration order follows diffusers too, so our state_dict
lists the entries in the reference order.

`DiagonalGaussian` is the posterior both stages of the video VAE use (diffusers' and Open-Sora's
DiagonalGaussianDistribution: logvar clamped to [-30, 20]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from arlon.config import VAEConfig

# diffusers builds every GroupNorm of the SDXL VAE with resnet_eps = 1e-6 (not PyTorch's default 1e-5).
NORM_EPS = 1e-6
# Open-Sora's VideoAutoencoderKL multiplies 2D latents by this hard-coded factor, not SDXL's config value 0.13025.
OPENSORA_LATENT_SCALING = 0.18215


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) from moments (N, 2C, ...) split on dim 1; logvar clamped to [-30, 20]."""

    def __init__(self, moments: Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """mean + std * eps. eps is `noise` if given, else N(0, 1) drawn in float32 from `generator`."""
        if noise is None:
            # Drawn in float32 on the generator's device so that a CPU generator reproduces the same numbers
            # whatever the model's device and dtype (and equals the reference's CPU fp32 draw).
            device = generator.device if generator is not None else self.mean.device
            noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=torch.float32)
        return self.mean + self.std * noise.to(device=self.mean.device, dtype=self.mean.dtype)

    def kl(self) -> Tensor:
        """Elementwise KL(N(mean, var) || N(0, 1)), same shape as `mean`."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar)


class ResnetBlock2D(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, twice, plus a (1x1-projected when widths differ) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, in_channels, eps=NORM_EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels, eps=NORM_EPS)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class MidBlockAttention(nn.Module):
    """Single-head self-attention over the H*W positions with a residual (diffusers `Attention` in the VAE).

    diffusers sets attention_head_dim = channels, so there is one head of width C and the scale is 1/sqrt(C).
    """

    def __init__(self, channels: int, norm_groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(norm_groups, channels, eps=NORM_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        # A list so the checkpoint key stays `to_out.0` (diffusers' entry 1 is a parameter-free dropout).
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: Tensor) -> Tensor:
        _, _, height, width = x.shape
        h = rearrange(self.group_norm(x), "n c h w -> n 1 (h w) c")  # (N, 1 head, H*W, C)
        h = F.scaled_dot_product_attention(self.to_q(h), self.to_k(h), self.to_v(h))
        h = self.to_out[0](h)
        return x + rearrange(h, "n 1 (h w) c -> n c h w", h=height, w=width)


class MidBlock2D(nn.Module):
    """resnet -> attention -> resnet at the lowest resolution (diffusers UNetMidBlock2D)."""

    def __init__(self, channels: int, norm_groups: int):
        super().__init__()
        # Attentions are registered before resnets, as in diffusers, which fixes the state_dict order.
        self.attentions = nn.ModuleList([MidBlockAttention(channels, norm_groups)])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, norm_groups) for _ in range(2)])

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        return self.resnets[1](x)


class Downsample2D(nn.Module):
    """Stride-2 conv3x3 after zero-padding one row/column at the bottom/right only (diffusers padding=0 path)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (N, C, H, W) -> (N, C, H/2, W/2)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2, then conv3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (N, C, 2H, 2W)


class DownEncoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, norm_groups: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, norm_groups)
                for i in range(num_layers)
            ]
        )
        # The last block has no downsampler, hence no `downsamplers.*` keys.
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)]) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpDecoderBlock2D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, norm_groups: int, upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, norm_groups)
                for i in range(num_layers)
            ]
        )
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)]) if upsample else None

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Encoder2D(nn.Module):
    """(N, 3, H, W) -> moments (N, 2C, H/f, W/f), f = 2^(levels - 1)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        channels, groups = cfg.spatial_channels, cfg.spatial_norm_groups
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            [
                DownEncoderBlock2D(
                    channels[max(i - 1, 0)],
                    channels[i],
                    cfg.spatial_layers_per_block,
                    groups,
                    downsample=i < len(channels) - 1,
                )
                for i in range(len(channels))
            ]
        )
        self.mid_block = MidBlock2D(channels[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], eps=NORM_EPS)
        self.conv_out = nn.Conv2d(channels[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)  # (N, C0, H, W)
        for block in self.down_blocks:
            x = block(x)  # (N, C_last, H/f, W/f) after the last block
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (N, 2C, H/f, W/f)


class Decoder2D(nn.Module):
    """latent (N, C, h, w) -> image (N, 3, h*f, w*f); each up block has layers_per_block + 1 resnets."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        reversed_channels = tuple(reversed(cfg.spatial_channels))
        groups = cfg.spatial_norm_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, reversed_channels[0], 3, padding=1)
        # up_blocks is registered before mid_block (diffusers declares the list first), as in the checkpoint.
        self.up_blocks = nn.ModuleList(
            [
                UpDecoderBlock2D(
                    reversed_channels[max(i - 1, 0)],
                    reversed_channels[i],
                    cfg.spatial_layers_per_block + 1,
                    groups,
                    upsample=i < len(reversed_channels) - 1,
                )
                for i in range(len(reversed_channels))
            ]
        )
        self.mid_block = MidBlock2D(reversed_channels[0], groups)
        self.conv_norm_out = nn.GroupNorm(groups, reversed_channels[-1], eps=NORM_EPS)
        self.conv_out = nn.Conv2d(reversed_channels[-1], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.conv_in(z)  # (N, C_last, h, w)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x)  # (N, C0, h*f, w*f) after the last block
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # (N, 3, h*f, w*f)


class AutoencoderKL2D(nn.Module):
    """The SDXL VAE: encoder + quant_conv -> posterior moments; post_quant_conv + decoder -> image."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.encoder = Encoder2D(cfg)
        self.decoder = Decoder2D(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)

    def encode(self, images: Tensor) -> Tensor:
        """images (N, 3, H, W) -> posterior moments (N, 2C, H/f, W/f): [mean | logvar] on dim 1."""
        return self.quant_conv(self.encoder(images))

    def decode(self, z: Tensor) -> Tensor:
        """latent (N, C, h, w) (unscaled) -> images (N, 3, h*f, w*f)."""
        return self.decoder(self.post_quant_conv(z))


class FramewiseAutoencoderKL(nn.Module):
    """Open-Sora's VideoAutoencoderKL: the 2D VAE on every frame, in micro-batches of frames, latents x 0.18215.

    The checkpoint nests the diffusers model under `module` (`spatial_vae.module.*`), so we keep that attribute.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.module = AutoencoderKL2D(cfg)
        self.micro_batch_size = cfg.micro_batch_size
        self.downsample_factor = 2 ** (len(cfg.spatial_channels) - 1)

    def encode(
        self,
        video: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """video (B, 3, T, H, W) -> scaled 2D latents (B, C, T, H/8, W/8).

        sample=False returns the posterior means; sample=True draws one N(0, 1) tensor per micro-batch of frames
        (in (B T) frame order, the reference's order), or uses `noise` (B, C, T, H/8, W/8) when given.
        """
        batch = video.shape[0]
        frames = rearrange(video, "b c t h w -> (b t) c h w")  # (B*T, 3, H, W)
        frame_noise = None if noise is None else rearrange(noise, "b c t h w -> (b t) c h w")
        latents = []
        for start in range(0, frames.shape[0], self.micro_batch_size):
            stop = start + self.micro_batch_size
            posterior = DiagonalGaussian(self.module.encode(frames[start:stop]))
            if sample:
                chunk_noise = None if frame_noise is None else frame_noise[start:stop]
                z = posterior.sample(generator=generator, noise=chunk_noise)
            else:
                z = posterior.mean
            latents.append(z * OPENSORA_LATENT_SCALING)
        return rearrange(torch.cat(latents), "(b t) c h w -> b c t h w", b=batch)  # (B, C, T, h, w)

    def decode(self, latent: Tensor) -> Tensor:
        """scaled 2D latents (B, C, T, h, w) -> video (B, 3, T, h*8, w*8)."""
        batch = latent.shape[0]
        frames = rearrange(latent, "b c t h w -> (b t) c h w")  # (B*T, C, h, w)
        decoded = [
            self.module.decode(frames[start : start + self.micro_batch_size] / OPENSORA_LATENT_SCALING)
            for start in range(0, frames.shape[0], self.micro_batch_size)
        ]
        return rearrange(torch.cat(decoded), "(b t) c h w -> b c t h w", b=batch)  # (B, 3, T, H, W)
