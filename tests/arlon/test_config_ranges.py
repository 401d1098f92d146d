"""Every numeric field of the configs has a range, checked where the value enters: a config,
a training recipe, the training data."""

from __future__ import annotations

import dataclasses
import re
import types
import typing

import pytest
import torch

from arlon.config import FIELD_RANGES, ArlonConfig, Range, field_range
from arlon.errors import ConfigError
from arlon.presets import tiny
from arlon.training.common import RECIPE_RANGES, RunContext, TrainConfig, run_training
from arlon.training.data import DATA_RANGES, DataConfig

NUMBERS = {int, float}


def _numeric_fields(cls: type) -> list[str]:
    """Fields whose type is a number, a tuple of numbers or an optional number (bools excluded)."""
    names = []
    for name, hint in typing.get_type_hints(cls).items():
        args = set(typing.get_args(hint)) - {type(None), Ellipsis}
        if hint in NUMBERS or (typing.get_origin(hint) in (tuple, typing.Union, types.UnionType) and args and args <= NUMBERS):
            names.append(name)
    return names


def _config_classes(cls: type = ArlonConfig) -> set[type]:
    found = set()
    for f in dataclasses.fields(cls):
        value = getattr(cls(), f.name)
        if dataclasses.is_dataclass(value):
            found |= {type(value)} | _config_classes(type(value))
    return found


def test_every_numeric_field_has_a_range():
    """A new field without a range fails here: add it to FIELD_RANGES / RECIPE_RANGES / DATA_RANGES."""
    for cls in _config_classes():
        assert set(FIELD_RANGES.get(cls, {})) == set(_numeric_fields(cls)), cls.__name__
    assert set(RECIPE_RANGES) == set(_numeric_fields(TrainConfig))
    assert set(DATA_RANGES) == set(_numeric_fields(DataConfig))


@pytest.mark.parametrize(
    "path, bad",
    [
        ("backbone.num_heads", 0),  # was a ZeroDivisionError in the divisibility rule
        ("ar_vq.compression", (2, 0, 1)),
        ("ar_sampling.top_p", 1.5),
        ("ar_sampling.temperature", 0.0),
        ("noise.probability", -0.1),
        ("flow.cfg_scale", float("nan")),
        ("video.fps", 0),
    ],
)
def test_validate_refuses_values_out_of_range_naming_the_field(path, bad):
    cfg = tiny()
    group, name = path.split(".")
    bad_cfg = dataclasses.replace(cfg, **{group: dataclasses.replace(getattr(cfg, group), **{name: bad})})
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)} = .* is out of range: it must be {re.escape(str(field_range(cfg, path)))}$"):
        bad_cfg.validate()


def test_optional_fields_and_ranges_read_well():
    cfg = dataclasses.replace(tiny(), ar_sampling=dataclasses.replace(tiny().ar_sampling, top_k=None, top_p=None))
    assert cfg.validate() is cfg
    assert str(Range(1)) == "at least 1" and str(Range(0, 1, high_open=True)) == "in [0, 1)"
    assert str(Range(0, low_open=True)) == "greater than 0"


def test_a_recipe_of_zero_steps_is_refused_not_trained_as_untrained_weights():
    with pytest.raises(ConfigError, match=r"train.injector.steps = 0 is out of range: it must be at least 1"):
        TrainConfig(steps=0).validate("injector")
    with pytest.raises(ConfigError, match=r"train.vae.beta2 = 1.0 is out of range: it must be in \[0, 1\)"):
        TrainConfig(steps=5, beta2=1.0).validate("vae")
    # The loop itself refuses too: a notebook calling it directly gets no untrained "result".
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="train.mlp.steps = 0"):
        run_training("mlp", model, lambda module, batch, gen: model.weight.sum(), None, TrainConfig(steps=0), RunContext(torch.device("cpu")))


def test_a_data_config_out_of_range_cannot_be_made():
    with pytest.raises(ConfigError, match=r"data.num_train_clips = 0 is out of range"):
        DataConfig(num_train_clips=0)
    with pytest.raises(ConfigError, match=r"data.seed = -1 is out of range"):
        dataclasses.replace(DataConfig(), seed=-1)
