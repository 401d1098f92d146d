"""Parameter counts of every component, computed without allocating weights (meta device).

Used by the tests (paper preset against the paper's Table 4) and by the efficiency benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arlon.config import ArlonConfig
from arlon.injection.adapters import SemanticInjector
from arlon.models.ar_transformer import ARTransformer
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.video_vae import build_video_vae

# The paper's Table 4 (appendix A.2), in parameters.
PAPER_TABLE4_PARAMS = {
    "ar": 192e6,
    "latent_vq": 30e6,
    "injector": 92e6,  # trainable DiT parameters (adaptive norm, first 14 layers)
    "backbone": 1.2e9,
    "vae": 384e6,
}


@dataclass(frozen=True)
class ParameterCount:
    total: int
    trainable: int


def _count(module: torch.nn.Module) -> ParameterCount:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return ParameterCount(total, trainable)


def parameter_counts(cfg: ArlonConfig) -> dict[str, ParameterCount]:
    """{component: ParameterCount} for the AR model, both latent VQ-VAEs, the injector, the backbone
    and the video VAE. The backbone counts as frozen (trainable 0), as in ARLON's training."""
    with torch.device("meta"):
        backbone = STDiT3(cfg.backbone)
        backbone.requires_grad_(False)
        injector = SemanticInjector(cfg.injection, cfg.noise, backbone)
        counts = {
            "ar": _count(ARTransformer(cfg.ar, cfg.ar_frame_grid)),
            "ar_vq": _count(LatentVQVAE(cfg.ar_vq)),
            "dit_vq": _count(LatentVQVAE(cfg.dit_vq)),
            "injector": _count(injector),
            "backbone": _count(backbone),
            "vae": _count(build_video_vae(cfg.vae)),
        }
    return counts
