from __future__ import annotations

import numpy as np
import pytest
import torch

from arlon.data.video_io import uint8_to_video_tensor
from arlon.pipelines.arlon import ArlonPipeline, BaselinePipeline, encode_prompts
from arlon.pipelines.components import build_components
from arlon.pipelines.long_video import LongVideoPipeline, SegmentStore, plan_segments
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
    out = pipe([("a red circle moves right", 24), ("a blue circle moves down", 24)], seed=0, num_steps=1)
    assert out.frames.shape[1] == 48
    assert out.frames.shape[2:] == (cfg.video.height, cfg.video.width, 3)
    r = cfg.ar_vq.compression[0]
    assert out.codes.shape[1] * r == out.latents.shape[2]
    # segments tile the video: each one's new frames start where the previous one's end
    assert out.segments[0][0] == 0 and out.segments[-1][1] == 48
    assert all(a[1] == b[0] for a, b in zip(out.segments, out.segments[1:]))


def test_progressive_segments_take_the_prompt_of_their_part(components, monkeypatch):
    import arlon.pipelines.long_video as long_video

    texts = ["a red circle moves right", "a blue square moves down"]
    expected = [encode_prompts(components, [t]).y for t in texts]
    used = []
    real = long_video.denoise

    def spy(c, prompt, *args, **kwargs):
        used.append(next(i for i, y in enumerate(expected) if torch.equal(y, prompt.y)))
        return real(c, prompt, *args, **kwargs)

    monkeypatch.setattr(long_video, "denoise", spy)
    out = LongVideoPipeline(components)([(texts[0], 32), (texts[1], 32)], seed=0, num_steps=1)
    boundary = 32
    wanted = [0 if first_new < boundary else 1 for first_new, _ in out.segments]
    assert used == wanted and used[0] == 0 and used[-1] == 1


def test_long_video_never_samples_past_the_trained_ar_length(components, monkeypatch):
    # The AR model and the latent VQ decoder only ever see windows as long as a training clip.
    t_trained = components.ar_trained_grid[0]
    ar_grids, decoded = [], []
    real_generate, real_decode = components.ar.generate, components.ar_vq.decode
    monkeypatch.setattr(components.ar, "generate", lambda *a, grid, **k: ar_grids.append(grid) or real_generate(*a, grid=grid, **k))
    monkeypatch.setattr(components.ar_vq, "decode", lambda codes: decoded.append(codes.shape[1]) or real_decode(codes))
    cfg = components.config
    frames = 4 * cfg.video.num_frames  # several AR windows and DiT segments
    out = LongVideoPipeline(components)([("a green triangle moves left", frames)], seed=2, num_steps=1)
    assert len(ar_grids) > 2 and out.codes.shape[1] > 2 * t_trained
    assert max(grid[0] for grid in ar_grids) <= t_trained
    assert decoded and max(decoded) <= t_trained
    # with learned positions, the same windows keep every slot inside the rows training reached
    slots = max(grid[0] * (grid[1] * grid[2] + 1) + 1 for grid in ar_grids)
    assert slots <= t_trained * (components.ar_trained_grid[1] * components.ar_trained_grid[2] + 1) + 1


def test_seams_carry_the_previous_segments_last_latents(components, tmp_path):
    store = SegmentStore(tmp_path / "video")
    out = LongVideoPipeline(components)([("a white diamond bounces", 48)], seed=4, num_steps=1, store=store)
    plan = out.plan
    assert len(plan.starts) >= 3
    for k in range(1, len(plan.starts)):
        before, after = store.segment(k - 1), store.segment(k)
        shift = plan.starts[k] - plan.starts[k - 1]
        assert torch.equal(after[:, :, : plan.overlap], before[:, :, shift : shift + plan.overlap])
        assert torch.equal(out.latents[:, :, plan.starts[k] : plan.starts[k] + plan.segment_frames], after)


@pytest.mark.parametrize("use_injection", [True, False])
def test_interrupted_long_video_resumes_bit_identical(components, tmp_path, monkeypatch, use_injection):
    parts = [("a red circle moves right", 16), ("a red circle moves up", 16)]  # three segments
    pipe = LongVideoPipeline(components, use_injection=use_injection)
    whole = pipe(parts, seed=5, num_steps=1)
    store = SegmentStore(tmp_path / "video")
    saved = []
    real_save = store.save_segment

    def killed_after_two(index, latents):
        if len(saved) == 2:
            raise KeyboardInterrupt  # the process dies while segment 2 is in flight
        saved.append(index)
        real_save(index, latents)

    monkeypatch.setattr(store, "save_segment", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        pipe(parts, seed=5, num_steps=1, store=store)
    monkeypatch.setattr(store, "save_segment", real_save)
    resumed = pipe(parts, seed=5, num_steps=1, store=store)
    assert resumed.segments_computed == len(whole.plan.starts) - 2
    assert np.array_equal(resumed.frames, whole.frames)
    assert torch.equal(resumed.latents, whole.latents)
    # a store left by another request is not taken for this one
    other = pipe(parts, seed=6, num_steps=1, store=store)
    assert other.segments_computed == len(whole.plan.starts)


def test_baseline_long_video_uses_the_same_segments():
    components = build_components(tiny(), random_init=True, baseline_only=True)
    out = LongVideoPipeline(components, use_injection=False)([("a cyan square moves down", 40)], seed=0, num_steps=1)
    assert out.codes is None and out.frames.shape[1] == 40
    with pytest.raises(ConfigError, match="baseline_only"):
        LongVideoPipeline(components)


def test_ar_checkpoint_without_its_trained_length_is_refused(tmp_path):
    import json
    import shutil

    for path in weights.bundled_checkpoint_dir("tiny").glob("*.*"):  # the preset's own files, not variants/
        shutil.copy(path, tmp_path / path.name)
    components = build_components(tiny(), checkpoint_dir=tmp_path)
    assert components.ar_trained_grid == (4, 8, 8)
    manifest = json.loads((tmp_path / "ar.json").read_text())
    del manifest["trained_grid"]
    (tmp_path / "ar.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="trained_grid"):
        LongVideoPipeline(build_components(tiny(), checkpoint_dir=tmp_path))


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


def test_long_video_reference_is_the_ar_plan_arlon_injects(components):
    parts = [("a red circle moves right", 32)]
    arlon = LongVideoPipeline(components)
    out = arlon(parts, seed=3, num_steps=1)
    baseline = LongVideoPipeline(components, use_injection=False)
    layout = baseline.layout(parts)
    codes = baseline.ar_codes(layout, seed=3)  # the baseline's reference: the plan it never sees
    assert torch.equal(codes, out.codes) and layout.plan == out.plan
    reference = baseline.reference_frames(layout, codes)
    assert reference.shape == out.frames.shape and reference.dtype == np.uint8
