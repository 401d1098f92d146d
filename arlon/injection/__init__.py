"""Semantic injection of the AR condition into the frozen STDiT3 (paper sections 2.2-2.3).

The imports are explicit so that importing the package fills the FUSIONS and NOISE_STRATEGIES registries.
"""

from __future__ import annotations

from arlon.injection import adapters, fusion, noise, placement
from arlon.injection.adapters import AdapterBlock, PreparedInjection, SemanticInjector
from arlon.injection.fusion import FUSIONS, Fusion
from arlon.injection.noise import NOISE_STRATEGIES, NoiseStrategy
from arlon.injection.placement import parse_layers

__all__ = [
    "FUSIONS",
    "NOISE_STRATEGIES",
    "AdapterBlock",
    "Fusion",
    "NoiseStrategy",
    "PreparedInjection",
    "SemanticInjector",
    "adapters",
    "fusion",
    "noise",
    "parse_layers",
    "placement",
]
