from __future__ import annotations

import pytest

from arlon.errors import ConfigError
from arlon.presets import tiny
from bench.overrides import apply_overrides


def test_overrides_coerce_to_field_types():
    cfg = apply_overrides(tiny(), ["injection.layers=first:8", "flow.cfg_scale=3", "video.num_frames=8", "ar_vq.compression=[1,2,2]"])
    assert cfg.injection.layers == "first:8"
    assert cfg.flow.cfg_scale == 3.0 and isinstance(cfg.flow.cfg_scale, float)
    assert cfg.video.num_frames == 8
    assert cfg.ar_vq.compression == (1, 2, 2)
    # YAML 1.1 reads 3e-3 as a string; a float field still takes it.
    assert apply_overrides(tiny(), ["noise.gaussian_scale=3e-3"]).noise.gaussian_scale == 0.003


@pytest.mark.parametrize(
    "override, message",
    [
        ("injection.layer=first:8", "unknown config field 'injection.layer'"),
        ("video.num_frames=many", "expected an integer"),
        ("injection", "expected KEY=VALUE"),
        ("video=3", "group of fields"),
    ],
)
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(tiny(), [override])
