from __future__ import annotations

import dataclasses

import pytest
import torch

from arlon.config import LatentVQConfig
from arlon.errors import ConfigError
from arlon.models.latent_vq import LatentVQVAE, VectorQuantizer, VQOutput
from arlon.presets import paper, tiny

LATENT_SHAPE = (2, 4, 8, 8, 8)  # tiny preset latent (B, C, T, H, W)


def build(cfg: LatentVQConfig, seed: int = 0) -> LatentVQVAE:
    torch.manual_seed(seed)
    return LatentVQVAE(cfg)


def latent(shape=LATENT_SHAPE, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "cfg, grid",
    [
        (tiny().ar_vq, (4, 8, 8)),  # (2, 1, 1): r != o
        (tiny().dit_vq, (4, 4, 4)),  # (2, 2, 2)
        (dataclasses.replace(tiny().ar_vq, compression=(1, 8, 2)), (8, 1, 4)),  # every axis different
    ],
)
def test_shapes(cfg, grid):
    model = build(cfg)
    x = latent()
    out = model(x)
    assert isinstance(out, VQOutput)
    assert out.recon.shape == x.shape
    assert out.indices.shape == (2, *grid) and out.indices.dtype == torch.long
    assert out.quantized.shape == (2, cfg.code_dim, *grid)
    assert out.commit_loss.shape == () and out.perplexity.shape == ()
    assert 1.0 <= out.perplexity.item() <= cfg.codebook_size
    assert model.encode(x).shape == (2, *grid)
    assert model.decode(out.indices).shape == x.shape


def test_round_trip_in_eval_mode():
    model = build(tiny().ar_vq).eval()
    x = latent()
    out = model(x)
    Q = model.encode(x)
    assert torch.equal(Q, out.indices)
    assert torch.equal(model.decode(Q), out.recon)
    # lucidrains' property: the codes of the indices are the quantiser's output.
    z = torch.randn(3, 5, tiny().ar_vq.code_dim)
    quantized, indices, _, _ = model.quantizer(z)
    assert torch.equal(model.quantizer.codes(indices), quantized)
    assert torch.equal(model.codes_to_features(Q), out.quantized)


def test_eval_mode_leaves_the_codebook_alone():
    model = build(tiny().ar_vq).eval()
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    model(latent())
    model.encode(latent())
    for key, value in model.quantizer.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_straight_through_gradient_reaches_the_encoder():
    model = build(tiny().ar_vq).train()
    loss, out = model.loss(latent())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, param in model.encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert not any(buffer.requires_grad for buffer in model.quantizer.buffers())


def test_ema_moves_assigned_codes_toward_their_inputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, decay=0.5, dead_code_threshold=0.0).train()
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
        vq.ema_embed_sum.copy_(vq.embedding)
    z = torch.tensor([[1.0, 1.0], [9.0, 9.0], [9.0, 11.0]])  # code 0 gets one, code 1 gets two
    _, indices, _, _ = vq(z)
    assert indices.tolist() == [0, 1, 1]
    before = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    target = torch.tensor([[1.0, 1.0], [9.0, 10.0]])
    moved = vq.embedding[:2]
    assert torch.all((moved - target).norm(dim=1) < (before - target).norm(dim=1))
    torch.testing.assert_close(vq.ema_cluster_size, torch.tensor([1.0, 1.5, 0.5, 0.5]))
    # Unused codes keep their place (Laplace smoothing only rescales them slightly).
    torch.testing.assert_close(vq.embedding[2:], torch.tensor([[-10.0, 10.0], [10.0, -10.0]]), rtol=0.05, atol=0)


def test_dead_code_restart_replaces_an_unused_code():
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 2, decay=0.9, dead_code_threshold=0.95).train()
    with torch.no_grad():
        vq.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]))
        vq.ema_embed_sum.copy_(vq.embedding)
    z = torch.tensor([[0.1, 0.0], [0.0, 0.1], [1.0, 0.9], [0.9, 1.0]])
    vq(z)
    # Code 2 was never assigned: its EMA usage fell to 0.9 < 0.95, so it now holds one of the inputs.
    assert any(torch.equal(vq.embedding[2], row) for row in z)
    assert vq.ema_cluster_size[2] == pytest.approx(0.95)
    assert vq.ema_cluster_size[:2].tolist() == pytest.approx([1.1, 1.1])
    # A used code is not restarted.
    assert vq.embedding[1].tolist() == pytest.approx([0.95, 0.95], abs=0.1)


def test_training_reduces_reconstruction_error():
    model = build(dataclasses.replace(tiny().ar_vq, hidden_channels=32)).train()
    x = latent((1, 4, 4, 8, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(8):
        loss, _ = model.loss(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    assert loss.item() < first


def test_indivisible_latent_is_a_config_error():
    model = build(tiny().dit_vq)
    with pytest.raises(ConfigError, match=r"not divisible by the compression \(2, 2, 2\)"):
        model(latent((1, 4, 5, 8, 8)))
    with pytest.raises(ConfigError, match="power of two"):
        LatentVQVAE(dataclasses.replace(tiny().ar_vq, compression=(3, 2, 2)))


def test_bf16_forward_on_cpu():
    model = build(tiny().dit_vq).to(torch.bfloat16).eval()
    x = latent().to(torch.bfloat16)
    out = model(x)
    assert out.recon.dtype == torch.bfloat16 and torch.isfinite(out.recon.float()).all()
    assert model.decode(model.encode(x)).dtype == torch.bfloat16


def count_parameters(cfg: LatentVQConfig) -> int:
    with torch.device("meta"):
        model = LatentVQVAE(cfg)
    return sum(p.numel() for p in model.parameters())


def test_paper_size_parameter_count():
    # Table 4: latent VQ-VAE 30M (trainable parameters; the EMA codebook is a 0.5M buffer on top).
    count = count_parameters(paper().ar_vq)
    assert abs(count - 30e6) / 30e6 < 0.25, count


@pytest.mark.parametrize("frame_local", [True, False])
def test_frame_local_codes_depend_only_on_their_own_token_frame(frame_local):
    """With `frame_local` the codes and the reconstruction of token frame t (latent frames 2t, 2t+1 at
    r = 2) do not change when another token frame's latents do; the clip-wide encoder's do."""
    model = build(dataclasses.replace(tiny().ar_vq, frame_local=frame_local)).eval()
    x = latent()
    changed = x.clone()
    changed[:, :, 4:] = latent(seed=7)[:, :, 4:]  # token frames 2 and 3
    with torch.no_grad():
        codes, codes_changed = model.encode(x), model.encode(changed)
        recon, recon_changed = model.decode(codes), model.decode(codes_changed)
    kept = torch.equal(codes[:, :2], codes_changed[:, :2]) and torch.allclose(recon[:, :, :4], recon_changed[:, :, :4])
    assert kept == frame_local
    assert not torch.equal(codes[:, 2:], codes_changed[:, 2:])
    assert model(x).recon.shape == x.shape
