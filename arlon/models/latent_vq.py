"""Latent VQ-VAE nested inside the video VAE (ARLON paper section 2.1, VideoGPT-style).

The DiT latent X (B, C, T, H, W) of the 3D video VAE is compressed by (r, o, o) into embeddings V
(B, m, T/r, H/o, W/o), each quantised to its nearest entry of a codebook C of K vectors of size m.
The indices Q (B, T/r, H/o, W/o) are the AR model's visual tokens; the decoder maps the codebook
vectors of Q back to F (B, C, T, H, W), the semantic condition of the DiT (section 2.2). Section
2.3 trains two of these: (r, o, o) for the AR tokens and a coarser (r, 2o, 2o) for the DiT.

Encoder E_latent = 3D conv in, stride-2 3D convs (one per factor of 2 of each axis; an axis with a
smaller factor stops striding earlier, so r != o works), a 3x3x3 conv, residual attention blocks
(pre-norm conv and self-attention over all T/r * H/o * W/o positions through SDPA), then a 1x1x1
projection to m. The decoder D_latent is the mirror image, with transposed convs to upsample.
`frame_local` (the tiny preset's AR-ratio VQ) runs both on each token frame's r latent frames alone:
then an object that moves by whole cells between token frames gets the same codes one cell further
on, instead of codes that also depend on the frames before and after (and on the zero padding at
the clip's ends), which the AR model would have to redraw rather than carry.
VideoGPT uses BatchNorm + axial attention; we use GroupNorm (independent of the batch, so train and
eval normalise alike) and full attention, which is cheap at the bottleneck (320 positions for a
68-frame 512x512 video at 4x8x8).

`VectorQuantizer` (VQ-VAE-2 EMA variant): nearest neighbour, straight-through gradients,
commitment loss beta * ||z - sg(c)||^2, EMA codebook updates with Laplace smoothing and dead-code
restarts, all only in training mode.

Compression factors must be powers of two, and the latent T, H, W must be divisible by (r, o, o):
otherwise `ConfigError` (we do not pad, so no position of F is invented; pipelines pick latent
sizes that divide, or crop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F_nn
from einops import rearrange
from torch import Tensor, nn

from arlon.config import LatentVQConfig
from arlon.errors import ConfigError


@dataclass
class VQOutput:
    recon: Tensor  # (B, C, T, H, W) F, the reconstructed DiT latent
    indices: Tensor  # (B, T/r, H/o, W/o) long, Q
    commit_loss: Tensor  # () beta * ||z - sg(c)||^2
    perplexity: Tensor  # () exp(entropy) of the code usage in this batch
    quantized: Tensor  # (B, m, T/r, H/o, W/o) codebook vectors (straight-through), the decoder input


# ----------------------------------------------------------------------------------------------
# Vector quantiser
# ----------------------------------------------------------------------------------------------


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantiser over K codes of size m, updated by EMA (no codebook gradient).

    forward(z (..., m)) -> (quantized (..., m), indices (...) long, commit_loss (), perplexity ()).
    In training mode each call also moves the codebook (EMA of assignments) and restarts dead codes.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.commitment_weight = commitment_weight
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.eps = eps
        embedding = torch.randn(codebook_size, code_dim)
        # The codebook is a buffer: EMA updates move it, the optimiser never sees it. Starting the
        # EMA at one assignment per code with sum = code keeps unused codes where they are until a
        # restart replaces them.
        self.register_buffer("embedding", embedding)  # (K, m)
        self.register_buffer("ema_cluster_size", torch.ones(codebook_size))  # (K,) expected assignments per batch
        self.register_buffer("ema_embed_sum", embedding.clone())  # (K, m) EMA of the sum of assigned vectors

    def codes(self, indices: Tensor) -> Tensor:
        """indices (...) long -> codebook vectors (..., m)."""
        return F_nn.embedding(indices, self.embedding)

    def nearest(self, flat: Tensor) -> Tensor:
        """flat (N, m) -> indices (N,) of the closest codes in squared L2 (computed in fp32)."""
        flat = flat.float()
        codebook = self.embedding.float()
        distances = (
            flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)[None, :]
        )  # (N, K)
        return distances.argmin(dim=1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        flat = z.reshape(-1, self.code_dim)  # (N, m)
        indices = self.nearest(flat)  # (N,)
        if self.training:
            self._update_codebook(flat.detach().float(), indices)
        quantized = self.codes(indices).view_as(z).to(z.dtype)  # (..., m)
        commit_loss = self.commitment_weight * F_nn.mse_loss(z.float(), quantized.detach().float())
        # Straight-through: the value is exactly c (z - sg(z) is exactly 0), the gradient goes to z.
        quantized = quantized.detach() + (z - z.detach())
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return quantized, indices.view(z.shape[:-1]), commit_loss, perplexity

    @torch.no_grad()
    def _update_codebook(self, flat: Tensor, indices: Tensor) -> None:
        """EMA of cluster sizes and sums (Laplace-smoothed), then dead-code restarts. flat (N, m) fp32."""
        one_hot = F_nn.one_hot(indices, self.codebook_size).type(flat.dtype)  # (N, K)
        counts = one_hot.sum(0)  # (K,)
        sums = one_hot.t() @ flat  # (K, m)
        self.ema_cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps the division finite for codes whose EMA count is near zero.
        total = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.embedding.copy_(self.ema_embed_sum / smoothed[:, None])
        self._restart_dead_codes(flat)

    def _restart_dead_codes(self, flat: Tensor) -> None:
        """Re-initialise codes used less than `dead_code_threshold` times per batch (EMA) to random
        encoder outputs of this batch; their EMA restarts at the threshold, so a restarted code
        survives the next step only if it is assigned at least that often."""
        dead = self.ema_cluster_size < self.dead_code_threshold  # (K,)
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        picks = torch.randint(0, flat.shape[0], (num_dead,), device=flat.device)
        samples = flat[picks].to(self.embedding.dtype)  # (num_dead, m)
        self.embedding[dead] = samples
        self.ema_embed_sum[dead] = samples * self.dead_code_threshold
        self.ema_cluster_size[dead] = self.dead_code_threshold


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


def _num_halvings(factor: int, name: str) -> int:
    if factor < 1 or factor & (factor - 1):
        raise ConfigError(f"latent VQ compression: {name} factor must be a power of two, got {factor}")
    return int(math.log2(factor))


def _stride_schedule(compression: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Per downsampling layer, the stride (1 or 2) of each of (T, H, W): an axis with factor 2^n
    strides in the first n layers. (4, 8, 8) -> [(2,2,2), (2,2,2), (1,2,2)]."""
    halvings = [_num_halvings(f, name) for f, name in zip(compression, ("temporal (r)", "height (o)", "width (o)"))]
    return [tuple(2 if layer < n else 1 for n in halvings) for layer in range(max(halvings, default=0))]


