"""Causal AR transformer over visual tokens (ARLON paper section 2.1, eq. 1; sizes from section 4.1).

p(Q^AR | Y) = prod_n p(q_n | Y, Q^AR_<n): a nanoGPT-style decoder (pre-LN blocks, SDPA, GELU FFN)
reads [projected T5 text embeddings Y ; a learned start token ; visual token embeddings] and predicts
each visual token from the text and the visual tokens before it.

Vocabulary. The paper numbers codes 1..K; we use the 0-based codebook indices 0..K-1 of the latent
VQ-VAE directly (a shift by one, nothing else), <FRAME> = K and <EOS> = K + 1.

Layout. For each of the t latent frames of Q (B, t, h, w): its h*w codes in row-major order, then
<FRAME>; after the last frame's <FRAME>, one <EOS>. The exact length is N = t * (h*w + 1) + 1.
The paper writes N = (T/r + 1) x H/o x W/o, i.e. t*h*w codes plus one extra frame's worth of
positions, which we read as a budget for the separators (t <FRAME> + 1 <EOS> <= h*w whenever
t < h*w); it is not a literal token count, since the paper's own description inserts exactly t + 1
separators. At 68 frames of 512x512 (latent 20x64x64, ratio 4x8x8): t, h, w = 5, 8, 8 and N = 326
(the paper's formula gives 384).

Start and positions. The first visual token is predicted from a learned start embedding placed
right after the text (so the prediction does not depend on where the padded text ends). Visual
input slot j holds [start, q_1, ..., q_{N-1}][j] and predicts q_j. `ar.position` picks how slots know
where they are (`AR_POSITIONS`):
- "learned": one learnable embedding per slot 0..N-1 (`max_video_tokens` rows), added to the input;
- "factorised_rope": the layout read on the (t, h, w) code grid (`frame_grid` = (h, w), given to the
  model as `ArlonConfig.ar_frame_grid`). The input
  of a slot gets learned per-axis embeddings of the position of the token it holds, and attention
  rotates three quarters of each head (a quarter per axis) by 3D rotary angles: keys by the position
  of the token they hold, queries by the position of the token they predict. A query's score for a
  key then depends on their offset (dt, dh, dw): "the code one cell to the left in the previous frame"
  is the same pattern at every place of the grid, which is what carrying a motion across AR frames
  needs. The last quarter of each head is not rotated, so attention to the text stays position-free.
Text tokens get no position of ours: T5's contextual embeddings already carry order (and the
weight-free encoder adds a sinusoidal code).

Padding. Text is padded to a fixed length L; a key mask keeps padded text positions from ever being
attended. Every position may attend itself, so a fully padded (empty) caption yields no NaN; padded
positions are never attended by anything else, so what they compute cannot matter.

Sampling. `generate` prefills [text ; start ; forced prefix frames] into a preallocated per-layer
KV cache (gpt-fast style), then decodes one token per step. <FRAME> and <EOS> are written where the
layout puts them and only codes are sampled elsewhere, so every output is a valid Q.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlon.config import ARConfig, ARSamplingConfig
from arlon.errors import ConfigError
from arlon.registry import Registry

IGNORE_INDEX = -100  # targets equal to this contribute no loss (e.g. forced prefix frames)


# ----------------------------------------------------------------------------------------------
# Token layout
# ----------------------------------------------------------------------------------------------


def num_visual_tokens(grid: tuple[int, int, int]) -> int:
    """Exact number of visual tokens for a (t, h, w) code grid: t * (h*w + 1) + 1."""
    t, h, w = grid
    return t * (h * w + 1) + 1


def codes_to_tokens(Q: Tensor, codebook_size: int) -> Tensor:
    """Q (B, t, h, w) in 0..K-1 -> tokens (B, N): per frame h*w codes then <FRAME>; <EOS> at the end."""
    B, t, h, w = Q.shape
    frames = Q.reshape(B, t, h * w)  # (B, t, h*w) row-major
    frame_marks = Q.new_full((B, t, 1), codebook_size)
    tokens = torch.cat([frames, frame_marks], dim=2).reshape(B, t * (h * w + 1))
    return torch.cat([tokens, Q.new_full((B, 1), codebook_size + 1)], dim=1)  # (B, N)


def tokens_to_codes(tokens: Tensor, grid: tuple[int, int, int], codebook_size: int) -> Tensor:
    """tokens (B, N) in the layout above -> Q (B, t, h, w); ValueError if the layout is broken."""
    t, h, w = grid
    B, N = tokens.shape
    if N != num_visual_tokens(grid):
        raise ValueError(f"{N} tokens do not fit the grid {grid}: expected {num_visual_tokens(grid)}")
    frames = tokens[:, :-1].reshape(B, t, h * w + 1)  # (B, t, h*w + 1)
    codes = frames[:, :, :-1]
    if (frames[:, :, -1] != codebook_size).any() or (tokens[:, -1] != codebook_size + 1).any():
        raise ValueError("tokens break the layout: <FRAME> must end every frame and <EOS> the sequence")
    if (codes >= codebook_size).any() or (codes < 0).any():
        raise ValueError(f"tokens break the layout: a code position holds a value outside 0..{codebook_size - 1}")
    return codes.reshape(B, t, h, w)


def _layout_token(position: int, grid: tuple[int, int, int], codebook_size: int) -> int | None:
    """The token the layout forces at a visual position (<FRAME> or <EOS>), or None for a code."""
    t, h, w = grid
    if position == num_visual_tokens(grid) - 1:
        return codebook_size + 1
    if (position + 1) % (h * w + 1) == 0:
        return codebook_size
    return None


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def guided_logits(cond: Tensor, null: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance on logits: null + scale * (cond - null)."""
    return null + scale * (cond - null)


