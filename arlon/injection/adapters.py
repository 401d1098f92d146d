"""The semantic injection module: AR condition F -> per-pair fusions in a frozen STDiT3 (paper section 2.2, eq. 4-5).

`SemanticInjector` turns the latent condition F (B, C, T, H, W), decoded by the latent VQ-VAE onto the
DiT latent grid (eq. 3), into an `Injection` for `STDiT3.forward(..., injection=...)`:

1. noise.perturb_condition(F)          (training only; "gaussian" acts here)
2. F_0 = patch_embed(F)                (B, N, D), the same Conv3d patchify and end padding as the
                                        backbone's x_embedder, so token n of F_0 is token n of x
3. for k, pair i in enumerate(layers): F_{k+1} = Adapter_k(LayerNorm(F_k)) + F_k         (eq. 4)
                                        F_hat_{k+1} = noise.perturb_feature(F_{k+1})    (eq. 7)
4. at the input of block pair i:       x = Fusion_k(x, F_hat_{k+1}, ctx)                (eq. 5)

So one residual adapter block and one fusion per injected pair: `first:14` gives 14 of each. Following
Figure 3 and eq. 5 ("F_i is processed with an uncertainty sampling to get F_hat_i, which is projected
..."), the perturbed F_hat only feeds the fusion; the adapter chain continues from the clean F_{k+1}.

The backbone stays frozen: the training recipe (arlon/training/injection.py) freezes it and optimises
`trainable_parameters()`. The injector never changes the backbone's `requires_grad` and does not hold
it as a submodule, so its state_dict holds only injector weights (the ControlNet fusion's block copies
are injector weights). Sizes (paper Table 4, 92M trainable at adaptive_norm, first:14, r = 0.5): each
injected pair costs about 5 D^2 (adapter D^2, modulation 3 D^2, fusion MLP D^2).
"""

from __future__ import annotations

from torch import Tensor, nn

from arlon.config import InjectionConfig, NoiseConfig
from arlon.errors import ConfigError
from arlon.injection.fusion import FUSIONS, Fusion, xavier_init_
from arlon.injection.noise import NOISE_STRATEGIES
from arlon.injection.placement import parse_layers
from arlon.models.stdit3 import BlockContext, PatchEmbed3D, STDiT3


class AdapterBlock(nn.Module):
    """Residual MLP block of eq. 4: F_{k+1} = Adapter_k(LayerNorm(F_k)) + F_k, Adapter = Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = xavier_init_(nn.Linear(dim, hidden))
        self.act = nn.GELU()
        self.fc2 = xavier_init_(nn.Linear(hidden, dim))

    def forward(self, F_k: Tensor) -> Tensor:
        """(B, N, D) -> (B, N, D)."""
        return F_k + self.fc2(self.act(self.fc1(self.norm(F_k))))


class PreparedInjection:
    """The `Injection` callable for one condition: (pair_index, x (B, N, D), ctx) -> x.

    Holds the condition tokens F_hat_{k+1} of every injected pair, computed once, so a sampler reuses
    them at every denoising step. Pairs without a fusion return x itself. When x's batch is a multiple
    of the condition's (classifier-free guidance stacks [cond; null]), the tokens are repeated along
    the batch so both halves see the same condition.
    """

    def __init__(self, fusions: dict[int, Fusion], conditions: dict[int, Tensor]):
        self.fusions = fusions
        self.conditions = conditions

    @property
    def pairs(self) -> tuple[int, ...]:
        return tuple(sorted(self.fusions))

    def __call__(self, pair_index: int, x: Tensor, ctx: BlockContext) -> Tensor:
        fusion = self.fusions.get(pair_index)
        if fusion is None:
            return x
        return fusion(x, self.match_batch(self.conditions[pair_index], x), ctx)

    @staticmethod
    def match_batch(f: Tensor, x: Tensor) -> Tensor:
        if f.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"condition tokens {tuple(f.shape)} do not match the video tokens {tuple(x.shape)}: "
                "F must be a latent (C, T, H, W) on the same grid as the DiT input x"
            )
        if x.shape[0] == f.shape[0]:
            return f
        if x.shape[0] % f.shape[0]:
            raise ValueError(f"video batch {x.shape[0]} is not a multiple of the condition batch {f.shape[0]}")
        return f.repeat(x.shape[0] // f.shape[0], 1, 1)  # (B_x, N, D), [cond; null] order kept


class SemanticInjector(nn.Module):
    """Patch embedding + adapter stack + one fusion per injected block pair (paper section 2.2).

    `forward(F)` with F (B, C, T, H, W) on the DiT latent grid returns a `PreparedInjection` to pass
    as `STDiT3.forward(..., injection=...)`. Training-time noise follows `self.training`.
    """

    def __init__(self, cfg: InjectionConfig, noise: NoiseConfig, backbone: STDiT3):
        super().__init__()
        if cfg.adapter_mlp_ratio <= 0:
            raise ConfigError(f"injection.adapter_mlp_ratio must be > 0, got {cfg.adapter_mlp_ratio}")
        bb = backbone.cfg
        dim = bb.hidden_size
        self.cfg = cfg
        self.layers = parse_layers(cfg.layers, bb.depth)
        fusion_class = FUSIONS.get(cfg.fusion)

        self.noise = NOISE_STRATEGIES.get(noise.strategy)(noise)
        self.patch_embed = PatchEmbed3D(bb.patch_size, bb.in_channels, dim)
        # F is a coarse copy of the latent x, so the backbone's own patch embedding is a meaningful start:
        # F_0 begins in the token space the frozen blocks were trained on. It is trained from there.
        self.patch_embed.load_state_dict(backbone.x_embedder.state_dict())
        hidden = int(dim * cfg.adapter_mlp_ratio)
        self.adapters = nn.ModuleList([AdapterBlock(dim, hidden) for _ in self.layers])
        # Keyed by the backbone pair index, so state_dict names say where each fusion acts.
        self.fusions = nn.ModuleDict(
            {str(pair): fusion_class(backbone, pair, cfg.adapter_mlp_ratio) for pair in self.layers}
        )

    def forward(self, F: Tensor) -> PreparedInjection:
        """F (B, C, T, H, W) latent condition -> the injection callable for one backbone forward."""
        F = self.noise.perturb_condition(F)
        F_k = self.patch_embed(F.to(self.patch_embed.proj.weight.dtype))  # (B, N, D): F_0
        conditions = {}
        for pair, adapter in zip(self.layers, self.adapters):
            F_k = adapter(F_k)  # (B, N, D): F_{k+1}, eq. 4
            conditions[pair] = self.noise.perturb_feature(F_k)  # F_hat_{k+1}, eq. 7, for the fusion only
        fusions = {pair: self.fusions[str(pair)] for pair in self.layers}
        return PreparedInjection(fusions, conditions)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the injection training optimises (all of the injector's own parameters)."""
        return [p for p in self.parameters() if p.requires_grad]

    def num_parameters(self, trainable_only: bool = True) -> int:
        params = self.trainable_parameters() if trainable_only else list(self.parameters())
        return sum(p.numel() for p in params)
