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
- "uncertainty": uncertainty sampling, eq. 7 (Table 3, "Uncertainty Sampling"; the paper follows
  Chen et al. 2022). Per adapter block and per sample, with probability `probability`, the tokens' own
  per-channel statistics mu, sigma are re-sampled: F_hat = s * sigma * F_bar + mu_hat with the whitened
  F_bar = (F - mu) / sigma, s ~ N(1, lambda) and mu_hat ~ N(mu, lambda * sigma), N(mean, std).

Reading of eq. 7. The paper writes sigma_hat ~ N(1, sigma_i) and adds "the mean value of sigma_hat
distribution is set to 1". We take sigma_hat = s * sigma, a multiplicative perturbation of the feature's
own standard deviation whose factor s has mean 1, so that F_hat = s * (F - mu) + mu_hat equals F in
expectation. lambda = `NoiseConfig.uncertainty_scale` (1.0 by default) sets the spread of both draws.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from arlon.config import NoiseConfig
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

    def _randn(self, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        return torch.randn(shape, generator=self.generator, device=like.device, dtype=dtype or like.dtype)

    def _rand(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        return torch.rand(shape, generator=self.generator, device=like.device)


@NOISE_STRATEGIES.register("none")
class NoNoise(NoiseStrategy):
    """No perturbation: the condition reaches the fusions exactly as decoded."""

    def noisy_condition(self, F: Tensor) -> Tensor:
        return F

    def noisy_feature(self, F_i: Tensor) -> Tensor:
        return F_i


@NOISE_STRATEGIES.register("gaussian")
class GaussianNoise(NoiseStrategy):
    """F + N(0, gaussian_scale^2) on the latent condition, every training step; tokens untouched."""

    def noisy_condition(self, F: Tensor) -> Tensor:
        return F + self.cfg.gaussian_scale * self._randn(tuple(F.shape), F)

    def noisy_feature(self, F_i: Tensor) -> Tensor:
        return F_i


@NOISE_STRATEGIES.register("uncertainty")
class UncertaintySampling(NoiseStrategy):
    """Eq. 7 after each adapter block: re-sample per-(sample, channel) mean and std of the tokens.

    Each sample is selected independently with probability `cfg.probability`; unselected samples keep
    F_i exactly. For a selected sample, over its N tokens per channel: mu, sigma = mean, sqrt(var + eps);
    F_bar = (F_i - mu) / sigma; s ~ N(1, lambda), mu_hat ~ N(mu, lambda * sigma), both (B, 1, D);
    F_hat = s * sigma * F_bar + mu_hat. The latent condition itself is not perturbed.
    """

    eps = 1e-6

    def noisy_condition(self, F: Tensor) -> Tensor:
        return F

    def noisy_feature(self, F_i: Tensor) -> Tensor:
        B, _, D = F_i.shape
        scale = self.cfg.uncertainty_scale  # lambda
        is_selected = self._rand((B, 1, 1), F_i) < self.cfg.probability  # (B, 1, 1)

        # Statistics in fp32: a bf16 variance over thousands of tokens loses most of its digits.
        x = F_i.float()
        mu = x.mean(dim=1, keepdim=True)  # (B, 1, D)
        sigma = torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + self.eps)  # (B, 1, D)
        F_bar = (x - mu) / sigma  # (B, N, D) whitened

        s = 1.0 + scale * self._randn((B, 1, D), x, torch.float32)  # sigma_hat = s * sigma, E[s] = 1
        mu_hat = mu + scale * sigma * self._randn((B, 1, D), x, torch.float32)  # mu_hat ~ N(mu, lambda sigma)
        F_hat = (s * sigma * F_bar + mu_hat).to(F_i.dtype)  # (B, N, D)
        return torch.where(is_selected, F_hat, F_i)
