from __future__ import annotations

import dataclasses

import pytest
import torch

from arlon.config import BackboneConfig, InjectionConfig, NoiseConfig
from arlon.errors import ConfigError
from arlon.injection.adapters import SemanticInjector
from arlon.injection.fusion import FUSIONS
from arlon.injection.noise import NOISE_STRATEGIES
from arlon.models.stdit3 import STDiT3

DEPTH = 4  # as the backbone fixture in conftest.py
LAYER_SPECS = ["first:2", "last:1", "0,3", "none"]


def make_inputs(backbone: STDiT3, batch: int = 2, seed: int = 1) -> dict:
    """Backbone call arguments with an odd latent size (5 x 6), so the patch embedding pads."""
    cfg = backbone.cfg
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(batch, cfg.in_channels, 2, 5, 6, generator=g),
        timestep=torch.linspace(900.0, 100.0, batch),
        y=torch.randn(batch, 1, cfg.model_max_length, cfg.caption_channels, generator=g),
        mask=torch.arange(cfg.model_max_length)[None] < torch.arange(5, 5 + 3 * batch, 3)[:, None],
    )


@pytest.fixture(scope="module")
def reference(backbone) -> torch.Tensor:
    """The backbone output without injection for `make_inputs(backbone)`."""
    return backbone(**make_inputs(backbone))


def make_condition(backbone: STDiT3, batch: int = 2, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, backbone.cfg.in_channels, 2, 5, 6, generator=torch.Generator().manual_seed(seed))


def make_injector(backbone, fusion="adaptive_norm", layers="first:2", strategy="none", probability=1.0, seed=0):
    torch.manual_seed(seed)
    return SemanticInjector(
        InjectionConfig(fusion=fusion, layers=layers),
        NoiseConfig(strategy=strategy, probability=probability),
        backbone,
    )


def test_structure_follows_the_layer_spec(backbone):
    injector = make_injector(backbone, layers="0,3")
    assert injector.layers == (0, 3)
    assert len(injector.adapters) == 2
    assert sorted(injector.fusions.keys()) == ["0", "3"]
    assert [injector.fusions[k].pair_index for k in ("0", "3")] == [0, 3]
    assert injector.adapters[0].fc1.out_features == 32  # r = 0.5 of D = 64


@pytest.mark.parametrize("strategy", NOISE_STRATEGIES.keys())
@pytest.mark.parametrize("layers", LAYER_SPECS)
@pytest.mark.parametrize("fusion", FUSIONS.keys())
def test_fresh_injector_leaves_the_backbone_output_bit_identical(fusion, layers, strategy, backbone, reference):
    inputs = make_inputs(backbone)
    injector = make_injector(backbone, fusion, layers, strategy).train()  # training noise included
    out = backbone(**inputs, injection=injector(make_condition(backbone)))
    assert out.shape == reference.shape
    assert torch.equal(out, reference)


@pytest.mark.parametrize("layers", LAYER_SPECS)
@pytest.mark.parametrize("fusion", FUSIONS.keys())
def test_trained_injector_changes_the_output_only_when_layers_are_injected(
    fusion, layers, backbone, reference, perturb_zero_parameters
):
    inputs = make_inputs(backbone)
    injector = make_injector(backbone, fusion, layers).eval()
    perturb_zero_parameters(injector)
    out = backbone(**inputs, injection=injector(make_condition(backbone)))
    if layers == "none":
        assert torch.equal(out, reference)
    else:
        assert not torch.allclose(out, reference, atol=1e-4)


@pytest.mark.parametrize(("layers", "expected"), [("first:3", [0, 1, 2]), ("last:3", [1, 2, 3]), ("1,3", [1, 3])])
def test_fusions_act_at_exactly_the_named_pairs(layers, expected, backbone):
    injector = make_injector(backbone, layers=layers)
    called = []
    for fusion in injector.fusions.values():
        fusion.register_forward_hook(lambda module, args, output: called.append(module.pair_index))
    injection = injector(make_condition(backbone))
    seen_pairs = []

    def spy(i, x, ctx):
        seen_pairs.append(i)
        out = injection(i, x, ctx)
        assert (out is x) == (i not in expected)  # untouched pairs get x itself back
        return out

    backbone(**make_inputs(backbone), injection=spy)
    assert seen_pairs == list(range(DEPTH))
    assert called == expected
    assert injection.pairs == tuple(expected)