def sample_codes(logits: Tensor, sampling: ARSamplingConfig, generator: torch.Generator | None = None) -> Tensor:
    """logits (B, V) -> tokens (B,) long. temperature 0 is greedy; top_k, then top_p (nucleus) filter.

    Disallowed tokens are expected to be -inf already. `generator` must live on logits' device.
    """
    logits = logits.float()
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k is not None:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token once the tokens ranked above it already reach top_p; the best one always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= sampling.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


# ----------------------------------------------------------------------------------------------
# Positions of visual slots
# ----------------------------------------------------------------------------------------------

AR_POSITIONS: Registry = Registry("AR position encoding")


@AR_POSITIONS.register("learned")
class LearnedPositions(nn.Module):
    """One learnable embedding per visual slot; no rotary angles."""

    def __init__(self, cfg: ARConfig, frame_grid: tuple[int, int] | None):
        super().__init__()
        self.frame_grid = None  # any grid: the slots are read in flat order
        self.table = nn.Embedding(cfg.max_video_tokens, cfg.n_embd)

    def embed(self, slots: Tensor) -> Tensor:
        """slots (S,) long -> (S, D), added to the slots' inputs."""
        return self.table(slots)

    def angles(self, slots: Tensor) -> tuple[Tensor, Tensor] | None:
        return None


