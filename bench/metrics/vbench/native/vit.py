"""The image transformers VBench's feature dimensions run, in one readable module, with loaders for the
very files VBench reads.

- DINO ViT-B/16 (subject consistency): DINO's `vision_transformer.py` (`VisionTransformer`,
  `prepare_tokens`, `interpolate_pos_encoding`), final-norm CLS token out. Weights:
  `dino_vitbase16_pretrain.pth`, a plain state dict whose keys (`patch_embed.proj.*`, `blocks.{i}.attn.qkv.*`,
  ...) are timm's ViT names.
- OpenAI CLIP's image tower (background consistency: ViT-B/32; aesthetic quality: ViT-L/14): openai-clip's
  `clip/model.py` (`VisionTransformer`, `ResidualAttentionBlock`, QuickGELU, `ln_pre`, `ln_post`, `proj`).
  Weights: the `.pt` TorchScript archives `clip.load` reads (their `visual.*` tensors); `clip.load` on CPU
  computes in fp32, as this module does.

Both are the same pre-norm transformer; they differ in the activation (GELU / QuickGELU), the LayerNorm eps
(1e-6 / 1e-5), a LayerNorm before the blocks (CLIP), a bias on the patch projection (DINO) and an output
projection (CLIP). `ViTConfig` holds those differences; the loaders map each file's names onto ours.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.metrics.vbench.native.checkpoints import load_exactly


@dataclass(frozen=True)
class ViTConfig:
    patch_size: int
    width: int
    depth: int
    heads: int
    num_positions: int  # 1 + the pretraining grid's patches (197 for 224 / 16)
    norm_eps: float
    quick_gelu: bool  # CLIP's x * sigmoid(1.702 x); DINO uses the exact GELU
    norm_before_blocks: bool  # CLIP's ln_pre
    patch_bias: bool  # DINO's patch projection has a bias, CLIP's conv1 has none
    output_dim: int | None = None  # CLIP's `proj` (width -> output_dim); None: the CLS token itself


# ---------------------------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, causal: bool = False):
        super().__init__()
        self.heads = heads
        self.causal = causal  # CLIP's text transformer: each token sees itself and the tokens before it
        self.qkv = nn.Linear(width, 3 * width)  # q, k, v stacked in that order, heads contiguous in each
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, C/h)
        x = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, h, N, C/h)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, config: ViTConfig, causal: bool = False):
        super().__init__()
        width = config.width
        self.norm1 = nn.LayerNorm(width, eps=config.norm_eps)
        self.attn = Attention(width, config.heads, causal)
        self.norm2 = nn.LayerNorm(width, eps=config.norm_eps)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(width, 4 * width)
        self.mlp.act = QuickGELU() if config.quick_gelu else nn.GELU()
        self.mlp.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Images (B, 3, H, W), normalised -> (B, output_dim or width): the CLS token after the final norm."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        p, width = config.patch_size, config.width
        self.patch_embed = nn.Conv2d(3, width, kernel_size=p, stride=p, bias=config.patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_positions, width))
        self.norm_pre = nn.LayerNorm(width, eps=config.norm_eps) if config.norm_before_blocks else nn.Identity()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(width, eps=config.norm_eps)
        self.proj = nn.Parameter(torch.zeros(width, config.output_dim)) if config.output_dim else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        x = self.patch_embed(images)  # (B, C, H/p, W/p)
        grid_h, grid_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        x = torch.cat([self.cls_token.to(x.dtype).expand(B, -1, -1), x], dim=1)  # (B, 1 + N, C)
        x = x + position_table(self.pos_embed, grid_h, grid_w, self.config.patch_size).to(x.dtype)
        x = self.norm_pre(x)
        for block in self.blocks:
            x = block(x)
        cls = self.norm(x[:, 0])  # (B, C)
        return cls @ self.proj.to(cls.dtype) if self.proj is not None else cls


def position_table(pos_embed: torch.Tensor, grid_h: int, grid_w: int, patch_size: int) -> torch.Tensor:
    """The position table for a grid_h x grid_w patch grid, as DINO's `interpolate_pos_encoding` makes it:
    the stored table when the grid is the pretraining one (square), else its patch part resized bicubically
    with scale factors ((H / p + 0.1) / n, (W / p + 0.1) / n), the 0.1 avoiding a floor error on the output size.
    The interpolation must be given those factors, not the output size: the kernel samples at 1 / factor
    steps (timm's size-based, antialiased resize differs by several percent)."""
    n = math.isqrt(pos_embed.shape[1] - 1)  # the pretraining grid side (14 for 224 / 16)
    if grid_h == n and grid_w == n:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    width = pos_embed.shape[-1]
    patch_pos = patch_pos.reshape(1, n, n, width).permute(0, 3, 1, 2)  # (1, C, n, n)
    patch_pos = F.interpolate(patch_pos.float(), scale_factor=((grid_h + 0.1) / n, (grid_w + 0.1) / n), mode="bicubic")
    if patch_pos.shape[-2:] != (grid_h, grid_w):
        raise ValueError(f"position table resized to {tuple(patch_pos.shape[-2:])}, expected {(grid_h, grid_w)}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, width).to(pos_embed.dtype)  # (1, N, C)
    return torch.cat([cls_pos, patch_pos], dim=1)


# ---------------------------------------------------------------------------------------------
# Loading VBench's files
# ---------------------------------------------------------------------------------------------

def dino_config(state: dict[str, torch.Tensor]) -> ViTConfig:
    """The sizes of a DINO ViT read off its tensors (ViT-B/16 for VBench's file: width 768, 12 blocks, 12 heads)."""
    width = state["cls_token"].shape[-1]
    return ViTConfig(
        patch_size=state["patch_embed.proj.weight"].shape[-1], width=width,
        depth=len({k.split(".")[1] for k in state if k.startswith("blocks.")}), heads=width // 64,
        num_positions=state["pos_embed"].shape[1], norm_eps=1e-6, quick_gelu=False, norm_before_blocks=False, patch_bias=True,
    )


def load_dino_vit(path: str | Path) -> VisionTransformer:
    """DINO's ViT from its checkpoint (`dino_vitbase16_pretrain.pth`: a plain state dict in DINO's names)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "cls_token" not in state or "patch_embed.proj.weight" not in state:
        raise ValueError(f"{path}: not a DINO ViT checkpoint (no cls_token / patch_embed.proj.weight)")
    config = dino_config(state)
    renamed = {("patch_embed." + k.split(".", 2)[2] if k.startswith("patch_embed.proj.") else k): v for k, v in state.items()}
    return build_loaded(config, renamed, path, "a DINO ViT checkpoint")


def openai_clip_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an OpenAI CLIP file: a TorchScript archive (the published `.pt` files), else a plain
    state dict, as `clip.load` tries them."""
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript, but OpenAI published its CLIP files in it
            warnings.simplefilter("ignore", DeprecationWarning)
            return {k: v for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
    except RuntimeError:
        return torch.load(path, map_location="cpu", weights_only=True)


def clip_visual_config(state: dict[str, torch.Tensor]) -> ViTConfig:
    """The image tower's sizes, read off its tensors as openai-clip's `build_model` does."""
    width, _, patch, _ = state["visual.conv1.weight"].shape
    depth = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    return ViTConfig(
        patch_size=patch, width=width, depth=depth, heads=width // 64, num_positions=state["visual.positional_embedding"].shape[0],
        norm_eps=1e-5, quick_gelu=True, norm_before_blocks=True, patch_bias=False, output_dim=state["visual.proj"].shape[1],
    )


CLIP_NAMES = {  # openai-clip's `visual.*` name -> ours (inside each block: `transformer.resblocks.{i}.<name>`)
    "conv1.weight": "patch_embed.weight", "ln_pre": "norm_pre", "ln_post": "norm", "proj": "proj",
    "ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}


def load_openai_clip_visual(path: str | Path) -> VisionTransformer:
    """CLIP's image tower (`encode_image`) from an OpenAI `.pt` file, in fp32 (as `clip.load` on CPU)."""
    state = {k[len("visual."):]: v.float() for k, v in openai_clip_state(path).items() if k.startswith("visual.")}
    if "conv1.weight" not in state:
        raise ValueError(f"{path}: not an OpenAI CLIP checkpoint (no visual.conv1.weight)")
    config = clip_visual_config({"visual." + k: v for k, v in state.items()})
    renamed = {}
    for key, value in state.items():
        if key == "class_embedding":
            renamed["cls_token"] = value.reshape(1, 1, -1)
        elif key == "positional_embedding":
            renamed["pos_embed"] = value.unsqueeze(0)
        elif key.startswith("transformer.resblocks."):
            _, _, index, rest = key.split(".", 3)
            renamed[f"blocks.{index}.{_rename(rest)}"] = value
        else:
            renamed[_rename(key)] = value
    return build_loaded(config, renamed, path, "an OpenAI CLIP checkpoint")


def _rename(key: str) -> str:
    for theirs, ours in CLIP_NAMES.items():
        if key == theirs or key.startswith(theirs + "."):
            return ours + key[len(theirs):]
    return key


def build_loaded(config: ViTConfig, state: dict[str, torch.Tensor], path: str | Path, what: str) -> VisionTransformer:
    """The model with `state`'s tensors, built on the meta device (a ViT-L takes seconds to initialise on a CPU)."""
    with torch.device("meta"):
        model = VisionTransformer(config)
    return load_exactly(model, state, path, what)