@pytest.mark.parametrize("fusion", FUSIONS.keys())
def test_gradients_reach_every_injector_parameter_and_never_the_backbone(fusion, backbone, perturb_zero_parameters):
    flags_before = {name: p.requires_grad for name, p in backbone.named_parameters()}
    injector = make_injector(backbone, fusion, "0,2", "uncertainty", probability=0.5).train()
    perturb_zero_parameters(injector)
    assert {name: p.requires_grad for name, p in backbone.named_parameters()} == flags_before
    assert len(injector.trainable_parameters()) == len(list(injector.parameters()))

    out = backbone(**make_inputs(backbone), injection=injector(make_condition(backbone)))
    out.square().mean().backward()
    no_grad = [name for name, p in injector.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []
    assert all(p.grad is None for p in backbone.parameters())


@pytest.mark.parametrize("fusion", FUSIONS.keys())
def test_zero_gates_still_receive_a_gradient_at_init(fusion, backbone):
    injector = make_injector(backbone, fusion, "first:2").train()
    out = backbone(**make_inputs(backbone), injection=injector(make_condition(backbone)))
    out.square().mean().backward()
    zero_init = [p for p in injector.parameters() if not p.any()]
    assert zero_init and any(p.grad is not None and p.grad.any() for p in zero_init)


@pytest.mark.parametrize("fusion", FUSIONS.keys())
def test_state_dict_round_trip_holds_only_injector_weights(fusion, backbone, perturb_zero_parameters):
    trained = make_injector(backbone, fusion, "1,2", seed=0).eval()
    perturb_zero_parameters(trained)
    state = trained.state_dict()
    backbone_prefixes = ("x_embedder.", "y_embedder.", "t_block.", "spatial_blocks.", "temporal_blocks.", "rope.")
    assert not any(key.startswith(backbone_prefixes) for key in state)
    assert {key.split(".")[0] for key in state} == {"patch_embed", "adapters", "fusions"}
    assert sum(v.numel() for v in state.values()) == trained.num_parameters()

    fresh = make_injector(backbone, fusion, "1,2", seed=5).eval()
    fresh.load_state_dict(state, strict=True)
    inputs, F = make_inputs(backbone), make_condition(backbone)
    assert torch.equal(backbone(**inputs, injection=fresh(F)), backbone(**inputs, injection=trained(F)))


def test_patch_embedding_aligns_condition_tokens_with_video_tokens(backbone):
    injector = make_injector(backbone)
    F = make_condition(backbone)  # (2, 4, 2, 5, 6): padded to 6 x 6, 3 x 3 patches per frame
    tokens = injector.patch_embed(F)
    assert tokens.shape == (2, 2 * 3 * 3, 64)
    torch.testing.assert_close(tokens, backbone.x_embedder(F))  # starts from the backbone's own embedding
    assert injector.patch_embed.proj.weight is not backbone.x_embedder.proj.weight


def test_condition_is_repeated_over_a_cfg_batch(backbone, perturb_zero_parameters):
    injector = make_injector(backbone, layers="first:2").eval()
    perturb_zero_parameters(injector)
    F = make_condition(backbone, batch=1)
    inputs = make_inputs(backbone, batch=2)
    out_repeated = backbone(**inputs, injection=injector(F))
    out_explicit = backbone(**inputs, injection=injector(F.repeat(2, 1, 1, 1, 1)))
    torch.testing.assert_close(out_repeated, out_explicit)


def test_mismatched_condition_is_a_clear_error(backbone):
    injector = make_injector(backbone)
    wrong_grid = torch.randn(2, 4, 2, 8, 8)
    with pytest.raises(ValueError, match="same grid as the DiT input"):
        backbone(**make_inputs(backbone), injection=injector(wrong_grid))
    with pytest.raises(ValueError, match="not a multiple of the condition batch"):
        backbone(**make_inputs(backbone, batch=3), injection=injector(make_condition(backbone, batch=2)))


def test_eval_mode_is_deterministic_and_training_noise_is_not(backbone, perturb_zero_parameters):
    injector = make_injector(backbone, layers="first:2", strategy="uncertainty", probability=1.0)
    perturb_zero_parameters(injector)
    inputs, F = make_inputs(backbone), make_condition(backbone)
    injector.eval()
    assert torch.equal(backbone(**inputs, injection=injector(F)), backbone(**inputs, injection=injector(F)))
    injector.train()
    assert not torch.allclose(backbone(**inputs, injection=injector(F)), backbone(**inputs, injection=injector(F)))


def test_uncertainty_feeds_the_fusions_while_the_adapter_chain_stays_clean(backbone):
    injector = make_injector(backbone, layers="first:3", strategy="uncertainty")
    F = make_condition(backbone)
    clean = injector.eval()(F).conditions
    seen = []
    injector.noise.noisy_feature = lambda F_i: seen.append(F_i) or F_i + 100.0  # recognisable perturbation
    noisy = injector.train()(F).conditions
    for pair in (0, 1, 2):
        torch.testing.assert_close(seen[pair], clean[pair])  # each adapter read the clean F_k
        torch.testing.assert_close(noisy[pair], clean[pair] + 100.0)  # each fusion gets F_hat


def test_gaussian_noise_perturbs_the_latent_condition_before_the_patch_embedding(backbone):
    injector = make_injector(backbone, strategy="gaussian")
    seen = []
    injector.noise.noisy_condition = lambda F: seen.append(F) or F
    F = make_condition(backbone)
    injector.train()(F)
    assert len(seen) == 1 and seen[0] is F
    injector.eval()(F)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fusion", "adaptive-norm", "did you mean 'adaptive_norm'"),
        ("layers", "first:5", "between 1 and the backbone depth 4"),
        ("adapter_mlp_ratio", 0.0, "adapter_mlp_ratio must be > 0"),
    ],
)
def test_bad_injection_config_is_a_config_error(field, value, message, backbone):
    cfg = dataclasses.replace(InjectionConfig(layers="first:2"), **{field: value})
    with pytest.raises(ConfigError, match=message):
        SemanticInjector(cfg, NoiseConfig(), backbone)


