"""ViCLIP ViT-L/14 (InternVid-10M-FLT), the video-text model of VBench's temporal style and overall consistency,
with a loader for `ViClip-InternVid-10M-FLT.pth` and CLIP's byte-pair tokeniser.

What VBench runs (`vbench/third_party/ViCLIP/viclip.py`, `viclip_vision.py`, `viclip_text.py`, `simple_tokenizer.py`):
- video tower: CLIP's ViT-L/14 image tower made temporal: the patch projection is a Conv3d with a (1, 14, 14) kernel
  (each frame patched alone), a learned temporal position table for 8 frames is added to every patch token, and one
  transformer attends jointly over the CLS token and all 8 x 256 patch tokens. The CLS token is the *first frame's*
  (class embedding + position 0); output = ln_post(CLS) @ proj (768-d). VBench builds it in eval mode.
- text tower: CLIP's text transformer (width 768, 12 blocks, causal) with a 32-token context; the feature is the
  final-norm state at the end-of-text token (the largest id) @ text_projection.
- tokeniser: CLIP's BPE on the text cleaned by ftfy, HTML-unescaped twice, whitespace-collapsed and lower-cased;
  start + tokens + end, cut to 32 with the last one forced to end-of-text, zero-padded.
The blocks are `vit.Block`s (pre-norm, QuickGELU, LayerNorm eps 1e-5), as in CLIP.
"""

from __future__ import annotations

import gzip
import html
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from bench.metrics.vbench.native.checkpoints import load_exactly
from bench.metrics.vbench.native.vit import Block, ViTConfig

CONTEXT_LENGTH = 32  # ViCLIP's max_txt_l
NUM_FRAMES = 8


@dataclass(frozen=True)
class ViCLIPConfig:
    vision: ViTConfig
    text: ViTConfig  # width, depth, heads of the text transformer (patch fields unused)
    num_frames: int
    vocab_size: int
    context_length: int
    embed_dim: int


class VideoTower(nn.Module):
    """Videos (B, T, 3, 224, 224), CLIP-normalised -> (B, embed_dim)."""

    def __init__(self, config: ViCLIPConfig):
        super().__init__()
        v = config.vision
        self.patch_embed = nn.Conv2d(3, v.width, kernel_size=v.patch_size, stride=v.patch_size, bias=False)
        self.cls_token = nn.Parameter(torch.zeros(v.width))
        self.pos_embed = nn.Parameter(torch.zeros(v.num_positions, v.width))  # (1 + N, C), spatial
        self.time_embed = nn.Parameter(torch.zeros(1, config.num_frames, v.width))  # (1, T, C)
        self.norm_pre = nn.LayerNorm(v.width, eps=v.norm_eps)
        self.blocks = nn.ModuleList(Block(v) for _ in range(v.depth))
        self.norm = nn.LayerNorm(v.width, eps=v.norm_eps)
        self.proj = nn.Parameter(torch.zeros(v.width, config.embed_dim))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        B, T = video.shape[:2]
        x = self.patch_embed(video.flatten(0, 1))  # (B*T, C, 16, 16): a Conv3d with a (1, p, p) kernel, frame by frame
        x = x.flatten(2).transpose(1, 2) + self.pos_embed[1:]  # (B*T, N, C)
        cls = (self.cls_token + self.pos_embed[0]).expand(B, 1, -1)  # (B, 1, C)
        time = self.time_embed if T > 1 else self.time_embed.mean(1, keepdim=True)  # (1, T, C)
        x = x.unflatten(0, (B, T)) + time.unsqueeze(2)  # (B, T, N, C)
        # Joint space-time attention: the token order does not change the CLS output, so (t, n) order is kept.
        x = torch.cat([cls, x.flatten(1, 2)], dim=1)  # (B, 1 + T*N, C)
        x = self.norm_pre(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0]) @ self.proj  # (B, embed_dim)


