from __future__ import annotations

import dataclasses

import pytest

from arlon.config import ArlonConfig
from arlon.errors import ConfigError
from arlon.presets import PRESETS, get_preset, paper, tiny
from arlon.registry import Registry


@pytest.mark.parametrize("name", PRESETS.keys())
def test_presets_validate_and_round_trip(name):
    cfg = get_preset(name).validate()
    again = ArlonConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.hash() == cfg.hash()


def test_paper_sizes_match_the_paper():
    cfg = paper()
    assert (cfg.ar.n_layer, cfg.ar.n_head, cfg.ar.n_embd, cfg.ar.n_ffn, cfg.ar.dropout) == (12, 16, 1024, 4096, 0.1)
    assert (cfg.ar_vq.codebook_size, cfg.ar_vq.code_dim, cfg.ar_vq.compression) == (2048, 256, (4, 8, 8))
    assert cfg.dit_vq.compression == (4, 16, 16)
    assert (cfg.backbone.hidden_size, cfg.backbone.depth, cfg.backbone.num_heads) == (1152, 28, 16)


def test_tiny_keeps_28_block_pairs():
    assert tiny().backbone.depth == paper().backbone.depth == 28


def test_hash_changes_with_any_field():
    cfg = tiny()
    other = dataclasses.replace(cfg, injection=dataclasses.replace(cfg.injection, layers="first:8"))
    assert cfg.hash() != other.hash()


def test_validate_names_the_field():
    cfg = tiny()
    bad = dataclasses.replace(cfg, noise=dataclasses.replace(cfg.noise, strategy="uncertain"))
    with pytest.raises(ConfigError, match=r"noise.strategy: unknown noise strategy 'uncertain'; did you mean 'uncertainty'"):
        bad.validate()
    with pytest.raises(ConfigError, match="unknown field"):
        ArlonConfig.from_dict({"bogus": 1})


def test_registry_rejects_duplicates_and_suggests():
    reg: Registry = Registry("thing")
    reg.register("alpha")(object)
    with pytest.raises(ValueError):
        reg.register("alpha")(object)
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        reg.get("alpah")
