"""Each stage's recipe lowers its loss within a few steps on tiny data (CPU, fp32, seeded)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from arlon.errors import ConfigError
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.text_encoders import build_text_encoder
from arlon.training.ar import drop_captions, train_ar
from arlon.training.backbone import train_backbone
from arlon.training.common import RunContext, TrainConfig
from arlon.training.data import TrainingData
from arlon.training.injection import train_injector
from arlon.training.vae import random_frame_crop, train_vae
from arlon.training.vq import train_latent_vq

CPU = RunContext(torch.device("cpu"))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _assert_loss_drops(losses: list[float], window: int = 3, factor: float = 0.9) -> None:
    assert _mean(losses[-window:]) < factor * _mean(losses[:window]), losses


def test_vae_stage_lowers_its_loss_and_normalises_latents(mini_cfg, square_clips):
    data = TrainingData(square_clips(16), batch_size=4, seed=0)
    train = TrainConfig(steps=12, batch_size=4, lr=3e-3)
    out = train_vae(mini_cfg.vae, data, square_clips(4, offset=16), train, CPU)
    _assert_loss_drops(out.result.losses)
    assert out.metrics["heldout_psnr_db"] > 0
    latents = torch.cat([out.module.encode(square_clips(16).clip(i)[0][None]) for i in range(16)])
    torch.testing.assert_close(latents.mean(dim=(0, 2, 3, 4)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(latents.std(dim=(0, 2, 3, 4)), torch.ones(4), atol=0.05, rtol=0)


def test_vae_stage_refuses_the_pretrained_vae(mini_cfg, square_clips):
    cfg = dataclasses.replace(mini_cfg.vae, kind="opensora_v1_2")
    with pytest.raises(ConfigError, match="tiny VAE only"):
        train_vae(cfg, TrainingData(square_clips(4), 2, 0), square_clips(2), TrainConfig(steps=1), CPU)


def test_random_frame_crop():
    video = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(2, 3, 8, 2, 2)
    crop = random_frame_crop(video, 3, torch.Generator().manual_seed(0))
    assert crop.shape == (2, 3, 3, 2, 2)
    assert torch.equal(crop[0, 0, :, 0, 0], crop[0, 0, 0, 0, 0] + torch.arange(3.0))
    assert random_frame_crop(video, 0, torch.Generator()) is video


@pytest.mark.parametrize("stage", ["ar_vq", "dit_vq"])
def test_latent_vq_stage_lowers_its_loss(stage, mini_cfg, make_latent_pool):
    train = TrainConfig(steps=15, batch_size=8, lr=1e-2)
    out = train_latent_vq(stage, getattr(mini_cfg, stage), TrainingData(make_latent_pool(16), 8, 0), make_latent_pool(4, seed=1), train, CPU)
    _assert_loss_drops(out.result.losses)
    assert 0 < out.metrics["codebook_usage"] <= 1


def test_ar_stage_lowers_its_loss(mini_cfg, make_latent_pool):
    ar_vq = LatentVQVAE(mini_cfg.ar_vq).eval()
    text = build_text_encoder(mini_cfg.text)
    train = TrainConfig(steps=15, batch_size=8, lr=3e-3, caption_dropout=0.1)
    out = train_ar(
        mini_cfg.ar, text, ar_vq, TrainingData(make_latent_pool(16), 8, 0), make_latent_pool(4, seed=1), train, CPU,
        mini_cfg.ar_frame_grid,
    )
    _assert_loss_drops(out.result.losses)
    assert 0 <= out.metrics["heldout_code_accuracy"] <= 1


def test_caption_dropout_uses_the_null_prompt():
    captions = [f"caption {i}" for i in range(200)]
    dropped = drop_captions(captions, 0.25, torch.Generator().manual_seed(0))
    assert set(dropped) - set(captions) == {""}
    assert 25 < dropped.count("") < 75
    assert drop_captions(captions, 0.0, torch.Generator()) == captions


def test_backbone_stage_lowers_its_loss_and_fixes_the_null_caption(mini_cfg, make_latent_pool):
    text = build_text_encoder(mini_cfg.text)
    train = TrainConfig(steps=15, batch_size=8, lr=3e-3, ema_decay=0.5, seed=3)
    out = train_backbone(
        mini_cfg.backbone, mini_cfg.flow, mini_cfg.video, text, TrainingData(make_latent_pool(16), 8, 0),
        make_latent_pool(4, seed=1), train, CPU,
    )
    _assert_loss_drops(out.result.losses)
    expected = torch.randn(out.module.y_embedder.y_embedding.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.module.y_embedder.y_embedding, expected / mini_cfg.text.dim**0.5)


def test_injector_stage_trains_only_the_injector(mini_cfg, make_latent_pool):
    torch.manual_seed(0)
    backbone = STDiT3(mini_cfg.backbone)
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}
    text = build_text_encoder(mini_cfg.text)
    train = TrainConfig(steps=20, batch_size=8, lr=1e-2, ema_decay=0.5)
    pool = make_latent_pool(8)
    out = train_injector(
        mini_cfg.injection, mini_cfg.noise, mini_cfg.flow, mini_cfg.video, backbone, LatentVQVAE(mini_cfg.dit_vq),
        text, TrainingData(pool, 8, 0), make_latent_pool(4, seed=1), train, CPU,
    )
    _assert_loss_drops(out.result.losses, window=4, factor=0.95)
    assert all(torch.equal(frozen[k], v) for k, v in backbone.state_dict().items())
    assert out.metrics["heldout_loss"] != out.metrics["heldout_loss_without_injection"]
