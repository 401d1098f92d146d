from __future__ import annotations

import dataclasses

import pytest
import torch

from arlon.config import ArlonConfig
from arlon.presets import tiny
from arlon.training.common import TrainConfig
from arlon.training.data import ClipPool, DataConfig
from arlon.training.stages import STAGES, default_train_config


def mini_config() -> ArlonConfig:
    """tiny() shrunk for tests: 4-frame 16x16 clips (latent 4x2x4x4), 2 block pairs, narrow widths."""
    cfg = tiny()
    width = 32
    return dataclasses.replace(
        cfg,
        video=dataclasses.replace(cfg.video, num_frames=4, height=16, width=16),
        vae=dataclasses.replace(cfg.vae, tiny_channels=(8, 16)),
        text=dataclasses.replace(cfg.text, dim=width),
        ar_vq=dataclasses.replace(cfg.ar_vq, codebook_size=32, code_dim=8, hidden_channels=16),
        dit_vq=dataclasses.replace(cfg.dit_vq, codebook_size=32, code_dim=8, hidden_channels=16),
        ar=dataclasses.replace(cfg.ar, n_layer=1, n_head=2, n_embd=32, n_ffn=64, codebook_size=32, text_dim=width),
        backbone=dataclasses.replace(cfg.backbone, hidden_size=32, depth=2, caption_channels=width),
        injection=dataclasses.replace(cfg.injection, layers="first:1"),
    ).validate()


MINI_DATA = DataConfig(num_train_clips=16, num_heldout_clips=4)


@pytest.fixture
def mini_cfg() -> ArlonConfig:
    return mini_config()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh cache root, also set as ARLON_CACHE_DIR for code that reads the environment."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ARLON_CACHE_DIR", str(root))
    return root


COLOURS = ("red", "green", "blue", "yellow")
MOTIONS = ("right", "left", "down", "up")


class SquareClips:
    """A synthetic ClipSource: one coloured square moving one pixel per frame, captioned; (3, T, H, W) in [-1, 1]."""

    def __init__(self, size: int, num_frames: int = 4, height: int = 16, width: int = 16, offset: int = 0):
        self.size, self.num_frames, self.height, self.width, self.offset = size, num_frames, height, width, offset
        self.spec = {"source": "squares", "size": size, "offset": offset, "video": [num_frames, height, width]}

    def __len__(self) -> int:
        return self.size

    def clip(self, index: int) -> tuple[torch.Tensor, str]:
        index += self.offset
        colour, motion = COLOURS[index % 4], MOTIONS[(index // 4) % 4]
        rgb = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]][index % 4])
        dx, dy = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}[motion]
        video = -torch.ones(3, self.num_frames, self.height, self.width)
        x0, y0 = 4 + index % 5, 4 + (index // 5) % 5
        for t in range(self.num_frames):
            x, y = x0 + dx * t, y0 + dy * t
            video[:, t, y : y + 4, x : x + 4] = rgb[:, None, None]
        return video, f"a {colour} square moves {motion}"


def latent_pool(size: int, channels: int = 4, frames: int = 2, side: int = 4, seed: int = 0) -> ClipPool:
    """A pool of latents (size, C, T, side, side) with captions: four smooth patterns, one per caption
    colour, plus a little noise, so that every stage has something learnable within a few steps."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.nn.functional.interpolate(
        torch.randn(4, channels, frames, side // 2, side // 2, generator=torch.Generator().manual_seed(100)),
        size=(frames, side, side),
        mode="trilinear",
        align_corners=False,
    )
    x = patterns[torch.arange(size) % 4] + 0.1 * torch.randn(size, channels, frames, side, side, generator=generator)
    captions = [f"a {COLOURS[i % 4]} square moves {MOTIONS[(i // 4) % 4]}" for i in range(size)]
    return ClipPool(x.contiguous(), captions, {"source": "latent_pool", "size": size, "seed": seed})


@pytest.fixture
def square_clips() -> type[SquareClips]:
    return SquareClips


@pytest.fixture
def make_latent_pool():
    return latent_pool


@pytest.fixture
def mini_data() -> DataConfig:
    return MINI_DATA


@pytest.fixture
def mini_recipes():
    """recipes(cfg, steps) -> {stage: TrainConfig} with `steps` steps of batch 4 for every stage."""

    def recipes(cfg: ArlonConfig, steps: int = 2) -> dict[str, TrainConfig]:
        return {
            stage: dataclasses.replace(default_train_config(stage, cfg), steps=steps, batch_size=4, warmup_steps=0)
            for stage in STAGES
        }

    return recipes
