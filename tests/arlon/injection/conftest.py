from __future__ import annotations

import dataclasses
from typing import Callable

import pytest
import torch

from arlon.models.stdit3 import STDiT3
from arlon.presets import tiny

DEPTH = 4  # block pairs of the test backbone


@pytest.fixture(scope="module")
def backbone() -> STDiT3:
    """tiny() backbone cut to 4 pairs, every weight random (no zero-initialised temporal outputs), frozen."""
    torch.manual_seed(0)
    model = STDiT3(dataclasses.replace(tiny().backbone, depth=DEPTH))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def _perturb_zero_parameters(module: torch.nn.Module, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


@pytest.fixture
def perturb_zero_parameters() -> Callable[..., None]:
    """Gives every all-zero parameter (the gates and zero projections) random values, as training would."""
    return _perturb_zero_parameters
