from __future__ import annotations

import pytest

from arlon.presets import paper
from arlon.sizes import PAPER_TABLE4_PARAMS, parameter_counts


@pytest.fixture(scope="module")
def counts():
    return parameter_counts(paper())


def test_backbone_is_exactly_stdit3_xl2(counts):
    assert counts["backbone"].total == 1_207_643_972
    assert counts["backbone"].trainable == 0  # frozen in ARLON


def test_vae_is_exactly_opensora_v1_2(counts):
    assert counts["vae"].total == 393_341_007


@pytest.mark.parametrize("component, paper_key", [("ar", "ar"), ("ar_vq", "latent_vq"), ("injector", "injector")])
def test_paper_preset_within_25_percent_of_table4(counts, component, paper_key):
    ours, theirs = counts[component].trainable, PAPER_TABLE4_PARAMS[paper_key]
    assert abs(ours - theirs) / theirs <= 0.25, f"{component}: {ours / 1e6:.1f}M vs paper {theirs / 1e6:.0f}M"
