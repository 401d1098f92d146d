from __future__ import annotations

import numpy as np
import pytest
import torch

from arlon.data.video_io import uint8_to_video_tensor
from arlon.pipelines.arlon import ArlonPipeline, BaselinePipeline
from arlon.pipelines.components import build_components
from arlon.pipelines.long_video import LongVideoPipeline, plan_segments
from arlon import weights
from arlon.errors import ConfigError, MissingWeightsError
from arlon.presets import paper, tiny


@pytest.fixture(scope="module")
def components():
    return build_components(tiny(), random_init=True)


def test_arlon_output_shapes(components):
    cfg = components.config
    out = ArlonPipeline(components)(["a red circle moves left"], seed=3, num_steps=2)
    assert out.frames.shape == (1, cfg.video.num_frames, cfg.video.height, cfg.video.width, 3)
    assert out.frames.dtype == np.uint8
    r, o, _ = cfg.ar_vq.compression
    C, T, H, W = out.latents.shape[1:]
    assert out.codes.shape == (1, T // r, H // o, W // o)


def test_fixed_seed_gives_identical_video(components):
    pipe = ArlonPipeline(components)
    a = pipe(["a blue square bounces"], seed=7, num_steps=2)
    b = pipe(["a blue square bounces"], seed=7, num_steps=2)
    c = pipe(["a blue square bounces"], seed=8, num_steps=2)
    assert np.array_equal(a.frames, b.frames)
    assert torch.equal(a.codes, b.codes)
    assert not torch.equal(a.latents, c.latents)


def test_untrained_injector_equals_baseline(components):
    # Every fusion starts with a zero gate, so an untrained ARLON denoises exactly like the baseline.
    arlon = ArlonPipeline(components)(["a green triangle"], seed=1, num_steps=2)
    base = BaselinePipeline(components)(["a green triangle"], seed=1, num_steps=2)
    assert base.codes is None
    assert torch.equal(arlon.latents, base.latents)


def test_given_codes_and_reference_video(components):
    cfg = components.config
    pipe = ArlonPipeline(components)
    first = pipe(["a red circle"], seed=0, num_steps=1)
    again = pipe(["a red circle"], seed=0, num_steps=1, codes=first.codes)
    assert torch.equal(first.latents, again.latents)
    video = uint8_to_video_tensor(first.frames[0])[None]  # (1, 3, T, H, W)
    conditioned = pipe(["a red circle"], seed=0, num_steps=1, reference_video=video)
    assert conditioned.frames.shape == first.frames.shape
    with pytest.raises(ConfigError):
        pipe(["x"], codes=first.codes, reference_video=video)


def test_long_video_and_progressive_prompts(components):
    cfg = components.config
    pipe = LongVideoPipeline(components)
    out = pipe(["a red circle moves right", "then it turns blue"], frames_per_prompt=24, seed=0, num_steps=1)
    assert out.frames.shape[1] == 48
    assert out.frames.shape[2:] == (cfg.video.height, cfg.video.width, 3)
    r = cfg.ar_vq.compression[0]
    assert out.codes.shape[1] * r == out.latents.shape[2]


def test_plan_segments_tiles_the_timeline():
    plan = plan_segments(total_latent_frames=20, segment_frames=8, overlap=2, align=2)
    assert plan.starts == (0, 6, 12)
    assert plan.total_frames == 20
    with pytest.raises(ConfigError):
        plan_segments(20, 8, 3, 2)


def test_missing_checkpoints_is_a_clear_error(monkeypatch, tmp_path):
    with pytest.raises(MissingWeightsError, match="--checkpoint"):
        build_components(paper())
    # The tiny preset falls back to the package's shipped checkpoints, and says so when there are none.
    monkeypatch.setitem(weights.BUNDLED_DIRS, "tiny", tmp_path / "no-weights")
    with pytest.raises(MissingWeightsError, match="--checkpoint"):
        build_components(tiny())


def test_bf16_pipeline_runs_on_cpu():
    components = build_components(tiny(), random_init=True, dtype=torch.bfloat16)
    assert components.dtype == torch.bfloat16
    out = ArlonPipeline(components)(["a yellow diamond grows"], seed=0, num_steps=2)
    assert out.frames.shape[1:] == (16, 32, 32, 3)
    assert torch.isfinite(out.latents.float()).all()


def test_baseline_only_components_skip_the_ar_side():
    components = build_components(tiny(), random_init=True, baseline_only=True)
    assert components.ar is None and components.injector is None
    assert BaselinePipeline(components)(["a cat"], seed=0, num_steps=1).frames.shape[1] == 16
    with pytest.raises(ConfigError, match="baseline_only"):
        ArlonPipeline(components)
