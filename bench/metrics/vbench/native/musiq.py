"""MUSIQ (trained on SPAQ), the image-quality model of VBench's imaging quality, loading
`musiq_spaq_ckpt-358bb6af.pth` as VBench does (through pyiqa 0.1.10's `archs/musiq_arch.py`, `MUSIQ`).

An image in [0, 1] becomes one token sequence over three scales (pyiqa's `data/multiscale_trans_util.py`,
`get_multiscale_patches`): the image resized (bicubic, aspect kept, no antialiasing) to longer sides 224 and 384,
and the image itself; each cut into 32x32 patches (zero padding "same"-style at the edges), each patch tagged with
a hashed 10x10 grid position and its scale. A patch goes through a small ResNet stem with weight-standardised
convolutions, is flattened and projected to 384; a 14-block transformer with a CLS token reads the sequence and a
linear head gives the score (about 0-100).

pyiqa pads the two resized scales' sequences to fixed lengths with masked tokens. A masked key gets the logit
-1000 before the softmax, whose weight then underflows to exactly 0 in fp32, so the padding never reaches a real
token or the CLS output: this module leaves it out, and frames of one size form one batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.metrics.vbench.native.checkpoints import load_exactly

PATCH = 32
GRID = 10  # the hashed spatial position grid
LONGER_SIDES = (224, 384)
WIDTH, HEADS, DEPTH, MLP = 384, 6, 14, 1152


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" zero padding (pyiqa's `exact_padding_2d`): the extra pixel, if odd, at the bottom/right."""
    height, width = x.shape[-2:]
    pad_h = (math.ceil(height / stride) - 1) * stride + kernel - height
    pad_w = (math.ceil(width / stride) - 1) * stride + kernel - width
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class StdConv(nn.Conv2d):
    """A convolution whose kernels are standardised (zero mean, unit std per output channel) when applied."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        weight = weight / (weight.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(same_padding(x, self.kernel_size[0], self.stride[0]), weight, self.bias, self.stride)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.gn1 = StdConv(cin, cin, 1, bias=False), nn.GroupNorm(32, cin, eps=1e-4)
        self.conv2, self.gn2 = StdConv(cin, cin, 3, bias=False), nn.GroupNorm(32, cin, eps=1e-4)
        self.conv3, self.gn3 = StdConv(cin, cout, 1, bias=False), nn.GroupNorm(32, cout, eps=1e-4)
        self.conv_proj, self.gn_proj = StdConv(cin, cout, 1, bias=False), nn.GroupNorm(32, cout, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + identity)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value, self.out = (nn.Linear(WIDTH, WIDTH) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = (proj(x).view(B, N, HEADS, C // HEADS).transpose(1, 2) for proj in (self.query, self.key, self.value))
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))  # (B, N, C)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH, eps=1e-6), nn.LayerNorm(WIDTH, eps=1e-6)
        self.attention = Attention()
        self.mlp = nn.Sequential()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(WIDTH, MLP), nn.GELU(), nn.Linear(MLP, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.posembed_input = nn.Module()
        self.posembed_input.position_emb = nn.Parameter(torch.zeros(1, GRID * GRID, WIDTH))
        self.scaleembed_input = nn.Module()
        self.scaleembed_input.scale_emb = nn.Parameter(torch.zeros(len(LONGER_SIDES) + 1, WIDTH))
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.transformer = nn.ModuleDict({f"encoderblock_{i}": Block() for i in range(DEPTH)})
        self.encoder_norm = nn.LayerNorm(WIDTH, eps=1e-6)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        x = tokens + self.posembed_input.position_emb[0][positions] + self.scaleembed_input.scale_emb[scales]  # (B, N, C)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)  # (B, 1 + N, C)
        for block in self.transformer.values():
            x = block(x)
        return self.encoder_norm(x)


class MUSIQ(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_root = StdConv(3, 64, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, 64, eps=1e-6)
        self.block1 = Bottleneck(64, 256)
        self.embedding = nn.Linear(256 * (PATCH // 4) ** 2, WIDTH)
        self.transformer_encoder = Encoder()
        self.head = nn.Linear(WIDTH, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1], all one size -> scores (B,)."""
        patches, positions, scales = multiscale_patches(images * 2 - 1)  # (B, N, 3, 32, 32), (N,), (N,)
        B, N = patches.shape[:2]
        x = self.gn_root(self.conv_root(patches.flatten(0, 1)))  # (B*N, 64, 16, 16)
        x = F.max_pool2d(same_padding(F.relu(x), 3, 2), 3, 2)  # (B*N, 64, 8, 8)
        x = self.block1(x)  # (B*N, 256, 8, 8)
        x = self.embedding(x.permute(0, 2, 3, 1).reshape(B, N, -1))  # (B, N, C)
        x = self.transformer_encoder(x, positions.to(x.device), scales.to(x.device))
        return self.head(x[:, 0]).squeeze(-1)


def multiscale_patches(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real (unpadded) tokens of the three scales: patches (B, N, 3, 32, 32), hashed positions (N,), scale ids (N,)."""
    height, width = images.shape[-2:]
    scaled = []
    for longer in LONGER_SIDES:
        ratio = longer / max(height, width)
        size = (round(height * ratio), round(width * ratio))  # Python's round, as pyiqa's
        scaled.append(F.interpolate(images, size, mode="bicubic", align_corners=False))
    scaled.append(images)  # the original resolution, every patch
    patches, positions, scales = [], [], []
    for scale_id, image in enumerate(scaled):
        rows, cols = math.ceil(image.shape[-2] / PATCH), math.ceil(image.shape[-1] / PATCH)
        padded = same_padding(image, PATCH, PATCH)
        unfolded = F.unfold(padded, PATCH, stride=PATCH)  # (B, 3*32*32, rows*cols), row-major
        patches.append(unfolded.transpose(1, 2).reshape(len(images), rows * cols, 3, PATCH, PATCH))
        positions.append(hashed_positions(rows, cols))
        scales.append(torch.full((rows * cols,), scale_id, dtype=torch.long))
    return torch.cat(patches, dim=1), torch.cat(positions), torch.cat(scales)


def hashed_positions(rows: int, cols: int) -> torch.Tensor:
    """Each patch's cell in the 10x10 position grid: row and column scaled to the grid by nearest-neighbour
    (index floor(i * 10 / count), as `F.interpolate(..., mode="nearest")` in pyiqa's `get_hashed_spatial_pos_emb_index`)."""
    grid = torch.arange(GRID, dtype=torch.float32).view(1, 1, GRID)
    row = F.interpolate(grid, rows, mode="nearest").view(rows, 1)
    col = F.interpolate(grid, cols, mode="nearest").view(1, cols)
    return (row * GRID + col).reshape(-1).long()


def load_musiq(path: str | Path) -> MUSIQ:
    """MUSIQ from a pyiqa checkpoint (a plain state dict; a `module.` prefix is stripped as pyiqa does)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return load_exactly(MUSIQ(), state, path, "a MUSIQ (single score) checkpoint")
