from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from arlon.errors import ConfigError
from arlon.training.backbone import train_backbone
from arlon.training.common import (
    EMA,
    Checkpointer,
    RunContext,
    TrainConfig,
    learning_rate,
    run_training,
)
from arlon.training.data import TrainingData
from arlon.training.vq import train_latent_vq
from arlon.models.text_encoders import build_text_encoder

CPU = torch.device("cpu")


def test_learning_rate_warmup_then_cosine_to_the_floor():
    cfg = TrainConfig(steps=11, lr=1.0, warmup_steps=2, min_lr_ratio=0.1)
    assert learning_rate(0, cfg) == pytest.approx(0.5)
    assert learning_rate(1, cfg) == pytest.approx(1.0)
    assert learning_rate(2, cfg) == pytest.approx(1.0)  # cosine starts at the peak
    # 8 decay steps from step 2 to step 10: half way (step 6) is the mean of peak and floor.
    assert learning_rate(6, cfg) == pytest.approx(0.55)
    assert learning_rate(10, cfg) == pytest.approx(0.1)
    assert learning_rate(4, cfg) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 2 / 8)))
    values = [learning_rate(step, cfg) for step in range(2, 11)]
    assert values == sorted(values, reverse=True)
    assert learning_rate(4, cfg) == learning_rate(4, cfg)  # a pure function of the step


def test_learning_rate_without_warmup_or_decay():
    assert learning_rate(0, TrainConfig(steps=5, lr=0.3)) == pytest.approx(0.3)
    assert learning_rate(0, TrainConfig(steps=1, lr=0.3)) == pytest.approx(0.3)
    flat = TrainConfig(steps=100, lr=0.3, min_lr_ratio=1.0)
    assert learning_rate(57, flat) == pytest.approx(0.3)


def test_train_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="train.steps is not set"):
        TrainConfig().validate("ar")
    with pytest.raises(ConfigError, match=r"train.backbone.ema_decay = 1.5 is out of range: it must be in \[0, 1\)"):
        TrainConfig(steps=1, ema_decay=1.5).validate("backbone")


def test_ema_update_and_copy():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen parameters are not averaged
    ema = EMA(model, decay=0.9)
    assert set(ema.shadow) == {"weight"}
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * before + 0.1 * (before + 1.0))
    ema.copy_to(model)
    torch.testing.assert_close(model.weight, ema.shadow["weight"])


def test_checkpointer_keeps_the_newest_complete_state(tmp_path, make_latent_pool):
    model = nn.Linear(2, 2)
    cfg = TrainConfig(steps=6, batch_size=2, lr=0.1, checkpoint_every=2)
    pool = make_latent_pool(8)
    checkpointer = Checkpointer(tmp_path)

    def loss_fn(module, batch, generator):
        return module(batch.x.flatten(1)[:, :2]).pow(2).mean()

    run_training("linear", model, loss_fn, TrainingData(pool, 2, seed=0), cfg, RunContext(CPU, checkpointer))
    assert checkpointer.steps() == [4]  # saved at 2 and 4 (not at the end); older states deleted
    (tmp_path / "state-00000009.safetensors").write_bytes(b"partial")  # no JSON: not a complete state
    assert checkpointer.latest_step() == 4


def _interrupt_at(step_to_stop: int):
    def progress(task, done, total, loss):
        if done == step_to_stop:
            raise KeyboardInterrupt

    return progress


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_after_interruption_is_bit_for_bit(tmp_path, mini_cfg, make_latent_pool):
    """Backbone stage: EMA, AdamW moments, caption dropout (global RNG), timesteps/noise/masks (generator)."""
    pool, heldout = make_latent_pool(8), make_latent_pool(2, seed=1)
    text = build_text_encoder(mini_cfg.text)
    cfg = TrainConfig(steps=5, batch_size=4, lr=1e-3, warmup_steps=2, ema_decay=0.9, checkpoint_every=100)

    def run(directory, progress=None):
        context = RunContext(CPU, Checkpointer(directory), progress)
        data = TrainingData(pool, cfg.batch_size, cfg.seed)
        return train_backbone(mini_cfg.backbone, mini_cfg.flow, mini_cfg.video, text, data, heldout, cfg, context)

    straight = run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", progress=_interrupt_at(3))
    assert Checkpointer(tmp_path / "resumed").steps() == [3]  # saved on the interrupt
    torch.manual_seed(123)  # whatever the caller's RNG holds, the resumed run restores its own
    resumed = run(tmp_path / "resumed")

    assert resumed.result.steps_run == 2
    assert resumed.result.losses == straight.result.losses
    _assert_bitwise_equal(_state(resumed.module), _state(straight.module))


def test_resume_restores_vq_codebook_buffers(tmp_path, mini_cfg, make_latent_pool):
    pool, heldout = make_latent_pool(8), make_latent_pool(2, seed=1)
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2)

    def run(directory, progress=None):
        context = RunContext(CPU, Checkpointer(directory), progress)
        return train_latent_vq("ar_vq", mini_cfg.ar_vq, TrainingData(pool, 4, 0), heldout, cfg, context)

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", progress=_interrupt_at(3))
    resumed = run(tmp_path / "b")
    _assert_bitwise_equal(_state(resumed.module), _state(straight.module))


def test_training_leaves_the_callers_rng_alone(make_latent_pool):
    model = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    cfg = TrainConfig(steps=2, batch_size=2, lr=0.1)

    def loss_fn(module, batch, generator):
        return module(batch.x.flatten(1)[:, :2]).pow(2).mean()

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    run_training("mlp", model, loss_fn, TrainingData(make_latent_pool(4), 2, 0), cfg, RunContext(CPU))
    assert torch.equal(torch.rand(3), expected)