@AR_POSITIONS.register("factorised_rope")
class FactorisedRotaryPositions(nn.Module):
    """Per-axis learned embeddings and 3D rotary angles on the (t, h, w) code grid.

    Token p of the layout sits at frame f = p // (h*w + 1); its code index r = p % (h*w + 1) gives
    row r // w and column r % w, and r = h*w (the <FRAME> after the frame) gets the extra row h.
    Slot j holds token j - 1 (slot 0, the start, holds "token -1": frame -1, the extra row).
    """

    def __init__(self, cfg: ARConfig, frame_grid: tuple[int, int] | None):
        super().__init__()
        if frame_grid is None:
            raise ConfigError("ar.position 'factorised_rope' needs the AR frame grid: ARTransformer(cfg.ar, config.ar_frame_grid)")
        self.frame_grid = tuple(frame_grid)
        self.h, self.w = frame_grid
        max_frames = cfg.max_video_tokens // (self.h * self.w + 1) + 1
        self.t_emb = nn.Embedding(max_frames + 1, cfg.n_embd)  # frame f at row f + 1 (the start at 0)
        self.h_emb = nn.Embedding(self.h + 1, cfg.n_embd)  # row h: <FRAME> / start
        self.w_emb = nn.Embedding(self.w, cfg.n_embd)
        head_dim = cfg.n_embd // cfg.n_head
        pairs = head_dim // 8  # rotated pairs per axis: 3 axes x 2 dims x pairs = 3/4 of the head
        if pairs < 1:
            raise ConfigError(f"ar.position 'factorised_rope' needs a head dim of at least 8, got {head_dim}")
        frequencies = cfg.rope_base ** (-torch.arange(pairs, dtype=torch.float64) / pairs)  # (pairs,)
        self.register_buffer("frequencies", frequencies.float(), persistent=False)

    def coordinates(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Layout positions (S,) long (-1 = the start) -> frame, row, column (S,) each."""
        per_frame = self.h * self.w + 1
        frame = torch.div(tokens, per_frame, rounding_mode="floor")
        index = tokens - frame * per_frame
        marker = index == self.h * self.w
        row = torch.where(marker, self.h, torch.div(index, self.w, rounding_mode="floor"))
        column = torch.where(marker, 0, index % self.w)
        return frame, row, column

    def embed(self, slots: Tensor) -> Tensor:
        frame, row, column = self.coordinates(slots - 1)  # the token each slot holds
        return self.t_emb(frame + 1) + self.h_emb(row) + self.w_emb(column)  # (S, D)

    def _angles_at(self, tokens: Tensor) -> Tensor:
        axes = self.coordinates(tokens)
        return torch.cat([axis.float()[:, None] * self.frequencies[None] for axis in axes], dim=1)  # (S, 3 * pairs)

    def angles(self, slots: Tensor) -> tuple[Tensor, Tensor]:
        """(query angles, key angles), (S, 3 * pairs) each: queries at the token they predict, keys at
        the token they hold."""
        return self._angles_at(slots), self._angles_at(slots - 1)


def apply_rotary(x: Tensor, angles: Tensor | None) -> Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of the first 2 * angles.shape[1] channels of x (B, nh, S, hs)
    by angles (S, pairs); the other channels pass unchanged."""
    if angles is None:
        return x
    rotated = 2 * angles.shape[1]
    pairs = x[..., :rotated].float().unflatten(-1, (-1, 2))  # (B, nh, S, pairs, 2)
    cos, sin = angles.cos(), angles.sin()  # (S, pairs)
    even, odd = pairs[..., 0], pairs[..., 1]
    turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    return torch.cat([turned.to(x.dtype), x[..., rotated:]], dim=-1)


# ----------------------------------------------------------------------------------------------
# Transformer
# ----------------------------------------------------------------------------------------------


class KVCache:
    """Preallocated keys and values of one attention layer: (B, n_head, max_len, head_dim) each.

    `update(start, k, v)` writes the new positions start..start+S-1 and returns every key and value
    written so far (positions 0..start+S-1).
    """

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, dtype: torch.dtype, device):
        self.k = torch.zeros(batch, n_head, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros(batch, n_head, max_len, head_dim, dtype=dtype, device=device)

    def update(self, start: int | Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """A position held in a tensor (the fixed-shape decode step) writes there by index and returns the
        whole cache, unwritten positions included (the attention mask hides them)."""
        if isinstance(start, Tensor):
            positions = start + torch.arange(k.shape[2], device=k.device)
            self.k.index_copy_(2, positions, k)
            self.v.index_copy_(2, positions, v)
            return self.k, self.v
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class GraphedDecodeStep:
    """A decode step (tokens (rows,), slot (1,)) -> hidden (rows, D) captured as a CUDA graph at its first
    call and replayed after it with new inputs copied into the captured ones.

    The step must have fixed shapes and read nothing back to the host (`ARTransformer._decode_step`).
    Capturing runs the step on the first call's inputs (twice to warm up, once recorded): it writes the
    same keys and values at the same position each time, so the caches end as one eager call leaves them.
    """

    def __init__(self, step: Callable[[Tensor, Tensor], Tensor]):
        self.step = step
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self, tokens: Tensor, slot: Tensor) -> Tensor:
        if self.graph is None:
            self.tokens, self.slot = tokens.clone(), slot.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.step(self.tokens, self.slot)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.hidden = self.step(self.tokens, self.slot)
        else:
            self.tokens.copy_(tokens)
            self.slot.copy_(slot)
        self.graph.replay()
        return self.hidden


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ARConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ConfigError(f"ar.n_embd ({cfg.n_embd}) must be divisible by ar.n_head ({cfg.n_head})")
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
        cache: KVCache | None = None,
        start: int | Tensor = 0,
    ) -> Tensor:
        B, S, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, S, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, S, hs)
        k = k.view(B, S, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, S, self.n_head, C // self.n_head).transpose(1, 2)
        if rotary is not None:
            q, k = apply_rotary(q, rotary[0]), apply_rotary(k, rotary[1])
        if cache is not None:
            k, v = cache.update(start, k, v)  # (B, nh, start + S, hs)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)  # (B, nh, S, hs)
        y = y.transpose(1, 2).reshape(B, S, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.n_ffn)
        self.c_proj = nn.Linear(cfg.n_ffn, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(
        self, x: Tensor, attn_mask: Tensor, rotary: tuple[Tensor, Tensor] | None, cache: KVCache | None = None, start: int = 0
    ) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask, rotary, cache, start)
        return x + self.mlp(self.ln_2(x))


def _attention_mask(key_valid: Tensor, query_start: int | Tensor, num_queries: int) -> Tensor:
    """key_valid (B, S_k) bool -> attention mask (B, 1, S_q, S_k): causal, padded keys hidden,
    and each query always sees itself (no fully masked row, hence no NaN). `query_start` may be a (1,)
    tensor (the fixed-shape decode step)."""
    key_pos = torch.arange(key_valid.shape[1], device=key_valid.device)
    query_pos = query_start + torch.arange(num_queries, device=key_valid.device)
    causal = key_pos[None, :] <= query_pos[:, None]  # (S_q, S_k)
    itself = key_pos[None, :] == query_pos[:, None]
    allowed = (causal[None] & key_valid[:, None, :]) | itself[None]  # (B, S_q, S_k)
    return allowed[:, None]


class ARTransformer(nn.Module):
    """Text-conditioned causal transformer over visual tokens; see the module docstring for the layout.

    `frame_grid` (h, w): the codes of one AR frame (`ArlonConfig.ar_frame_grid`), which the
    "factorised_rope" positions read the layout on; the "learned" ones do not need it.
    """

    def __init__(self, cfg: ARConfig, frame_grid: tuple[int, int] | None = None):
        super().__init__()
        self.cfg = cfg
        self.text_proj = nn.Linear(cfg.text_dim, cfg.n_embd)
        self.start = nn.Parameter(torch.zeros(cfg.n_embd))
        self.code_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.positions = AR_POSITIONS.get(cfg.position)(cfg, frame_grid)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        # Tied: the logits are hidden @ code_emb.weight.T, and the state dict has no head entry.
        self.head = None if cfg.tie_embeddings else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.graphed_decode = True  # on CUDA, sample through a CUDA graph of the decode step (GraphedDecodeStep)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """GPT-2 init: N(0, 0.02) everywhere, residual output projections scaled by 1/sqrt(2 n_layer)
        so the residual stream's variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * self.cfg.n_layer))
        nn.init.normal_(self.start, mean=0.0, std=0.02)

    def logits(self, hidden: Tensor) -> Tensor:
        """(..., D) final hidden states -> (..., V) logits over the whole (padded) vocabulary."""
        if self.head is None:
            return F.linear(hidden, self.code_emb.weight)
        return self.head(hidden)

    # -- layout helpers bound to this vocabulary ------------------------------------------------

    @property
    def frame_token(self) -> int:
        return self.cfg.codebook_size

    @property
    def eos_token(self) -> int:
        return self.cfg.codebook_size + 1

    def codes_to_tokens(self, Q: Tensor) -> Tensor:
        return codes_to_tokens(Q, self.cfg.codebook_size)

    def tokens_to_codes(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        return tokens_to_codes(tokens, grid, self.cfg.codebook_size)

    # -- shared pieces --------------------------------------------------------------------------

    def _check_lengths(self, text_len: int, num_visual: int) -> None:
        if text_len > self.cfg.max_text_tokens:
            raise ConfigError(f"text has {text_len} tokens but ar.max_text_tokens is {self.cfg.max_text_tokens}")
        if num_visual > self.cfg.max_video_tokens:
            raise ConfigError(
                f"{num_visual} visual tokens exceed ar.max_video_tokens ({self.cfg.max_video_tokens}); "
                "generate fewer frames per segment or raise ar.max_video_tokens and retrain"
            )

    def _embed_text(self, text_emb: Tensor) -> Tensor:
        return self.text_proj(text_emb.to(self.text_proj.weight.dtype))  # (B, L, D)

    def _embed_visual(self, tokens: Tensor, first_slot: int | Tensor) -> Tensor:
        """Visual inputs at slots first_slot.. (tokens (B, S) long) -> (B, S, D)."""
        slots = first_slot + torch.arange(tokens.shape[1], device=tokens.device)
        return self.code_emb(tokens) + self.positions.embed(slots)[None]

    def _embed_start(self, batch: int) -> Tensor:
        slot = torch.zeros(1, dtype=torch.long, device=self.start.device)
        start = self.start.to(self.code_emb.weight.dtype) + self.positions.embed(slot)[0]  # visual slot 0
        return start.expand(batch, 1, -1)  # (B, 1, D)

    def _rotary(self, num_text: int, first_slot: int | Tensor, num_slots: int) -> tuple[Tensor, Tensor] | None:
        """Rotary angles of `num_text` text entries (none: angle 0) then visual slots first_slot.."""
        slots = first_slot + torch.arange(num_slots, device=self.start.device)
        visual = self.positions.angles(slots)
        if visual is None:
            return None
        text = visual[0].new_zeros(num_text, visual[0].shape[1])
        return torch.cat([text, visual[0]]), torch.cat([text, visual[1]])

    def _decode_step(self, tokens: Tensor, slot: Tensor, num_text: int, key_valid: Tensor, caches: list[KVCache]) -> Tensor:
        """tokens (rows,) long at visual slot `slot` ((1,) long) -> final hidden state (rows, D).

        Fixed shapes and no value read back to the host: the position lives in a tensor, the caches are
        written by index and attended in full behind a mask. So on CUDA the whole step is captured once
        as a CUDA graph and replayed for every token (`GraphedDecodeStep`), without the per-token
        launches of a dozen blocks.
        """
        x = self._embed_visual(tokens[:, None], slot)  # (rows, 1, D)
        return self._run_blocks(x, key_valid, num_text + slot, caches, self._rotary(0, slot, 1))[:, -1]

    def _run_blocks(
        self,
        x: Tensor,
        key_valid: Tensor,
        start: int | Tensor,
        caches: list[KVCache] | None,
        rotary: tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        """x (B, S, D) at sequence positions start..start+S-1 -> final hidden states (B, S, D). A `start` held
        in a (1,) tensor runs one token against the whole cache (`_decode_step`)."""
        keys = key_valid if isinstance(start, Tensor) else key_valid[:, : start + x.shape[1]]
        mask = _attention_mask(keys, start, x.shape[1])
        for i, block in enumerate(self.blocks):
            x = block(x, mask, rotary, caches[i] if caches is not None else None, start)
        return self.ln_f(x)

    # -- training -------------------------------------------------------------------------------

    def forward(
        self, text_emb: Tensor, text_mask: Tensor, tokens: Tensor, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits for every visual token.

        text_emb (B, L, text_dim), text_mask (B, L) bool (True = real token), tokens (B, n) long.
        Returns logits (B, n, vocab) where logits[:, i] is p(q_i | Y, q_<i) (never a function of
        tokens[:, i:]), and, if targets (B, n) is given (usually `tokens`; IGNORE_INDEX skips a
        position), the mean cross-entropy over the visual positions. Text positions get no logits.
        """
        B, L, _ = text_emb.shape
        n = tokens.shape[1]
        self._check_lengths(L, n)
        visual = torch.cat([self._embed_start(B), self._embed_visual(tokens[:, :-1], 1)], dim=1)  # (B, n, D)
        x = self.drop(torch.cat([self._embed_text(text_emb), visual], dim=1))  # (B, L + n, D)
        key_valid = torch.cat([text_mask.bool(), text_mask.new_ones(B, n, dtype=torch.bool)], dim=1)
        hidden = self._run_blocks(x, key_valid, 0, None, self._rotary(L, 0, n))  # (B, L + n, D)
        logits = self.logits(hidden[:, L:])  # (B, n, V): only the visual positions
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return logits, loss

    # -- sampling -------------------------------------------------------------------------------

    @torch.no_grad()
    def _check_grid(self, grid: tuple[int, int, int]) -> None:
        expected = self.positions.frame_grid
        if expected is not None and tuple(grid[1:]) != expected:
            raise ConfigError(f"the AR model reads frames of {expected} codes, not {tuple(grid[1:])}")

    def generate(
        self,
        text_emb: Tensor,
        text_mask: Tensor,
        grid: tuple[int, int, int],
        sampling: ARSamplingConfig,
        generator: torch.Generator | None = None,
        prefix_codes: Tensor | None = None,
        null_text_emb: Tensor | None = None,
        null_text_mask: Tensor | None = None,
    ) -> Tensor:
        """Sample Q (B, t, h, w) for grid = (t, h, w). Call `eval()` first (dropout stays as set).

        prefix_codes (B, t0, h, w) forces the first t0 frames (paper 4.5: the last frame of Q1
        conditions Q2); all t frames are returned. With sampling.cfg_scale != 1 the conditional and
        null-text branches (null_text_emb (B or 1, L, text_dim); null_text_mask None = all valid)
        run as one batch and logits are combined as null + s * (cond - null).
        """
        t, h, w = grid
        B, L, _ = text_emb.shape
        K = self.cfg.codebook_size
        N = num_visual_tokens(grid)
        self._check_lengths(L, N)
        self._check_grid(grid)
        device = text_emb.device
        text_mask = text_mask.bool()

        # 1. Classifier-free guidance: cond rows first, null rows second.
        use_cfg = sampling.cfg_scale != 1.0
        if use_cfg:
            text_emb, text_mask = self._with_null_branch(text_emb, text_mask, null_text_emb, null_text_mask)
        rows = text_emb.shape[0]

        # 2. Forced prefix frames.
        tokens = torch.full((B, N), -1, dtype=torch.long, device=device)
        num_forced = 0
        if prefix_codes is not None:
            if prefix_codes.shape[0] != B or tuple(prefix_codes.shape[2:]) != (h, w) or prefix_codes.shape[1] > t:
                raise ValueError(f"prefix_codes {tuple(prefix_codes.shape)} do not fit batch {B} and grid {grid}")
            prefix_tokens = self.codes_to_tokens(prefix_codes.to(device).long())[:, :-1]  # drop its <EOS>
            num_forced = prefix_tokens.shape[1]
            tokens[:, :num_forced] = prefix_tokens

        # 3. Prefill [text ; start ; prefix] into a fresh cache.
        dtype = self.code_emb.weight.dtype
        head_dim = self.cfg.n_embd // self.cfg.n_head
        caches = [KVCache(rows, self.cfg.n_head, L + N, head_dim, dtype, device) for _ in self.blocks]
        key_valid = torch.cat([text_mask, text_mask.new_ones(rows, N)], dim=1)  # (rows, L + N)
        prefix_rows = tokens[:, :num_forced].repeat(rows // B, 1)
        x = torch.cat(
            [self._embed_text(text_emb), self._embed_start(rows), self._embed_visual(prefix_rows, 1)], dim=1
        )  # (rows, L + 1 + num_forced, D)
        rotary = self._rotary(L, 0, 1 + num_forced)
        hidden = self._run_blocks(x, key_valid, 0, caches, rotary)[:, -1]  # (rows, D) predicts token num_forced

        # 4. Decode one token per step; the layout fixes <FRAME>/<EOS>, codes are sampled.
        def eager_step(step_tokens: Tensor, slot: Tensor) -> Tensor:
            return self._decode_step(step_tokens, slot, L, key_valid, caches)

        step = GraphedDecodeStep(eager_step) if device.type == "cuda" and self.graphed_decode else eager_step
        for position in range(num_forced, N):
            forced = _layout_token(position, grid, K)
            if forced is not None:
                next_token = torch.full((B,), forced, dtype=torch.long, device=device)
            else:
                logits = self.logits(hidden).float()  # (rows, V)
                if use_cfg:
                    cond, null = logits.chunk(2)
                    logits = guided_logits(cond, null, sampling.cfg_scale)  # (B, V)
                logits[:, K:] = float("-inf")  # only codes here
                next_token = sample_codes(logits, sampling, generator)
            tokens[:, position] = next_token
            if position + 1 < N:  # <EOS> itself is never fed back
                slot = torch.full((1,), position + 1, dtype=torch.long, device=device)
                hidden = step(next_token.repeat(rows // B), slot)  # (rows, D) predicts the next token
        return self.tokens_to_codes(tokens, grid)

    def _with_null_branch(
        self, text_emb: Tensor, text_mask: Tensor, null_text_emb: Tensor | None, null_text_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Stack [cond ; null] along the batch: (2B, L, text_dim), (2B, L)."""
        B, L, _ = text_emb.shape
        if null_text_emb is None:
            raise ConfigError("ar_sampling.cfg_scale != 1 needs null_text_emb (the encoded empty prompt)")
        if null_text_emb.shape[1:] != text_emb.shape[1:]:
            raise ValueError(
                f"null_text_emb {tuple(null_text_emb.shape)} does not match text_emb {tuple(text_emb.shape)}"
            )
        null_emb = null_text_emb.to(text_emb).expand(B, -1, -1)
        if null_text_mask is None:
            null_mask = torch.ones(B, L, dtype=torch.bool, device=text_emb.device)
        else:
            null_mask = null_text_mask.to(text_emb.device).bool().expand(B, -1)
        return torch.cat([text_emb, null_emb]), torch.cat([text_mask, null_mask])
