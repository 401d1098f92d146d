"""STDiT3, the Open-Sora v1.2 video diffusion transformer, with one injection hook per block pair.

ARLON (paper section 2.2) injects the AR model's semantic features into a frozen Open-Sora v1.2
backbone. This file is that backbone, written from Open-Sora's `opensora/models/stdit/stdit3.py` and `blocks.py`:
28 pairs of (spatial block, temporal block), adaLN-single conditioning on timestep + fps,
cross-attention to T5 captions, rectified-flow velocity output. `STDiT3.forward(..., injection=f)`
calls `x = f(i, x, ctx)` at the input of every pair i, before `spatial_blocks[i]` (boundary 1
of docs/opensora-v1.2-notes.md, 'Injection points').

Parameter and buffer names are Open-Sora's (`spatial_blocks.{i}.attn.qkv`, `t_block.1`,
`y_embedder.y_embedding`, `rope.freqs`, ...) so the released hpcai-tech/OpenSora-STDiT-v3 weights load
with `strict=True`; our other modules use our own names.

Open-Sora quirks kept on purpose, because the pretrained weights were trained with them and the golden
tests (tests/golden/stdit3_small.json) check them:
- timestep and fps sinusoids are [cos | sin]; the 2D position embedding is [sin | cos] with the w
  coordinate first, on a grid scaled by sqrt(height*width)/input_sq_size and base_size/n;
- the timestep is cast to the weight dtype before embedding (bf16 quantises t like training did);
- RoPE (interleaved pairs) only in temporal attention, after the q/k RMSNorm; `rope.freqs` is a
  Parameter with requires_grad=False and the 2D position embedding has no state;
- cross-attention has no norm, modulation or gate, and sees only the valid caption tokens; a caption
  mask for the conditional half of a CFG batch is repeated over the doubled batch, so the null caption
  is cut to the conditional lengths;
- clean conditioning frames (x_mask False) take every modulation from t = 0; the final layer adds
  c = t_emb + fps_emb (not t_mlp) to its 2-row table, and its t = 0 branch re-normalises the already
  modulated tokens, as the reference `T2IFinalLayer` does;
- caption dropout replaces whole captions by the `y_embedding` buffer before the projection;
- the output is cast to float32; only channels 0..in_channels-1 are the velocity when pred_sigma.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from arlon.checkpoints.io import check_state_dict
from arlon.checkpoints.opensora import load_stdit3_state_dict
from arlon.config import BackboneConfig
from arlon.errors import MissingWeightsError
from arlon.global_batch import per_sample
from arlon.models.layers import (
    Mlp,
    RMSNorm,
    RotaryEmbedding,
    TimestepEmbedder,
    apply_rope_interleaved,
    position_embedding_2d,
    rope_frequencies,
    t2i_modulate,
)

FPS_AND_STEP_FREQUENCY_DIM = 256  # sinusoid width of the timestep and fps embedders


@dataclass
class BlockContext:
    """Everything the 2*depth blocks of one forward share."""

    y: Tensor  # (B, L, D) projected captions (padded to L)
    y_mask: Tensor | None  # (B, L) bool, True = valid caption token; None: all valid
    t_mlp: Tensor  # (B, 6*D) adaLN-single output for timestep t
    t0_mlp: Tensor | None  # (B, 6*D) for t = 0 (only when x_mask is given)
    x_mask: Tensor | None  # (B, T) bool, True = frame is denoised, False = clean conditioning frame
    T: int  # latent frames
    S: int  # spatial tokens per frame (H_p * W_p)
    rope_freqs: Tensor | None = None  # (head_dim/2,) the model's `rope.freqs`; None = the standard table


Injection = Callable[[int, Tensor, BlockContext], Tensor]  # (pair_index, x (B, T*S, D), ctx) -> x


def select_per_frame(x_mask: Tensor, x: Tensor, x_clean: Tensor, T: int, S: int) -> Tensor:
    """Per frame, take `x` where x_mask is True and `x_clean` (the t = 0 branch) where it is False."""
    x = rearrange(x, "B (T S) C -> B T S C", T=T, S=S)
    x_clean = rearrange(x_clean, "B (T S) C -> B T S C", T=T, S=S)
    x = torch.where(x_mask[:, :, None, None], x, x_clean)
    return rearrange(x, "B T S C -> B (T S) C")


# ---------------------------------------------------------------------------------------------------
# Attention


class SelfAttention(nn.Module):
    """Multi-head self-attention with per-head RMSNorm on q and k, and optional RoPE (temporal blocks)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, use_rope: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.use_rope = use_rope
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope_freqs: Tensor | None = None) -> Tensor:
        """(B', L, D) -> (B', L, D); B' is B*T (spatial) or B*S (temporal)."""
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim)  # [q | k | v] per row
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B', heads, L, head_dim)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.use_rope:  # after the qk-norm, as in Open-Sora
            if rope_freqs is None:
                rope_freqs = rope_frequencies(self.head_dim).to(device=x.device, dtype=x.dtype)
            q = apply_rope_interleaved(q, rope_freqs)
            k = apply_rope_interleaved(k, rope_freqs)
        out = F.scaled_dot_product_attention(q, k, v)  # (B', heads, L, head_dim)
        out = out.transpose(1, 2).reshape(batch, length, dim)
        return self.proj(out)


