"""Noise-resilient training of the semantic injector (paper section 2.3, eq. 7; ablation in 4.3, Table 3).

At inference the condition F comes from AR-predicted codes, which are noisier than the teacher-forced
codes seen in training. A `NoiseStrategy` perturbs the condition during training only, so the DiT learns
to tolerate that gap. It has two hooks, called by `SemanticInjector`:

- `perturb_condition(F)`: once on the latent condition F (B, C, T, H, W), before the patch embedding.
- `perturb_feature(F_i)`: after every adapter block, on the condition tokens F_i (B, N, D).

Both are the identity in eval mode (`self.training` False). The strategies (registry keys):

- "none": no perturbation.
- "gaussian": F + N(0, gaussian_scale^2), on the latent condition at every training step
  (Table 3, "Gaussian Noise").
- "uncertainty": uncertainty sampling as eq. 7 writes it (Table 3, "Uncertainty Sampling"). Per adapter
  block and per sample, with probability `probability`, the tokens are whitened with their own
  per-channel statistics and given a sampled scale and shift: F_hat = sigma_hat * F_bar + mu_hat with
  F_bar = (F - mu) / sigma, sigma_hat ~ N(1, sigma), mu_hat ~ N(mu, sigma), N(mean, std).
- "uncertainty_mean_preserving": this repository's earlier reading of eq. 7, kept for comparison and
  because the tiny preset's shipped injector was trained with it: sigma_hat = s * sigma with s ~ N(1, 1),
  so F_hat = s * (F - mu) + mu_hat keeps the feature's scale and equals F in expectation.

docs/noise-strategies.md sets the two readings side by side and says which statistics each uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from arlon.config import NoiseConfig
from arlon.global_batch import per_sample
from arlon.registry import Registry

NOISE_STRATEGIES: Registry[type["NoiseStrategy"]] = Registry("noise strategy")


class NoiseStrategy(nn.Module, ABC):
    """Training-time perturbation of the injection condition; the identity in eval mode.

    Contract: `perturb_condition` maps F (B, C, T, H, W) to the same shape and dtype;
    `perturb_feature` maps tokens F_i (B, N, D) to the same shape and dtype. Neither has parameters.
    Random draws use torch's default generator of the tensor's device, or `self.generator` when a test
    sets one (it must live on the tensor's device).
    """

    def __init__(self, cfg: NoiseConfig):
        super().__init__()
        self.cfg = cfg
        self.generator: torch.Generator | None = None

    def perturb_condition(self, F: Tensor) -> Tensor:
        """F (B, C, T, H, W) -> same; perturbed only in training."""
        return self.noisy_condition(F) if self.training else F

    def perturb_feature(self, F_i: Tensor) -> Tensor:
        """F_i (B, N, D) -> same; perturbed only in training."""
        return self.noisy_feature(F_i) if self.training else F_i

    @abstractmethod
    def noisy_condition(self, F: Tensor) -> Tensor:
        """The training-time perturbation of the latent condition F (B, C, T, H, W)."""

    @abstractmethod
    def noisy_feature(self, F_i: Tensor) -> Tensor:
        """The training-time perturbation of the tokens F_i (B, N, D) after an adapter block."""

    # Every draw has one row per sample (shape[0] = B), drawn for the whole global batch of a split
    # training step (arlon/global_batch.py).
    def _randn(self, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        draw = lambda n: torch.randn((n, *shape[1:]), generator=self.generator, device=like.device, dtype=dtype or like.dtype)  # noqa: E731
        return per_sample(draw, shape[0])

    def _rand(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        return per_sample(lambda n: torch.rand((n, *shape[1:]), generator=self.generator, device=like.device), shape[0])


@NOISE_STRATEGIES.register("none")
class NoNoise(NoiseStrategy):
    """No perturbation: the condition reaches the fusions exactly as decoded."""

    def noisy_condition(self, F: Tensor) -> Tensor:
        return F

    def noisy_feature(self, F_i: Tensor) -> Tensor:
        return F_i


@NOISE_STRATEGIES.register("gaussian")
class GaussianNoise(NoiseStrategy):
    """F + N(0, gaussian_scale^2) on the latent condition, every training step; tokens untouched.

    The paper names no scale for its "Gaussian Noise" row (section 4.3, Table 3: "adding random noise to
    the latent feature F"). The default 0.1 is this repository's choice, not the paper's: F decodes DiT
    latents, which the VAE normalises to about unit variance per channel (Open-Sora v1.2's latent
    shift/scale, `arlon.models.video_vae`), so 0.1 is about a tenth of F's own spread. Set
    `noise.gaussian_scale` to try others.
    """

    def noisy_condition(self, F: Tensor) -> Tensor:
        return F + self.cfg.gaussian_scale * self._randn(tuple(F.shape), F)

    def noisy_feature(self, F_i: Tensor) -> Tensor:
        return F_i


class _FeatureStatisticsSampling(NoiseStrategy):
    """Shared by both readings of eq. 7: which samples are re-sampled, and the statistics they use.

    mu and sigma are per sample and per channel, over the N tokens (B, 1, D). Eq. 7 does not say over
    which dimensions; this is DSU's choice (Li et al. 2022, "Uncertainty Modeling for
    Out-of-Distribution Generalization": channel-wise mean and std over the spatial positions), and
    ARLON's tokens are its positions. Each sample is selected independently with probability
    `cfg.probability` ("applied randomly after each adapter block", section 2.3, 0.1 in section 4.1);
    unselected samples keep F_i exactly. The latent condition itself is not perturbed.
    """

    eps = 1e-6

    def noisy_condition(self, F: Tensor) -> Tensor:
        return F

    def noisy_feature(self, F_i: Tensor) -> Tensor:
        B, _, D = F_i.shape
        is_selected = self._rand((B, 1, 1), F_i) < self.cfg.probability  # (B, 1, 1)
        # Statistics in fp32: a bf16 variance over thousands of tokens loses most of its digits.
        x = F_i.float()
        mu = x.mean(dim=1, keepdim=True)  # (B, 1, D)
        sigma = torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + self.eps)  # (B, 1, D)
        F_bar = (x - mu) / sigma  # (B, N, D) whitened
        F_hat = self.resample(F_bar, mu, sigma).to(F_i.dtype)  # (B, N, D)
        return torch.where(is_selected, F_hat, F_i)

    @abstractmethod
    def resample(self, F_bar: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        """F_hat (B, N, D) in fp32 from the whitened tokens F_bar and their statistics mu, sigma (B, 1, D)."""


@NOISE_STRATEGIES.register("uncertainty")
class UncertaintySampling(_FeatureStatisticsSampling):
    """Eq. 7 as written: F_hat = sigma_hat * F_bar + mu_hat, sigma_hat ~ N(1, sigma), mu_hat ~ N(mu, sigma).

    Both spreads are the channel's own sigma, as eq. 7 says and as Chen et al. (2022, "Composed Image
    Retrieval with Text Feedback via Multi-grained Uncertainty Regularization", the work eq. 7 follows)
    implement it: their augmenter draws the scale from Normal(1, std) and the shift from Normal(mean, std)
    and applies them to the instance-normalised feature. DSU instead spreads its draws by the std of
    mu and sigma across the batch; the paper's eq. 7 does not, so neither do we. sigma_hat is centred on
    1, not on sigma ("the mean value of sigma_hat distribution is set to 1"): F_hat's per-channel spread
    is |sigma_hat|, the whitened scale of F_bar on average, while mu_hat restores the feature's location.
    lambda = `cfg.uncertainty_scale` multiplies both spreads (1.0, eq. 7 itself, by default).
    """

    def resample(self, F_bar: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        spread = self.cfg.uncertainty_scale * sigma  # (B, 1, D)
        sigma_hat = 1.0 + spread * self._randn(tuple(sigma.shape), sigma, torch.float32)  # ~ N(1, sigma)
        mu_hat = mu + spread * self._randn(tuple(mu.shape), mu, torch.float32)  # ~ N(mu, sigma)
        return sigma_hat * F_bar + mu_hat


@NOISE_STRATEGIES.register("uncertainty_mean_preserving")
class MeanPreservingUncertaintySampling(_FeatureStatisticsSampling):
    """A reading of eq. 7 that keeps the feature's scale: F_hat = s * sigma * F_bar + mu_hat.

    s ~ N(1, lambda), mu_hat ~ N(mu, lambda * sigma), so F_hat = s * (F - mu) + mu_hat equals F in
    expectation; "the mean value of sigma_hat distribution is set to 1" is read as the mean of the factor
    s on the feature's own sigma. Not eq. 7 as written ("uncertainty" is); the tiny preset's shipped
    injector was trained with it. Its draws and arithmetic are those of the code that trained it: on
    one machine the two train an injector with the same sha256.
    """

    def resample(self, F_bar: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        scale = self.cfg.uncertainty_scale  # lambda
        s = 1.0 + scale * self._randn(tuple(sigma.shape), sigma, torch.float32)  # sigma_hat = s * sigma, E[s] = 1
        mu_hat = mu + scale * sigma * self._randn(tuple(mu.shape), mu, torch.float32)  # mu_hat ~ N(mu, lambda sigma)
        return s * sigma * F_bar + mu_hat
