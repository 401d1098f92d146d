from __future__ import annotations

import pytest
import torch

from arlon.config import NoiseConfig
from arlon.injection.noise import NOISE_STRATEGIES, NoiseStrategy


def build(key: str, seed: int = 0, **fields) -> NoiseStrategy:
    strategy = NOISE_STRATEGIES.get(key)(NoiseConfig(strategy=key, **fields))
    strategy.generator = torch.Generator().manual_seed(seed)
    return strategy


def condition(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(seed))  # (B, C, T, H, W)


def tokens(batch: int = 3, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(batch, 16, 8, generator=g) + torch.randn(batch, 1, 8, generator=g)  # (B, N, D)


def test_registry_holds_the_paper_strategies_and_the_mean_preserving_reading():
    assert NOISE_STRATEGIES.keys() == ["none", "gaussian", "uncertainty", "uncertainty_mean_preserving"]


@pytest.mark.parametrize("key", NOISE_STRATEGIES.keys())
def test_eval_mode_is_the_identity(key):
    strategy = build(key, probability=1.0).eval()
    F, F_i = condition(), tokens()
    assert strategy.perturb_condition(F) is F
    assert strategy.perturb_feature(F_i) is F_i


@pytest.mark.parametrize("key", NOISE_STRATEGIES.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_keeps_shapes_and_dtypes_and_has_no_parameters(key, dtype):
    strategy = build(key, probability=1.0).train()
    F, F_i = condition().to(dtype), tokens().to(dtype)
    assert strategy.perturb_condition(F).shape == F.shape and strategy.perturb_condition(F).dtype == dtype
    assert strategy.perturb_feature(F_i).shape == F_i.shape and strategy.perturb_feature(F_i).dtype == dtype
    assert list(strategy.parameters()) == []


@pytest.mark.parametrize("key", NOISE_STRATEGIES.keys())
def test_a_seeded_generator_makes_draws_reproducible(key):
    F, F_i = condition(), tokens()
    a, b = build(key, seed=5, probability=0.5).train(), build(key, seed=5, probability=0.5).train()
    assert torch.equal(a.perturb_condition(F), b.perturb_condition(F))
    assert torch.equal(a.perturb_feature(F_i), b.perturb_feature(F_i))


def test_none_is_the_identity_in_training():
    strategy = build("none").train()
    F, F_i = condition(), tokens()
    assert torch.equal(strategy.perturb_condition(F), F)
    assert torch.equal(strategy.perturb_feature(F_i), F_i)


@pytest.mark.parametrize("scale", [0.1, 0.5])
def test_gaussian_adds_noise_of_the_configured_std_to_the_condition_in_training_only(scale):
    F = torch.randn(8, 4, 8, 16, 16, generator=torch.Generator().manual_seed(3))
    strategy = build("gaussian", gaussian_scale=scale).train()
    noise = strategy.perturb_condition(F) - F
    assert abs(noise.mean().item()) < 0.02 * scale
    assert noise.std().item() == pytest.approx(scale, rel=0.02)
    assert torch.equal(strategy.perturb_feature(tokens()), tokens())  # tokens are untouched
    assert torch.equal(strategy.eval().perturb_condition(F), F)


UNCERTAINTY_KEYS = ["uncertainty", "uncertainty_mean_preserving"]


@pytest.mark.parametrize("key", UNCERTAINTY_KEYS)
def test_uncertainty_leaves_the_latent_condition_alone(key):
    strategy = build(key, probability=1.0).train()
    assert torch.equal(strategy.perturb_condition(condition()), condition())


def per_sample_statistics(F_i: torch.Tensor):
    mu = F_i.mean(dim=1, keepdim=True)
    sigma = torch.sqrt(F_i.var(dim=1, unbiased=False, keepdim=True) + 1e-6)
    return mu, sigma


def channels_of_known_statistics(draws: int) -> torch.Tensor:
    """One sample (N = 256 tokens, D = 4 channels) repeated `draws` times; channel stds 0.25, 1, 3, 8.

    Stds away from 1 separate eq. 7's sigma_hat ~ N(1, sigma) from a draw centred on sigma itself.
    """
    g = torch.Generator().manual_seed(7)
    sigma = torch.tensor([0.25, 1.0, 3.0, 8.0])
    mu = torch.tensor([-2.0, 0.5, 4.0, 1.0])
    F = torch.randn(1, 256, 4, generator=g)
    F = (F - F.mean(dim=1, keepdim=True)) / F.std(dim=1, unbiased=False, keepdim=True) * sigma + mu
    return F.expand(draws, -1, -1).contiguous()


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_uncertainty_is_eq7_as_written(lam):
    draws = 20000
    F_i = channels_of_known_statistics(draws)
    F_hat = build("uncertainty", probability=1.0, uncertainty_scale=lam).train().perturb_feature(F_i)
    mu, sigma = per_sample_statistics(F_i[:1])  # (1, 1, D)
    F_bar = (F_i[:1] - mu) / sigma  # whitened, eq. 7's F_bar

    # F_hat = sigma_hat * F_bar + mu_hat: its token mean is mu_hat, its slope on F_bar is sigma_hat.
    mu_hat = F_hat.mean(dim=1, keepdim=True)  # (draws, 1, D)
    sigma_hat = ((F_hat - mu_hat) * F_bar).mean(dim=1, keepdim=True)  # (draws, 1, D)
    torch.testing.assert_close(F_hat, sigma_hat * F_bar + mu_hat, atol=1e-4, rtol=1e-4)

    # sigma_hat ~ N(1, lambda sigma) and mu_hat ~ N(mu, lambda sigma), per channel, on 20000 draws:
    # standard errors of the mean are about 0.7% of the spread, of the std about 0.5%.
    spread = lam * sigma  # (1, 1, D)
    assert ((sigma_hat.mean(dim=0) - 1.0) / spread).abs().max().item() < 0.03
    assert (sigma_hat.std(dim=0) / spread - 1.0).abs().max().item() < 0.03
    assert ((mu_hat.mean(dim=0) - mu) / spread).abs().max().item() < 0.03
    assert (mu_hat.std(dim=0) / spread - 1.0).abs().max().item() < 0.03
    # So F_hat is on the whitened scale: per channel its token std is |sigma_hat|, centred on 1, not sigma.
    torch.testing.assert_close(F_hat.std(dim=1, unbiased=False), sigma_hat.abs().squeeze(1), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_uncertainty_mean_preserving_scales_the_features_own_sigma(lam):
    draws = 4000
    F_i = tokens(batch=1).expand(draws, -1, -1).contiguous()  # one sample perturbed `draws` times
    strategy = build("uncertainty_mean_preserving", probability=1.0, uncertainty_scale=lam).train()
    F_hat = strategy.perturb_feature(F_i)
    mu, sigma = per_sample_statistics(F_i[:1])  # (1, 1, D)

    # F_hat = s * (F - mu) + mu_hat, so its token mean is mu_hat and its deviation from it is s * (F - mu).
    mu_hat = F_hat.mean(dim=1, keepdim=True)  # (draws, 1, D)
    s = ((F_hat - mu_hat) / (F_i - mu)).mean(dim=1, keepdim=True)  # (draws, 1, D)
    assert torch.allclose(F_hat, s * (F_i - mu) + mu_hat, atol=1e-4)

    assert s.mean().item() == pytest.approx(1.0, abs=0.03)  # scale factor has mean 1
    assert s.std().item() == pytest.approx(lam, rel=0.05)
    shift = (mu_hat - mu) / sigma  # per channel, in units of that channel's sigma
    assert shift.mean().abs().item() < 0.03
    assert torch.allclose(shift.std(dim=0), torch.full_like(shift.std(dim=0), lam), rtol=0.1)
    # Unbiased: averaged over draws, the perturbed feature is the feature.
    error = (F_hat.mean(dim=0, keepdim=True) - F_i[:1]) / sigma
    assert error.abs().max().item() < 0.15 * lam + 0.01


@pytest.mark.parametrize("key", UNCERTAINTY_KEYS)
def test_uncertainty_perturbs_about_probability_of_the_samples_and_keeps_the_rest_exactly(key):
    batch = 4000
    F_i = tokens(batch=batch)
    strategy = build(key, probability=0.1).train()
    F_hat = strategy.perturb_feature(F_i)
    changed = (F_hat != F_i).flatten(1).any(dim=1)  # (B,)
    unchanged = (F_hat == F_i).flatten(1).all(dim=1)
    assert torch.equal(changed, ~unchanged)  # a sample is either re-sampled as a whole or kept bit-for-bit
    assert changed.float().mean().item() == pytest.approx(0.1, abs=0.015)


@pytest.mark.parametrize("key", UNCERTAINTY_KEYS)
@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_uncertainty_probability_bounds(key, probability):
    F_i = tokens(batch=64)
    changed = (build(key, probability=probability).train().perturb_feature(F_i) != F_i).flatten(1).any(1)
    assert changed.all().item() if probability == 1.0 else not changed.any().item()


@pytest.mark.parametrize("key", UNCERTAINTY_KEYS)
def test_uncertainty_uses_the_global_rng_without_a_generator(key):
    strategy = NOISE_STRATEGIES.get(key)(NoiseConfig(probability=1.0)).train()
    F_i = tokens()
    torch.manual_seed(11)
    a = strategy.perturb_feature(F_i)
    torch.manual_seed(11)
    assert torch.equal(a, strategy.perturb_feature(F_i))
    assert not torch.equal(a, strategy.perturb_feature(F_i))