class TextTower(nn.Module):
    """Token ids (B, context_length) -> (B, embed_dim)."""

    def __init__(self, config: ViCLIPConfig):
        super().__init__()
        t = config.text
        self.token_embed = nn.Embedding(config.vocab_size, t.width)
        self.pos_embed = nn.Parameter(torch.zeros(config.context_length, t.width))
        self.blocks = nn.ModuleList(Block(t, causal=True) for _ in range(t.depth))
        self.norm = nn.LayerNorm(t.width, eps=t.norm_eps)
        self.proj = nn.Parameter(torch.zeros(t.width, config.embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embed(tokens) + self.pos_embed  # (B, L, C)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        end = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
        return x[torch.arange(len(x)), end] @ self.proj  # (B, embed_dim)


class ViCLIP(nn.Module):
    def __init__(self, config: ViCLIPConfig, tokenizer: "BytePairTokenizer"):
        super().__init__()
        self.config = config
        self.video = VideoTower(config)
        self.text = TextTower(config)
        self.tokenizer = tokenizer

    def encode_text(self, text: str) -> torch.Tensor:
        """(1, embed_dim), L2-normalised."""
        tokens = self.tokenizer.tokenize(text, self.config.context_length).to(self.text.pos_embed.device)
        return nn.functional.normalize(self.text(tokens).float(), dim=-1)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, 224, 224) -> (B, embed_dim), L2-normalised."""
        return nn.functional.normalize(self.video(video).float(), dim=-1)


VICLIP_L14 = ViCLIPConfig(
    vision=ViTConfig(patch_size=14, width=1024, depth=24, heads=16, num_positions=257, norm_eps=1e-5, quick_gelu=True,
                     norm_before_blocks=True, patch_bias=False, output_dim=768),
    text=ViTConfig(patch_size=1, width=768, depth=12, heads=12, num_positions=CONTEXT_LENGTH, norm_eps=1e-5,
                   quick_gelu=True, norm_before_blocks=False, patch_bias=False),
    num_frames=NUM_FRAMES, vocab_size=49408, context_length=CONTEXT_LENGTH, embed_dim=768,
)

BLOCK_NAMES = {  # CLIP's names inside `transformer.resblocks.{i}` -> ours inside `blocks.{i}`
    "ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}
TOWER_NAMES = {
    "vision_encoder.": ("video.", {"conv1.weight": "patch_embed.weight", "class_embedding": "cls_token",
                                   "positional_embedding": "pos_embed", "temporal_positional_embedding": "time_embed",
                                   "ln_pre": "norm_pre", "ln_post": "norm", "proj": "proj"}),
    "text_encoder.": ("text.", {"token_embedding": "token_embed", "positional_embedding": "pos_embed",
                                "ln_final": "norm", "text_projection": "proj"}),
}


def _renamed(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    for prefix, (ours, names) in TOWER_NAMES.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if rest.startswith("transformer.resblocks."):
            _, _, index, inner = rest.split(".", 3)
            for theirs, mine in BLOCK_NAMES.items():
                if inner == theirs or inner.startswith(theirs + "."):
                    return f"{ours}blocks.{index}.{mine}{inner[len(theirs):]}", value
        for theirs, mine in names.items():
            if rest == theirs or rest.startswith(theirs + "."):
                if rest == "conv1.weight":
                    value = value[:, :, 0]  # (C, 3, 1, p, p) -> (C, 3, p, p): the time kernel has size 1
                return f"{ours}{mine}{rest[len(theirs):]}", value
    return None


def load_viclip(path: str | Path, vocabulary: str | Path) -> ViCLIP:
    """ViCLIP from `ViClip-InternVid-10M-FLT.pth` (weights under "model") and CLIP's BPE vocabulary file."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ValueError(f"{path}: not a ViCLIP checkpoint (no 'model' entry)")
    state, unused = {}, []
    for key, value in checkpoint["model"].items():
        renamed = _renamed(key, value)
        if renamed is None:
            unused.append(key)
        else:
            state[renamed[0]] = renamed[1]
    if unused != ["temp"]:  # the contrastive temperature is the one tensor scoring does not use
        raise ValueError(f"{path}: not the expected ViCLIP checkpoint (unexpected tensors: {', '.join(unused[:3])})")
    with torch.device("meta"):
        model = ViCLIP(VICLIP_L14, BytePairTokenizer(vocabulary))
    return load_exactly(model, state, path, "the expected ViCLIP checkpoint")


# ---------------------------------------------------------------------------------------------
# CLIP's byte-pair tokeniser
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """Each byte -> a printable character: printable Latin-1 bytes stand for themselves, the others are moved
    to code points from 256 on, so that BPE never sees whitespace or control characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, moved = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + moved)
            moved += 1
    return mapping


class BytePairTokenizer:
    """CLIP's tokeniser from its vocabulary file (`bpe_simple_vocab_16e6.txt.gz`: the first 48,894 merges)."""

    START, END = "<|startoftext|>", "<|endoftext|>"

    def __init__(self, vocabulary: str | Path):
        import regex  # the \p{L} / \p{N} classes of CLIP's pattern (the vbench extra installs it)

        lines = gzip.open(vocabulary).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        alphabet = list(byte_alphabet().values())
        symbols = alphabet + [s + "</w>" for s in alphabet] + ["".join(m) for m in merges] + [self.START, self.END]
        self.ids = {symbol: i for i, symbol in enumerate(symbols)}
        self.merge_rank = {merge: i for i, merge in enumerate(merges)}
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
        )
        self.whitespace = regex.compile(r"\s+")
        self._words: dict[str, list[str]] = {}

    def clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self.whitespace.sub(" ", text).strip().lower()

    def word_pieces(self, word: str) -> list[str]:
        """Merge the word's characters (the last one marked end-of-word) by rank until no known pair is left."""
        if word in (self.START, self.END):
            return [word]
        if word not in self._words:
            pieces = [*word[:-1], word[-1] + "</w>"]
            while len(pieces) > 1:
                pairs = {(a, b) for a, b in zip(pieces, pieces[1:])}
                best = min(pairs, key=lambda pair: self.merge_rank.get(pair, float("inf")))
                if best not in self.merge_rank:
                    break
                merged, i = [], 0
                while i < len(pieces):
                    if i < len(pieces) - 1 and (pieces[i], pieces[i + 1]) == best:
                        merged.append(pieces[i] + pieces[i + 1])
                        i += 2
                    else:
                        merged.append(pieces[i])
                        i += 1
                pieces = merged
            self._words[word] = pieces
        return self._words[word]

    def encode(self, text: str) -> list[int]:
        alphabet = byte_alphabet()
        ids = []
        for word in self.pattern.findall(self.clean(text)):
            mapped = "".join(alphabet[b] for b in word.encode("utf-8"))
            ids.extend(self.ids[piece] for piece in self.word_pieces(mapped))
        return ids

    def tokenize(self, text: str, context_length: int) -> torch.Tensor:
        """(1, context_length) int64: start, the text's tokens, end; cut with the last kept token made `end`."""
        tokens = [self.ids[self.START], *self.encode(text), self.ids[self.END]]
        if len(tokens) > context_length:
            tokens = tokens[:context_length]
            tokens[-1] = self.ids[self.END]
        out = torch.zeros(1, context_length, dtype=torch.long)
        out[0, : len(tokens)] = torch.tensor(tokens)
        return out
