"""How the condition tokens enter a frozen STDiT3 block pair (paper section 2.2, eq. 5; Table 3 "Fusion Architect").

A `Fusion` sits at the input of one block pair i (boundary 1 in docs/opensora-v1.2-notes.md, 'Injection points')
and mixes the condition tokens f = F_hat_{k+1} of its adapter block into the video tokens x:

- "adaptive_norm" (the paper's choice, eq. 5): alpha, beta, gamma = Linear(SiLU(f)) and
  x + g * alpha * MLP(gamma * LayerNorm(x) + beta), with an extra per-channel gate g initialised to zero.
- "controlnet": trainable copies of the pair's spatial and temporal blocks run on x + proj_in(f);
  their output enters through a zero-initialised projection (ControlNet's zero convolutions).
- "mlp_adapter": x + MLP(f), the MLP's last layer zero-initialised.

Every fusion returns x bit-identically at initialisation (a zero gate or zero output projection), so
an untrained injector leaves Open-Sora v1.2's output unchanged, as Open-Sora's `STDiT3.initialize_weights`
zeroes the output projections of its new temporal blocks. Fresh Linear layers use Open-Sora's init,
xavier-uniform weights and zero biases (the same `initialize_weights`).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlon.models.layers import Mlp
from arlon.models.stdit3 import BlockContext, STDiT3
from arlon.registry import Registry

FUSIONS: Registry[type["Fusion"]] = Registry("fusion")


def xavier_init_(layer: nn.Linear) -> nn.Linear:
    """Open-Sora's Linear init in place: xavier-uniform weight, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def zero_init_(layer: nn.Linear) -> nn.Linear:
    """Zero weight and bias in place: the layer outputs exactly 0 until it is trained."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Fusion(nn.Module, ABC):
    """Fuses the condition tokens into the video tokens at the input of block pair `pair_index`.

    Contract: `forward(x (B, N, D), f (B, N, D), ctx) -> (B, N, D)`, where f is aligned token by token
    with x (same frame-major order). At initialisation the output equals x bit for bit. The fusion
    never keeps a reference to the backbone (whose weights are not the injector's); it reads the sizes,
    and the ControlNet fusion copies the weights it needs.
    """

    def __init__(self, backbone: STDiT3, pair_index: int, mlp_ratio: float):
        super().__init__()
        self.pair_index = pair_index
        self.hidden_size = backbone.cfg.hidden_size
        self.mlp_hidden = int(backbone.cfg.hidden_size * mlp_ratio)

    @abstractmethod
    def forward(self, x: Tensor, f: Tensor, ctx: BlockContext) -> Tensor:
        """x (B, N, D) video tokens, f (B, N, D) condition tokens -> fused x (B, N, D)."""


@FUSIONS.register("adaptive_norm")
class AdaptiveNormFusion(Fusion):
    """Gated adaptive normalisation, eq. 5: x + g * alpha * MLP(gamma * LN(x) + beta).

    alpha, beta, gamma = Linear(SiLU(f)) split in three, each (B, N, D), so the modulation is per token
    (unlike the backbone's per-sample adaLN). gamma multiplies LN(x) directly as written in eq. 5, not
    as (1 + gamma) like `t2i_modulate`. g (D,) is the paper's "extra gated layer, initialized to zero".
    LN has no affine and eps 1e-6, like the backbone's norms; the MLP is D -> r*D -> D with tanh-GELU.
    """

    def __init__(self, backbone: STDiT3, pair_index: int, mlp_ratio: float):
        super().__init__(backbone, pair_index, mlp_ratio)
        dim = self.hidden_size
        self.modulation = xavier_init_(nn.Linear(dim, 3 * dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(dim, self.mlp_hidden)
        xavier_init_(self.mlp.fc1)
        xavier_init_(self.mlp.fc2)
        # Only the gate starts at zero: a zero alpha would also zero the gate's gradient, and nothing would learn.
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, f: Tensor, ctx: BlockContext) -> Tensor:
        alpha, beta, gamma = self.modulation(F.silu(f)).chunk(3, dim=-1)  # each (B, N, D)
        fused = alpha * self.mlp(gamma * self.norm(x) + beta)  # (B, N, D)
        return x + self.gate * fused


@FUSIONS.register("controlnet")
class ControlNetFusion(Fusion):
    """ControlNet on one block pair: h = temporal_copy(spatial_copy(x + proj_in(f))); x + proj_out(h).

    The copies start from the frozen backbone's `spatial_blocks[i]` and `temporal_blocks[i]` weights and
    are trainable. proj_in and proj_out are zero-initialised: at first the copies see x alone, and their
    output does not reach the backbone until proj_out has learnt.
    """

    def __init__(self, backbone: STDiT3, pair_index: int, mlp_ratio: float):
        super().__init__(backbone, pair_index, mlp_ratio)
        dim = self.hidden_size
        self.proj_in = zero_init_(nn.Linear(dim, dim))
        self.spatial_block = copy.deepcopy(backbone.spatial_blocks[pair_index]).requires_grad_(True)
        self.temporal_block = copy.deepcopy(backbone.temporal_blocks[pair_index]).requires_grad_(True)
        self.proj_out = zero_init_(nn.Linear(dim, dim))

    def forward(self, x: Tensor, f: Tensor, ctx: BlockContext) -> Tensor:
        h = self.spatial_block(x + self.proj_in(f), ctx)  # (B, N, D)
        h = self.temporal_block(h, ctx)  # (B, N, D)
        return x + self.proj_out(h)


@FUSIONS.register("mlp_adapter")
class MlpAdapterFusion(Fusion):
    """Additive adapter: x + MLP(f), MLP = D -> r*D -> D with tanh-GELU and a zero-initialised last layer."""

    def __init__(self, backbone: STDiT3, pair_index: int, mlp_ratio: float):
        super().__init__(backbone, pair_index, mlp_ratio)
        dim = self.hidden_size
        self.mlp = Mlp(dim, self.mlp_hidden)
        xavier_init_(self.mlp.fc1)
        zero_init_(self.mlp.fc2)

    def forward(self, x: Tensor, f: Tensor, ctx: BlockContext) -> Tensor:
        return x + self.mlp(f)
