"""Open-Sora v1.2's causal temporal VAE (`VAE_Temporal_SD` in `opensora/models/vae/vae_temporal.py`), MAGVIT-v2 style.

It compresses the per-frame SDXL latents along time only: (B, 4, T, h, w) -> moments (B, 8, T/4, h, w) ->
latent (B, 4, T/4, h, w) -> (B, 4, T, h, w). Every convolution is a `CausalConv3d` that zero-pads time at the
front only, so frame t never sees frames after it; the input is also front-padded with zeros up to a multiple
of 4 frames (17 -> 20 -> 5 latent frames) and decode drops those frames again. Time is downsampled by stride-2
causal convs and upsampled by a conv to 2x channels followed by depth-to-time. Space is never resampled here.

Parameter names are Open-Sora's (`temporal_vae.{encoder,decoder,quant_conv,post_quant_conv}.*`, with the extra
`.conv.` of the CausalConv3d wrapper) so its checkpoint loads strictly.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from arlon.config import VAEConfig

# VAE_Temporal_SD's fixed architecture; only the width (filters) and GroupNorm groups are configurable.
NUM_RES_BLOCKS = 4
CHANNEL_MULTIPLIERS = (1, 2, 2, 4)
TEMPORAL_DOWNSAMPLE = (False, True, True)  # per level transition: stride-2 time downsample or not
TIME_DOWNSAMPLE_FACTOR = 2 ** sum(TEMPORAL_DOWNSAMPLE)  # 4


def time_padding(num_frames: int) -> int:
    """Zero frames put in front so that the frame count is a multiple of 4 (17 -> 3)."""
    return (TIME_DOWNSAMPLE_FACTOR - num_frames % TIME_DOWNSAMPLE_FACTOR) % TIME_DOWNSAMPLE_FACTOR


def latent_frames(num_frames: int) -> int:
    """Latent frames the temporal VAE makes from `num_frames` frames: ceil(T / 4) (17 -> 5, 16 -> 4, 1 -> 1)."""
    return (num_frames + time_padding(num_frames)) // TIME_DOWNSAMPLE_FACTOR


class CausalConv3d(nn.Module):
    """Conv3d whose time padding is all at the front (kernel_t - stride_t zero frames); space is 'same'-padded."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, time_stride: int = 1, bias: bool = True):
        super().__init__()
        time_pad = kernel_size - time_stride  # (k_t - 1) + (1 - stride): 2 for k=3, 1 for a stride-2 k=3 conv
        space_pad = kernel_size // 2
        self.padding = (space_pad, space_pad, space_pad, space_pad, time_pad, 0)  # (W, W, H, H, T_front, T_back)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=(time_stride, 1, 1), bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.padding))