class CrossAttention(nn.Module):
    """Video tokens attend to the valid caption tokens of their own sample (no norm, no RoPE)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, dim * 2)  # rows [K | V]
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor, y_mask: Tensor | None) -> Tensor:
        """x (B, N, D), y (B, L, D), y_mask (B, L) bool or None (every key valid) -> (B, N, D)."""
        batch, num_tokens, dim = x.shape
        q = self.q_linear(x).view(batch, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)
        kv = self.kv_linear(y).view(batch, y.shape[1], 2, self.num_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, L, d)
        if y_mask is None:  # no mask: SDPA may take its flash kernel
            out = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
            return self.proj(out.transpose(1, 2).reshape(batch, num_tokens, dim))
        # A key-padding mask is the per-sample form of Open-Sora's packed block-diagonal xformers mask.
        # A sample with no valid token attends to nothing: its rows are unmasked to avoid a NaN softmax
        # and its output is zeroed.
        has_text = y_mask.any(dim=1)  # (B,)
        attend = y_mask | ~has_text[:, None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend[:, None, None, :])  # (B, h, N, d)
        out = out * has_text[:, None, None, None].to(out.dtype)
        out = out.transpose(1, 2).reshape(batch, num_tokens, dim)
        return self.proj(out)


# ---------------------------------------------------------------------------------------------------
# Blocks


class STDiT3Block(nn.Module):
    """One spatial or temporal block: modulated self-attention, cross-attention, modulated MLP.

    Spatial blocks attend over the S tokens of each frame, temporal blocks over the T frames at each
    spatial position (with RoPE). Both have the same parameters (Open-Sora's `STDiT3Block`).
    """

    def __init__(self, cfg: BackboneConfig, temporal: bool):
        super().__init__()
        dim = cfg.hidden_size
        self.temporal = temporal
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.attn = SelfAttention(dim, cfg.num_heads, qk_norm=cfg.qk_norm, use_rope=temporal)
        self.cross_attn = CrossAttention(dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def modulation(self, t_mlp: Tensor) -> tuple[Tensor, ...]:
        """(B, 6*D) -> shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp, each (B, 1, D)."""
        return (self.scale_shift_table[None] + t_mlp.reshape(t_mlp.shape[0], 6, -1)).chunk(6, dim=1)

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        """x (B, T*S, D), frame-major tokens -> (B, T*S, D)."""
        T, S = ctx.T, ctx.S
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.modulation(ctx.t_mlp)
        has_clean_frames = ctx.x_mask is not None
        if has_clean_frames:
            shift_msa0, scale_msa0, gate_msa0, shift_mlp0, scale_mlp0, gate_mlp0 = self.modulation(ctx.t0_mlp)

        # Self-attention on the modulated input.
        h = t2i_modulate(self.norm1(x), shift_msa, scale_msa)
        if has_clean_frames:
            h = select_per_frame(ctx.x_mask, h, t2i_modulate(self.norm1(x), shift_msa0, scale_msa0), T, S)
        if self.temporal:
            h = rearrange(h, "B (T S) C -> (B S) T C", T=T, S=S)
            h = self.attn(h, ctx.rope_freqs)
            h = rearrange(h, "(B S) T C -> B (T S) C", T=T, S=S)
        else:
            h = rearrange(h, "B (T S) C -> (B T) S C", T=T, S=S)
            h = self.attn(h)
            h = rearrange(h, "(B T) S C -> B (T S) C", T=T, S=S)
        gated = gate_msa * h
        if has_clean_frames:
            gated = select_per_frame(ctx.x_mask, gated, gate_msa0 * h, T, S)
        x = x + gated

        # Cross-attention: no norm, no modulation, no gate.
        x = x + self.cross_attn(x, ctx.y, ctx.y_mask)

        # MLP on the modulated input.
        h = t2i_modulate(self.norm2(x), shift_mlp, scale_mlp)
        if has_clean_frames:
            h = select_per_frame(ctx.x_mask, h, t2i_modulate(self.norm2(x), shift_mlp0, scale_mlp0), T, S)
        h = self.mlp(h)
        gated = gate_mlp * h
        if has_clean_frames:
            gated = select_per_frame(ctx.x_mask, gated, gate_mlp0 * h, T, S)
        return x + gated


# ---------------------------------------------------------------------------------------------------
# Embedders and final layer


class PatchEmbed3D(nn.Module):
    """(B, C, T, H, W) -> (B, N, D): zero-pad H/W/T at the end to the patch, Conv3d with kernel = stride."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        pt, ph, pw = self.patch_size
        _, _, T, H, W = x.shape
        x = F.pad(x, (0, -W % pw, 0, -H % ph, 0, -T % pt))
        x = self.proj(x)  # (B, D, T_p, H_p, W_p)
        return rearrange(x, "B D T H W -> B (T H W) D")


class CaptionEmbedder(nn.Module):
    """Caption projection (timm Mlp, tanh-GELU) with training-time replacement by the null caption.

    `y_embedding` (model_max_length, caption_channels) is a persistent buffer: the fixed null caption
    used for CFG, loaded from the checkpoint and never trained.
    """

    def __init__(self, caption_channels: int, hidden_size: int, model_max_length: int, dropout_prob: float):
        super().__init__()
        self.dropout_prob = dropout_prob
        self.y_proj = Mlp(caption_channels, hidden_size, hidden_size)
        self.register_buffer("y_embedding", torch.randn(model_max_length, caption_channels) / caption_channels**0.5)

    def drop_captions(self, y: Tensor, force_drop_ids: Tensor | None = None) -> Tensor:
        """Replace whole captions by the null caption: randomly in training, or where force_drop_ids == 1."""
        length = y.shape[2]
        if length > self.y_embedding.shape[0]:
            raise ValueError(
                f"captions have {length} tokens but backbone.model_max_length is {self.y_embedding.shape[0]}"
            )
        if force_drop_ids is None:
            drop = per_sample(lambda n: torch.rand(n, device=y.device), y.shape[0]) < self.dropout_prob  # (B,)
        else:
            drop = force_drop_ids.to(y.device) == 1
        null = self.y_embedding[:length].to(y.dtype)  # the T5 mask is kept, so only the first rows matter
        return torch.where(drop[:, None, None, None], null, y)

    def forward(self, y: Tensor, force_drop_ids: Tensor | None = None) -> Tensor:
        """(B, 1, L, caption_channels) -> (B, 1, L, D)."""
        if (self.training and self.dropout_prob > 0) or force_drop_ids is not None:
            y = self.drop_captions(y, force_drop_ids)
        return self.y_proj(y)


class FinalLayer(nn.Module):
    """T2IFinalLayer: LayerNorm, modulation by (table + c), Linear to the patch pixels."""

    def __init__(self, hidden_size: int, num_patch: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.linear = nn.Linear(hidden_size, num_patch * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: Tensor, c: Tensor, x_mask: Tensor | None, c0: Tensor | None, T: int, S: int) -> Tensor:
        """x (B, N, D), c / c0 (B, D) -> (B, N, prod(patch) * out_channels)."""
        shift, scale = (self.scale_shift_table[None] + c[:, None]).chunk(2, dim=1)  # each (B, 1, D)
        x = t2i_modulate(self.norm_final(x), shift, scale)
        if x_mask is not None:
            shift0, scale0 = (self.scale_shift_table[None] + c0[:, None]).chunk(2, dim=1)
            # Open-Sora normalises the already modulated x here; the released weights expect it.
            x = select_per_frame(x_mask, x, t2i_modulate(self.norm_final(x), shift0, scale0), T, S)
        return self.linear(x)


# ---------------------------------------------------------------------------------------------------
# Model


class STDiT3(nn.Module):
    """Open-Sora v1.2 STDiT3: latent video (B, C, T, H, W) + t + captions -> (B, C_out, T, H, W) float32."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.hidden_size
        self.grad_checkpointing = False  # set True to recompute blocks in backward (frozen-backbone training)
        # Drop shared caption padding and the cross-attention mask at inference (`caption_context`);
        # None: on CUDA only, where SDPA has a flash kernel to gain.
        self.unmasked_captions: bool | None = None
        # Attribute order follows Open-Sora so state_dict() lists keys in the reference order.
        self.rope = RotaryEmbedding(cfg.head_dim)
        self.x_embedder = PatchEmbed3D(cfg.patch_size, cfg.in_channels, dim)
        self.t_embedder = TimestepEmbedder(dim, FPS_AND_STEP_FREQUENCY_DIM)
        self.fps_embedder = TimestepEmbedder(dim, FPS_AND_STEP_FREQUENCY_DIM)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))  # adaLN-single
        self.y_embedder = CaptionEmbedder(cfg.caption_channels, dim, cfg.model_max_length, cfg.class_dropout_prob)
        self.spatial_blocks = nn.ModuleList([STDiT3Block(cfg, temporal=False) for _ in range(cfg.depth)])
        self.temporal_blocks = nn.ModuleList([STDiT3Block(cfg, temporal=True) for _ in range(cfg.depth)])
        num_patch = cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
        self.final_layer = FinalLayer(dim, num_patch, cfg.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Open-Sora's init (its `STDiT3.initialize_weights`): xavier Linear with zero bias; fps output layer
        and the temporal blocks' output projections at zero, so new temporal blocks start as identity residuals."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fps_embedder.mlp[0].weight, std=0.02)
        nn.init.zeros_(self.fps_embedder.mlp[2].weight)
        nn.init.zeros_(self.fps_embedder.mlp[2].bias)
        for block in self.temporal_blocks:
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.cross_attn.proj.weight)
            nn.init.zeros_(block.mlp.fc2.weight)

    @classmethod
    def from_pretrained(cls, cfg: BackboneConfig, path: str | Path | None = None) -> "STDiT3":
        """Build from `path` (or cfg.pretrained): a directory, a .safetensors/.bin/.pt/.pth file or a
        Hugging Face id found in the local cache. Loads strictly; raises MissingWeightsError or
        CheckpointMismatchError."""
        source = path if path is not None else cfg.pretrained
        if source is None:
            raise MissingWeightsError(
                "backbone.pretrained is not set: point it to a local copy of hpcai-tech/OpenSora-STDiT-v3 "
                "(huggingface-cli download hpcai-tech/OpenSora-STDiT-v3)"
            )
        state = load_stdit3_state_dict(source, model_max_length=cfg.model_max_length)
        with torch.device("meta"):  # no random init of 1.2B parameters that are overwritten anyway
            model = cls(cfg)
        check_state_dict(model.state_dict(), state, source=str(source))
        model.load_state_dict(state, strict=True, assign=True)
        return model

    @property
    def dtype(self) -> torch.dtype:
        return self.x_embedder.proj.weight.dtype

    def null_caption(self, batch: int) -> Tensor:
        """The CFG null caption: the y_embedding buffer as (batch, 1, model_max_length, caption_channels)."""
        return self.y_embedder.y_embedding[None, None].repeat(batch, 1, 1, 1)

    def embed_fps(self, fps: Tensor, batch: int) -> Tensor:
        """(B,) or (1,) frames per second -> (B, D), repeated to the batch like Open-Sora's SizeEmbedder."""
        fps = fps.reshape(-1)
        if fps.shape[0] != batch:
            fps = fps.repeat(batch // fps.shape[0])
        return self.fps_embedder(fps)

    def position_scale(self, height: Tensor | float | None, width: Tensor | float | None) -> float:
        """sqrt(height * width) / input_sq_size from element 0 of the pixel sizes; 1.0 when not given."""
        if height is None or width is None:
            return 1.0
        height_px = float(height.reshape(-1)[0]) if isinstance(height, Tensor) else float(height)
        width_px = float(width.reshape(-1)[0]) if isinstance(width, Tensor) else float(width)
        return (height_px * width_px) ** 0.5 / self.cfg.input_sq_size

    def caption_context(self, y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """y (B, 1, L, C_cap), mask (B_cond, L) -> projected y (B, L', D) and y_mask (B, L') bool, or None
        when every sample attends to every key left.

        T5 pads every caption to L = 300 tokens at the end, and any mask keeps SDPA off its flash kernel.
        At inference on CUDA (`unmasked_captions`), when every sample's caption has the same length (a CFG
        batch of one prompt and its null caption, which keeps the prompt's mask), the padding is dropped
        and the batch attends without a mask: the same result to rounding. Anything else (training, the
        CPU, captions of several lengths) keeps the masked path, so that trained weights and the CPU's
        videos stay reproducible to the bit.
        """
        batch, _, length, _ = y.shape
        if mask is None:
            y_mask = torch.ones(batch, length, dtype=torch.bool, device=y.device)
        else:
            y_mask = mask.reshape(mask.shape[0], -1).to(y.device) != 0
            if y_mask.shape[0] != batch:  # CFG: the conditional mask also covers the null half
                if batch % y_mask.shape[0]:
                    raise ValueError(f"caption mask batch {y_mask.shape[0]} does not divide the batch {batch}")
                y_mask = y_mask.repeat(batch // y_mask.shape[0], 1)
        unmasked = self.unmasked_captions if self.unmasked_captions is not None else y.device.type == "cuda"
        if unmasked and not self.training:
            kept = int(y_mask[0].sum())
            if kept > 0 and bool(y_mask[:, :kept].all()) and not bool(y_mask[:, kept:].any()):
                y = self.y_embedder(y[:, :, :kept]).squeeze(1)  # (B, kept, D): one length, trailing padding dropped
                return y, None
        y = self.y_embedder(y).squeeze(1)  # (B, L, D)
        return y, y_mask

    def forward(
        self,
        x: Tensor,
        timestep: Tensor,
        y: Tensor,
        mask: Tensor | None = None,
        x_mask: Tensor | None = None,
        fps: Tensor | None = None,
        height: Tensor | None = None,
        width: Tensor | None = None,
        injection: Injection | None = None,
    ) -> Tensor:
        """x (B, C, T, H, W); timestep (B,) on 0..1000; y (B, 1, L, caption_channels); mask (B_cond, L);
        x_mask (B, T) bool; fps / height / width (B,) or (1,), pixels. Returns (B, C_out, T, H, W) float32.

        fps=None leaves out the fps embedding; height/width=None use a position scale of 1.
        """
        dtype = self.dtype
        batch, _, frames, height_in, width_in = x.shape
        x = x.to(dtype)
        timestep = timestep.to(dtype).reshape(-1).expand(batch)  # bf16 quantises t, as in the reference
        y = y.to(dtype)
        pt, ph, pw = self.cfg.patch_size
        T, H_p, W_p = -(-frames // pt), -(-height_in // ph), -(-width_in // pw)
        S = H_p * W_p

        # Conditioning: c = t_emb + fps_emb feeds t_block (all blocks) and the final layer.
        c = self.t_embedder(timestep)  # (B, D)
        fps_emb = self.embed_fps(fps, batch) if fps is not None else torch.zeros_like(c)
        c = c + fps_emb
        t_mlp = self.t_block(c)  # (B, 6D)
        c0 = t0_mlp = None
        if x_mask is not None:
            x_mask = x_mask.to(device=x.device, dtype=torch.bool)
            c0 = self.t_embedder(torch.zeros_like(timestep)) + fps_emb
            t0_mlp = self.t_block(c0)

        y, y_mask = self.caption_context(y, mask)

        # Patches plus the 2D position embedding, shared by every frame.
        x = self.x_embedder(x)  # (B, N, D) with N = T * S
        pos = position_embedding_2d(
            H_p,
            W_p,
            self.cfg.hidden_size,
            scale=self.position_scale(height, width),
            base_size=round(S**0.5),
            device=x.device,
            frequency_dtype=dtype,
        ).to(dtype)  # (1, S, D)
        x = rearrange(x, "B (T S) D -> B T S D", T=T, S=S) + pos[:, None]
        x = rearrange(x, "B T S D -> B (T S) D")

        ctx = BlockContext(
            y=y, y_mask=y_mask, t_mlp=t_mlp, t0_mlp=t0_mlp, x_mask=x_mask, T=T, S=S, rope_freqs=self.rope.freqs
        )
        for i in range(self.cfg.depth):
            if injection is not None:
                x = injection(i, x, ctx)
            x = self.run_block(self.spatial_blocks[i], x, ctx)
            x = self.run_block(self.temporal_blocks[i], x, ctx)

        x = self.final_layer(x, c, x_mask, c0, T, S)  # (B, N, pt*ph*pw*C_out)
        x = rearrange(
            x,
            "B (T H W) (pt ph pw C) -> B C (T pt) (H ph) (W pw)",
            T=T, H=H_p, W=W_p, pt=pt, ph=ph, pw=pw,
        )  # (B, C_out, T*pt, H_p*ph, W_p*pw)
        x = x[:, :, :frames, :height_in, :width_in]
        return x.float()

    def run_block(self, block: STDiT3Block, x: Tensor, ctx: BlockContext) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, x, ctx, use_reentrant=False)
        return block(x, ctx)