def test_unknown_noise_strategy_is_a_config_error(backbone):
    with pytest.raises(ConfigError, match="unknown noise strategy 'gausian'; did you mean 'gaussian'"):
        SemanticInjector(InjectionConfig(layers="first:1"), NoiseConfig(strategy="gausian"), backbone)


def paper_size_injector(fusion: str) -> SemanticInjector:
    with torch.device("meta"):
        backbone = STDiT3(BackboneConfig())
        return SemanticInjector(InjectionConfig(fusion=fusion, layers="first:14"), NoiseConfig(), backbone)


def test_paper_size_adaptive_norm_has_about_92m_trainable_parameters():
    """Paper Table 4: 92M trainable DiT parameters for the adaptive-norm injector in the first 14 pairs."""
    injector = paper_size_injector("adaptive_norm")
    D, hidden, C = 1152, 576, 4
    per_pair = (
        2 * D + (D * hidden + hidden) + (hidden * D + D)  # adapter block: LayerNorm, fc1, fc2
        + (D * 3 * D + 3 * D) + (D * hidden + hidden) + (hidden * D + D) + D  # modulation, MLP, gate
    )
    assert injector.num_parameters() == C * 2 * 2 * D + D + 14 * per_pair  # = 93,062,016
    assert injector.num_parameters() == pytest.approx(92e6, rel=0.25)


def test_paper_size_fusions_order_by_size():
    counts = {fusion: paper_size_injector(fusion).num_parameters() for fusion in FUSIONS.keys()}
    assert counts["mlp_adapter"] < counts["adaptive_norm"] < counts["controlnet"]
