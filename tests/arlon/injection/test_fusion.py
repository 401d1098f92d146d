from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from arlon.injection.fusion import FUSIONS, Fusion
from arlon.models.stdit3 import STDiT3


def captured_inputs(backbone: STDiT3, pair: int = 1):
    """Run the backbone once and return (x, ctx) as seen at the input of block pair `pair`."""
    cfg = backbone.cfg
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cfg.in_channels, 2, 5, 6, generator=g)
    y = torch.randn(2, 1, cfg.model_max_length, cfg.caption_channels, generator=g)
    mask = torch.arange(cfg.model_max_length)[None] < torch.tensor([[7], [13]])
    seen = {}

    def record(i, tokens, ctx):
        seen[i] = (tokens, ctx)
        return tokens

    x_mask = torch.tensor([[False, True], [True, True]])  # a clean conditioning frame: ctx carries t0_mlp
    backbone(x, torch.tensor([800.0, 150.0]), y, mask=mask, x_mask=x_mask, injection=record)
    return seen[pair]


def condition_like(x: torch.Tensor, seed: int = 2) -> torch.Tensor:
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_registry_holds_the_paper_fusions():
    assert set(FUSIONS.keys()) == {"adaptive_norm", "controlnet", "mlp_adapter"}


def test_fusion_is_abstract(backbone):
    with pytest.raises(TypeError):
        Fusion(backbone, 0, 0.5)


@pytest.mark.parametrize("key", FUSIONS.keys())
def test_fresh_fusion_returns_x_bit_identically(key, backbone):
    x, ctx = captured_inputs(backbone)
    fusion = FUSIONS.get(key)(backbone, 1, 0.5)
    out = fusion(x, condition_like(x), ctx)
    assert out.shape == x.shape
    assert torch.equal(out, x)


@pytest.mark.parametrize("key", FUSIONS.keys())
def test_trained_fusion_depends_on_the_condition(key, backbone, perturb_zero_parameters):
    x, ctx = captured_inputs(backbone)
    fusion = FUSIONS.get(key)(backbone, 1, 0.5)
    perturb_zero_parameters(fusion)
    out_a = fusion(x, condition_like(x, seed=4), ctx)
    out_b = fusion(x, condition_like(x, seed=5), ctx)
    assert out_a.shape == x.shape and torch.isfinite(out_a).all()
    assert not torch.equal(out_a, x)
    assert not torch.allclose(out_a, out_b)


@pytest.mark.parametrize("key", FUSIONS.keys())
def test_fusion_parameters_are_trainable_and_backbone_untouched(key, backbone):
    before = {name: p.requires_grad for name, p in backbone.named_parameters()}
    fusion = FUSIONS.get(key)(backbone, 2, 0.5)
    assert all(p.requires_grad for p in fusion.parameters())
    assert {name: p.requires_grad for name, p in backbone.named_parameters()} == before
    # The fusion owns no backbone weight: no parameter is shared with the backbone.
    backbone_ids = {id(p) for p in backbone.parameters()}
    assert not any(id(p) in backbone_ids for p in fusion.parameters())


@pytest.mark.parametrize("key", FUSIONS.keys())
def test_fusion_runs_in_bfloat16(key, backbone, perturb_zero_parameters):
    x, ctx = captured_inputs(backbone)
    fusion = FUSIONS.get(key)(backbone, 1, 0.5)
    perturb_zero_parameters(fusion)
    fusion = fusion.to(torch.bfloat16)
    ctx_bf16 = dataclasses.replace(
        ctx, y=ctx.y.bfloat16(), t_mlp=ctx.t_mlp.bfloat16(), t0_mlp=ctx.t0_mlp.bfloat16()
    )
    out = fusion(x.bfloat16(), condition_like(x).bfloat16(), ctx_bf16)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_adaptive_norm_follows_eq5(backbone, perturb_zero_parameters):
    x, ctx = captured_inputs(backbone)
    f = condition_like(x)
    fusion = FUSIONS.get("adaptive_norm")(backbone, 1, 0.5)
    assert fusion.mlp.fc1.out_features == 32  # r * D with D = 64
    assert fusion.gate.shape == (64,) and not fusion.gate.any()
    perturb_zero_parameters(fusion)
    alpha, beta, gamma = fusion.modulation(F.silu(f)).chunk(3, dim=-1)
    normed = F.layer_norm(x, (64,), eps=1e-6)
    hidden = F.gelu(fusion.mlp.fc1(gamma * normed + beta), approximate="tanh")  # gamma, not 1 + gamma
    expected = x + fusion.gate * alpha * fusion.mlp.fc2(hidden)
    torch.testing.assert_close(fusion(x, f, ctx), expected)


def test_controlnet_copies_equal_the_backbone_blocks_at_init(backbone):
    fusion = FUSIONS.get("controlnet")(backbone, 2, 0.5)
    for copy, original in (
        (fusion.spatial_block, backbone.spatial_blocks[2]),
        (fusion.temporal_block, backbone.temporal_blocks[2]),
    ):
        assert copy is not original
        copy_state, original_state = copy.state_dict(), original.state_dict()
        assert copy_state.keys() == original_state.keys()
        assert all(torch.equal(copy_state[k], original_state[k]) for k in copy_state)
        assert all(p.requires_grad for p in copy.parameters())
        assert not any(p.requires_grad for p in original.parameters())
    with torch.no_grad():
        fusion.spatial_block.attn.qkv.weight.add_(1.0)
    assert not torch.equal(fusion.spatial_block.attn.qkv.weight, backbone.spatial_blocks[2].attn.qkv.weight)


def test_controlnet_runs_the_copied_pair_on_the_conditioned_input(backbone, perturb_zero_parameters):
    x, ctx = captured_inputs(backbone)
    f = condition_like(x)
    fusion = FUSIONS.get("controlnet")(backbone, 1, 0.5)
    perturb_zero_parameters(fusion)
    h = backbone.temporal_blocks[1](backbone.spatial_blocks[1](x + fusion.proj_in(f), ctx), ctx)
    torch.testing.assert_close(fusion(x, f, ctx), x + fusion.proj_out(h))


def test_mlp_adapter_adds_an_mlp_of_the_condition(backbone, perturb_zero_parameters):
    x, ctx = captured_inputs(backbone)
    f = condition_like(x)
    fusion = FUSIONS.get("mlp_adapter")(backbone, 0, 0.5)
    perturb_zero_parameters(fusion)
    expected = x + fusion.mlp.fc2(F.gelu(fusion.mlp.fc1(f), approximate="tanh"))
    torch.testing.assert_close(fusion(x, f, ctx), expected)