class ResBlock3D(nn.Module):
    """GroupNorm -> SiLU -> causal conv3 (no bias), twice, plus a 1x1x1 shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int):
        super().__init__()
        # PyTorch's default GroupNorm eps (1e-5), as in the reference (unlike the SDXL stage's 1e-6).
        self.norm1 = nn.GroupNorm(norm_groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, bias=False)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, bias=False)
        self.conv3 = CausalConv3d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        residual = x if self.conv3 is None else self.conv3(x)
        return h + residual


def res_block_stack(in_channels: int, out_channels: int, norm_groups: int) -> nn.ModuleList:
    return nn.ModuleList(
        [ResBlock3D(in_channels if i == 0 else out_channels, out_channels, norm_groups) for i in range(NUM_RES_BLOCKS)]
    )


class TemporalEncoder(nn.Module):
    """(B, 4, T, h, w) -> (B, 8, T/4, h, w) features (mean and logvar before quant_conv)."""

    def __init__(self, in_channels: int, out_channels: int, filters: int, norm_groups: int):
        super().__init__()
        widths = [filters * m for m in CHANNEL_MULTIPLIERS]  # 128, 256, 256, 512 at paper size
        self.conv_in = CausalConv3d(in_channels, filters, 3, bias=False)
        self.block_res_blocks = nn.ModuleList(
            [res_block_stack(widths[max(i - 1, 0)], widths[i], norm_groups) for i in range(len(widths))]
        )
        # Entry 0 is an Identity (no time downsample at the first transition), so checkpoint keys start at 1.
        self.conv_blocks = nn.ModuleList(
            [
                CausalConv3d(widths[i], widths[i], 3, time_stride=2) if downsample else nn.Identity()
                for i, downsample in enumerate(TEMPORAL_DOWNSAMPLE)
            ]
        )
        self.res_blocks = res_block_stack(widths[-1], widths[-1], norm_groups)
        self.norm1 = nn.GroupNorm(norm_groups, widths[-1])
        self.conv2 = CausalConv3d(widths[-1], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)  # (B, F, T, h, w)
        for level, blocks in enumerate(self.block_res_blocks):
            for block in blocks:
                x = block(x)
            if level < len(self.conv_blocks):
                x = self.conv_blocks[level](x)  # time halved after levels 1 and 2
        for block in self.res_blocks:
            x = block(x)  # (B, 4F, T/4, h, w)
        return self.conv2(F.silu(self.norm1(x)))  # (B, 2C, T/4, h, w)


class TemporalDecoder(nn.Module):
    """latent (B, 4, T/4, h, w) -> (B, 4, T, h, w)."""

    def __init__(self, latent_channels: int, out_channels: int, filters: int, norm_groups: int):
        super().__init__()
        widths = [filters * m for m in CHANNEL_MULTIPLIERS]
        self.conv1 = CausalConv3d(latent_channels, widths[-1], 3)
        self.res_blocks = res_block_stack(widths[-1], widths[-1], norm_groups)
        # Level i maps the width of level i+1 (or the top width) to widths[i]; levels run top-down in forward.
        self.block_res_blocks = nn.ModuleList(
            [res_block_stack(widths[min(i + 1, len(widths) - 1)], widths[i], norm_groups) for i in range(len(widths))]
        )
        # conv_blocks[i] upsamples time on the way from level i+1 down to level i: conv to 2x channels, then
        # depth-to-time. Entry 0 is an Identity (no key), as in the encoder.
        self.conv_blocks = nn.ModuleList(
            [
                CausalConv3d(widths[i + 1], 2 * widths[i + 1], 3) if upsample else nn.Identity()
                for i, upsample in enumerate(TEMPORAL_DOWNSAMPLE)
            ]
        )
        self.norm1 = nn.GroupNorm(norm_groups, widths[0])
        self.conv_out = CausalConv3d(widths[0], out_channels, 3)

    def forward(self, z: Tensor) -> Tensor:
        x = self.conv1(z)  # (B, 4F, T/4, h, w)
        for block in self.res_blocks:
            x = block(x)
        for level in reversed(range(len(self.block_res_blocks))):
            for block in self.block_res_blocks[level]:
                x = block(x)
            if level > 0:
                x = self.conv_blocks[level - 1](x)
                time_stride = 2 if TEMPORAL_DOWNSAMPLE[level - 1] else 1
                # Channel index c * time_stride + s goes to output frame t * time_stride + s.
                x = rearrange(x, "b (c s) t h w -> b c (t s) h w", s=time_stride)
        return self.conv_out(F.silu(self.norm1(x)))  # (B, 4, T, h, w)


class TemporalVAE(nn.Module):
    """VAE_Temporal_SD: the causal encoder/decoder plus 1x1x1 quant_conv and post_quant_conv."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        channels = cfg.latent_channels  # in/out: the 2D latents; latent: the same width
        filters, groups = cfg.temporal_filters, cfg.temporal_norm_groups
        self.encoder = TemporalEncoder(channels, 2 * channels, filters, groups)
        self.quant_conv = CausalConv3d(2 * channels, 2 * channels, 1)
        self.post_quant_conv = CausalConv3d(channels, channels, 1)
        self.decoder = TemporalDecoder(channels, channels, filters, groups)

    def encode(self, x: Tensor) -> Tensor:
        """2D latents (B, C, T, h, w) -> posterior moments (B, 2C, ceil(T/4), h, w)."""
        x = F.pad(x, (0, 0, 0, 0, time_padding(x.shape[2]), 0))  # zero frames in FRONT: (B, C, 4k, h, w)
        return self.quant_conv(self.encoder(x))

    def decode(self, z: Tensor, num_frames: int) -> Tensor:
        """latent (B, C, T', h, w) -> 2D latents (B, C, num_frames, h, w), dropping the front padding frames."""
        x = self.decoder(self.post_quant_conv(z))  # (B, C, 4 T', h, w)
        return x[:, :, time_padding(num_frames) :]