def _resample_kernel(stride: tuple[int, int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Kernel 4 with padding 1 halves (or, transposed, doubles) an axis exactly; kernel 3 with
    padding 1 keeps it."""
    kernel = tuple(4 if s == 2 else 3 for s in stride)
    return kernel, (1, 1, 1)


class SelfAttention3D(nn.Module):
    """Multi-head self-attention over all T*H*W positions of a (B, C, T, H, W) map."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise ConfigError(f"latent VQ: hidden_channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        B, C, T, H, W = x.shape
        tokens = rearrange(x, "b c t h w -> b (t h w) c")  # (B, N, C)
        q, k, v = rearrange(self.qkv(tokens), "b n (three nh hs) -> three b nh n hs", three=3, nh=self.num_heads)
        out = F_nn.scaled_dot_product_attention(q, k, v)  # (B, nh, N, hs)
        out = self.proj(rearrange(out, "b nh n hs -> b n (nh hs)"))  # (B, N, C)
        return rearrange(out, "b (t h w) c -> b c t h w", t=T, h=H, w=W)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm residual conv branch, then pre-norm residual self-attention (VideoGPT's
    AttentionResidualBlock, with GroupNorm and full attention)."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.conv_norm1 = _group_norm(channels)
        self.conv1 = nn.Conv3d(channels, channels // 2, kernel_size=3, padding=1)
        self.conv_norm2 = _group_norm(channels // 2)
        self.conv2 = nn.Conv3d(channels // 2, channels, kernel_size=1)
        self.attn_norm = _group_norm(channels)
        self.attn = SelfAttention3D(channels, num_heads)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F_nn.silu(self.conv_norm1(x)))
        x = x + self.conv2(F_nn.silu(self.conv_norm2(h)))
        return x + self.attn(self.attn_norm(x))


# ----------------------------------------------------------------------------------------------
# Encoder, decoder, VQ-VAE
# ----------------------------------------------------------------------------------------------


class LatentEncoder(nn.Module):
    """E_latent: (B, C, T, H, W) -> V (B, m, T/r, H/o, W/o)."""

    def __init__(self, cfg: LatentVQConfig):
        super().__init__()
        width = cfg.hidden_channels
        self.conv_in = nn.Conv3d(cfg.in_channels, width, kernel_size=3, padding=1)
        self.downsample = nn.ModuleList()
        for stride in _stride_schedule(cfg.compression):
            kernel, padding = _resample_kernel(stride)
            self.downsample.append(nn.Conv3d(width, width, kernel, stride=stride, padding=padding))
        self.conv_mid = nn.Conv3d(width, width, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, cfg.num_heads) for _ in range(cfg.num_res_blocks))
        self.norm_out = _group_norm(width)
        self.proj_out = nn.Conv3d(width, cfg.code_dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)  # (B, D, T, H, W)
        for conv in self.downsample:
            x = F_nn.silu(conv(x))  # each stride-2 axis halves
        x = self.conv_mid(x)  # (B, D, T/r, H/o, W/o)
        for block in self.blocks:
            x = block(x)
        return self.proj_out(F_nn.silu(self.norm_out(x)))  # (B, m, T/r, H/o, W/o)


class LatentDecoder(nn.Module):
    """D_latent, the mirror of the encoder: (B, m, T/r, H/o, W/o) -> F (B, C, T, H, W)."""

    def __init__(self, cfg: LatentVQConfig):
        super().__init__()
        width = cfg.hidden_channels
        self.proj_in = nn.Conv3d(cfg.code_dim, width, kernel_size=1)
        self.conv_mid = nn.Conv3d(width, width, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(width, cfg.num_heads) for _ in range(cfg.num_res_blocks))
        self.norm_mid = _group_norm(width)
        self.upsample = nn.ModuleList()
        for stride in reversed(_stride_schedule(cfg.compression)):
            kernel, padding = _resample_kernel(stride)
            self.upsample.append(nn.ConvTranspose3d(width, width, kernel, stride=stride, padding=padding))
        self.conv_out = nn.Conv3d(width, cfg.in_channels, kernel_size=3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.conv_mid(self.proj_in(z))  # (B, D, T/r, H/o, W/o)
        for block in self.blocks:
            x = block(x)
        x = F_nn.silu(self.norm_mid(x))
        for conv in self.upsample:
            x = F_nn.silu(conv(x))  # each stride-2 axis doubles
        return self.conv_out(x)  # (B, C, T, H, W)


class LatentVQVAE(nn.Module):
    """Encoder + VectorQuantizer + decoder over the DiT latent (paper section 2.1)."""

    def __init__(self, cfg: LatentVQConfig):
        super().__init__()
        _stride_schedule(cfg.compression)  # raises ConfigError on a non power of two
        self.cfg = cfg
        self.encoder = LatentEncoder(cfg)
        self.quantizer = VectorQuantizer(
            cfg.codebook_size,
            cfg.code_dim,
            commitment_weight=cfg.commitment_weight,
            decay=cfg.ema_decay,
            dead_code_threshold=cfg.dead_code_threshold,
        )
        self.decoder = LatentDecoder(cfg)

    def token_grid(self, latent_size: tuple[int, int, int]) -> tuple[int, int, int]:
        """(T, H, W) of the DiT latent -> (T/r, H/o, W/o) of Q; ConfigError if not divisible."""
        if any(size % factor for size, factor in zip(latent_size, self.cfg.compression)):
            raise ConfigError(
                f"latent VQ {self.cfg.ratio_label}: latent size (T, H, W) = {tuple(latent_size)} is not divisible by "
                f"the compression {tuple(self.cfg.compression)}; choose a frame count/resolution whose latent divides"
            )
        return tuple(size // factor for size, factor in zip(latent_size, self.cfg.compression))

    def _encode_features(self, latent: Tensor) -> Tensor:
        """latent (B, C, T, H, W) -> z (B, m, t, h, w). With `frame_local`, each group of r latent frames
        (one token frame) is encoded on its own, so a token frame's codes depend on its frames only."""
        if not self.cfg.frame_local:
            return self.encoder(latent)
        r = self.cfg.compression[0]
        groups = rearrange(latent, "b c (t r) h w -> (b t) c r h w", r=r)
        return rearrange(self.encoder(groups), "(b t) m 1 h w -> b m t h w", b=latent.shape[0])

    def _decode_features(self, quantized: Tensor) -> Tensor:
        """codebook vectors (B, m, t, h, w) -> F (B, C, T, H, W), per token frame with `frame_local`."""
        if not self.cfg.frame_local:
            return self.decoder(quantized)
        frames = rearrange(quantized, "b m t h w -> (b t) m 1 h w")
        return rearrange(self.decoder(frames), "(b t) c r h w -> b c (t r) h w", b=quantized.shape[0])

    def _quantize(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        self.token_grid(tuple(latent.shape[2:]))
        z = self._encode_features(latent)  # (B, m, t, h, w)
        z = rearrange(z, "b m t h w -> b t h w m")
        quantized, indices, commit_loss, perplexity = self.quantizer(z)  # (B, t, h, w, m), (B, t, h, w)
        return rearrange(quantized, "b t h w m -> b m t h w"), indices, commit_loss, perplexity

    def forward(self, latent: Tensor) -> VQOutput:
        """latent (B, C, T, H, W) -> VQOutput (recon F, indices Q, commitment loss, perplexity)."""
        quantized, indices, commit_loss, perplexity = self._quantize(latent)
        recon = self._decode_features(quantized)  # (B, C, T, H, W)
        return VQOutput(recon, indices, commit_loss, perplexity, quantized)

    def loss(self, latent: Tensor) -> tuple[Tensor, VQOutput]:
        """Training objective: reconstruction MSE + commitment loss (the codebook moves by EMA)."""
        out = self(latent)
        return F_nn.mse_loss(out.recon.float(), latent.float()) + out.commit_loss, out

    @torch.no_grad()
    def encode(self, latent: Tensor) -> Tensor:
        """latent (B, C, T, H, W) -> Q (B, T/r, H/o, W/o) long. Never updates the codebook."""
        B, _, T, H, W = latent.shape
        t, h, w = self.token_grid((T, H, W))
        z = rearrange(self._encode_features(latent), "b m t h w -> (b t h w) m")  # (B*t*h*w, m)
        return self.quantizer.nearest(z).view(B, t, h, w)

    def codes_to_features(self, Q: Tensor) -> Tensor:
        """Q (B, t, h, w) long -> codebook vectors (B, m, t, h, w), the decoder input (not yet F)."""
        return rearrange(self.quantizer.codes(Q), "b t h w m -> b m t h w")

    def decode(self, Q: Tensor) -> Tensor:
        """Q (B, t, h, w) long -> F (B, C, t*r, h*o, w*o), in the dtype of the weights."""
        return self._decode_features(self.codes_to_features(Q).to(self.decoder.proj_in.weight.dtype))
