"""Primitives shared by two or more arlon models (Open-Sora v1.2 `opensora/models/layers/blocks.py`).

Each function reproduces one Open-Sora v1.2 convention exactly, because the pretrained STDiT3 weights
only work with these conventions:

- `timestep_embedding`: sinusoid [cos | sin] of the raw value (0..1000, not divided), 256 dims.
- `position_embedding_2d`: [sin | cos] per axis with the **w** coordinate first, on a grid scaled by
  the resolution (`PositionEmbedding2D`).
- `apply_rope_interleaved`: GPT-J style RoPE over adjacent pairs (rotary-embedding-torch 0.5.3).
- `RMSNorm`: LlamaRMSNorm, normalised in fp32 and cast back before the weight multiplies.
- `Mlp`: timm's Mlp with tanh-GELU (keys fc1 / fc2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def t2i_modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation of PixArt / Open-Sora: x * (1 + scale) + shift."""
    return x * (1 + scale) + shift


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of scalars: (B,) -> (B, dim) float32, laid out [cos | sin].

    Open-Sora puts cos first here (unlike the 2D position embedding) and feeds the raw timestep on the
    0..1000 scale.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]  # (B, half)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    """Scalar -> sinusoid (fp32, then cast to the weight dtype) -> Linear, SiLU, Linear. Keys mlp.0 / mlp.2."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: Tensor) -> Tensor:
        """(B,) -> (B, hidden_size)."""
        t_freq = timestep_embedding(t, self.frequency_embedding_size).to(self.mlp[0].weight.dtype)
        return self.mlp(t_freq)


class RMSNorm(nn.Module):
    """LlamaRMSNorm: normalise in float32, cast back to the input dtype, then scale by the weight."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        input_dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(input_dtype)


class Mlp(nn.Module):
    """timm's Mlp: fc1 -> GELU(tanh) -> fc2 (dropout 0 in Open-Sora)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def rope_frequencies(dim: int, theta: float = 10000.0) -> Tensor:
    """RoPE frequency table (dim/2,) float32: 1 / theta^(2i/dim), as rotary-embedding-torch builds it."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))


def _rotate_adjacent_pairs(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., d/2, 2)
    first, second = pairs.unbind(dim=-1)
    return torch.stack((-second, first), dim=-1).flatten(-2)


def apply_rope_interleaved(x: Tensor, freqs: Tensor, positions: Tensor | None = None) -> Tensor:
    """Rotary embedding over adjacent pairs (GPT-J style) along the sequence dim -2.

    x: (..., L, d); freqs: (d/2,); positions: (L,), default 0..L-1. Like rotary-embedding-torch 0.5.3,
    the positions are created in x's dtype and the angles are computed in the dtype of `freqs`, so a
    bf16 model rounds exactly where the reference does.
    """
    seq_len = x.shape[-2]
    if positions is None:
        positions = torch.arange(seq_len, device=x.device, dtype=x.dtype)
    angles = positions.to(freqs.dtype)[:, None] * freqs[None]  # (L, d/2)
    angles = angles.repeat_interleave(2, dim=-1)  # (L, d): [f0, f0, f1, f1, ...]
    rotated = x * angles.cos() + _rotate_adjacent_pairs(x) * angles.sin()
    return rotated.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Holds the RoPE table as `freqs`, a Parameter with requires_grad=False (checkpoint key `rope.freqs`)."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        self.freqs = nn.Parameter(rope_frequencies(dim, theta), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return apply_rope_interleaved(x, self.freqs)


def position_embedding_2d(
    height: int,
    width: int,
    dim: int,
    scale: float = 1.0,
    base_size: int | None = None,
    *,
    device: torch.device | str | None = None,
    frequency_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Open-Sora's PositionEmbedding2D: (1, height*width, dim) float32, tokens row-major (h outer, w inner).

    Per token: [sin | cos] of the w coordinate, then [sin | cos] of the h coordinate, over dim/4
    frequencies 10000^(-k/(dim/4)). The grid is (arange(n) / scale) * (base_size / n). Open-Sora keeps
    the frequencies in a buffer that is cast with the model; `frequency_dtype` reproduces that rounding
    (bf16 for a bf16 model) while the products and sinusoids stay in float32 as in the reference.
    """
    if dim % 4:
        raise ValueError(f"position_embedding_2d needs dim divisible by 4, got {dim}")
    half_dim = dim // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, half_dim, 2, device=device).float() / half_dim))
    inv_freq = inv_freq.to(frequency_dtype).float()  # (dim/4,)
    grid_h = torch.arange(height, device=device) / scale
    grid_w = torch.arange(width, device=device) / scale
    if base_size is not None:
        grid_h = grid_h * (base_size / height)
        grid_w = grid_w * (base_size / width)
    coord_h = grid_h[:, None].expand(height, width).reshape(-1)  # (S,) row coordinate of token r*W + c
    coord_w = grid_w[None, :].expand(height, width).reshape(-1)  # (S,) column coordinate

    def sin_cos(coord: Tensor) -> Tensor:
        angles = coord[:, None] * inv_freq[None]  # (S, dim/4)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (S, dim/2)

    return torch.cat([sin_cos(coord_w), sin_cos(coord_h)], dim=-1)[None]  # (1, S, dim)

