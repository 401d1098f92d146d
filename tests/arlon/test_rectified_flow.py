"""Tests of arlon/rectified_flow.py against Open-Sora v1.2's RFLOW numbers (tests/golden/rflow.json)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arlon.config import BackboneConfig, FlowConfig
from arlon.errors import ConfigError
from arlon.rectified_flow import FRAME_MASK_MODES, STAGE3_FRAME_MASK_RATIOS, FrameMaskGenerator, RectifiedFlow

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
REFERENCE = json.loads((GOLDEN / "rflow.json").read_text())
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "rflow_sample_io.safetensors")


def golden_flow() -> RectifiedFlow:
    return RectifiedFlow(FlowConfig(num_timesteps=1000, use_timestep_transform=True, num_sampling_steps=3, cfg_scale=7.0))


def pixel_kwargs(height: int, width: int, num_frames, dtype: torch.dtype, batch: int):
    """Height, width, num_frames as the reference scripts pass them: (B,) tensors in the kwargs dtype."""
    frames = num_frames if isinstance(num_frames, list) else [num_frames] * batch
    return (
        torch.tensor([height] * batch, dtype=dtype),
        torch.tensor([width] * batch, dtype=dtype),
        torch.tensor(frames, dtype=dtype),
    )


def assert_close_to_golden(ours: torch.Tensor, golden: torch.Tensor, max_factor: float) -> None:
    """|ours - golden| <= max_factor * max|golden| + 1e-5 * |golden| elementwise (golden README)."""
    bound = max_factor * golden.abs().max() + 1e-5 * golden.abs()
    excess = (ours - golden).abs() - bound
    assert (excess <= 0).all(), f"max |diff| {(ours - golden).abs().max():.3e}, max bound {bound.max():.3e}"


# ---------------------------------------------------------------------- time grid


def sampling_table_id(entry: dict) -> str:
    return f"{entry['num_sampling_steps']}steps-{entry['resolution']}-{entry['num_frames_kwarg']}f-{entry['kwargs_dtype']}"


@pytest.mark.parametrize("entry", REFERENCE["sampling_timesteps"]["tables"], ids=sampling_table_id)
def test_sampling_timesteps_match_reference_tables(entry):
    flow = golden_flow()
    height, width, num_frames = pixel_kwargs(
        entry["height"], entry["width"], entry["num_frames_kwarg"], DTYPES[entry["kwargs_dtype"]], batch=2
    )
    timesteps = flow.sampling_timesteps(entry["num_sampling_steps"], height, width, num_frames)
    ours = torch.stack(timesteps)  # (N, B)
    assert ours.dtype == torch.float32 and ours.shape == (entry["num_sampling_steps"], 2)
    golden = torch.tensor(entry["timesteps"])[:, None].expand_as(ours)
    torch.testing.assert_close(ours, golden, rtol=1e-5, atol=0)
    # dt, read off the pure Euler step with a unit velocity.
    nexts = timesteps[1:] + [torch.zeros_like(timesteps[0])]
    dts = [flow.step(torch.zeros(2, 1, 1, 1, 1), torch.ones(2, 1, 1, 1, 1), t, t_next) for t, t_next in zip(timesteps, nexts)]
    torch.testing.assert_close(
        torch.stack(dts).reshape(-1, 2), torch.tensor(entry["dt"])[:, None].expand(-1, 2), rtol=1e-5, atol=1e-7
    )


def test_untransformed_grid():
    for num_steps, golden in REFERENCE["sampling_timesteps"]["untransformed"].items():
        flow = RectifiedFlow(FlowConfig(use_timestep_transform=False))
        ours = torch.cat(flow.sampling_timesteps(int(num_steps), 256, 256, 16))
        assert torch.equal(ours, torch.tensor(golden))


def training_case_id(case: dict) -> str:
    return f"{case['height']}x{case['width']}-{case['num_frames_kwarg']}f-{case['kwargs_dtype']}"


@pytest.mark.parametrize("case", REFERENCE["training_timestep_transform"]["cases"], ids=training_case_id)
def test_training_timestep_transform_matches_reference(case):
    t_in = torch.tensor(case["t_in"])
    height, width, num_frames = pixel_kwargs(
        case["height"], case["width"], case["num_frames_kwarg"], DTYPES[case["kwargs_dtype"]], batch=len(t_in)
    )
    ours = golden_flow().timestep_transform(t_in, height, width, num_frames, scale=1.0)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, torch.tensor(case["t_out"]), rtol=1e-5, atol=1e-6)


def test_training_timestep_transform_scale_and_mixed_batch():
    flow = golden_flow()
    for case in REFERENCE["training_timestep_transform"]["transform_scale_2"]:
        t_in = torch.tensor(case["t_in"])
        height, width, num_frames = pixel_kwargs(case["height"], case["width"], case["num_frames_kwarg"], torch.float32, len(t_in))
        ours = flow.timestep_transform(t_in, height, width, num_frames, scale=case["transform_scale"])
        torch.testing.assert_close(ours, torch.tensor(case["t_out"]), rtol=1e-5, atol=1e-6)
    # Only num_frames[0] decides the image case: an image after a video gets t = 0.
    for case in REFERENCE["training_timestep_transform"]["mixed_batch_quirk"]:
        height, width, num_frames = pixel_kwargs(case["height"], case["width"], case["num_frames_kwarg"], torch.float32, 2)
        ours = flow.timestep_transform(torch.tensor(case["t_in"]), height, width, num_frames)
        torch.testing.assert_close(ours, torch.tensor(case["t_out"]), rtol=1e-5, atol=1e-6)


def test_timestep_transform_accepts_python_numbers_and_integer_tensors():
    flow = golden_flow()
    t = torch.tensor([250.0, 500.0])
    expected = flow.timestep_transform(t, torch.tensor([480.0]), torch.tensor([854.0]), torch.tensor([51.0]))
    assert torch.equal(flow.timestep_transform(t, 480, 854, 51), expected)
    assert torch.equal(flow.timestep_transform(t, torch.tensor([480]), torch.tensor([854]), torch.tensor([51])), expected)


def test_zero_frame_factor_is_refused_for_sampling_and_training():
    flow = golden_flow()
    with pytest.raises(ConfigError, match="use_timestep_transform=False"):
        flow.sampling_timesteps(10, 256, 256, 16)
    with pytest.raises(ConfigError, match="frame factor"):
        flow.sample_training_timesteps(2, 256, 256, torch.tensor([51.0, 1.0]))
    with pytest.raises(ValueError, match="num_frames"):
        flow.sampling_timesteps(10, 256, 256, None)
    # Without the shift any length is fine.
    assert len(RectifiedFlow(FlowConfig(use_timestep_transform=False)).sampling_timesteps(4, 32, 32, 16)) == 4


def test_training_timesteps_are_logit_normal_and_shifted():
    plain = RectifiedFlow(FlowConfig(use_timestep_transform=False))
    t = plain.sample_training_timesteps(20000, 256, 256, 17, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and t.dtype == torch.float32 and 0 < t.min() and t.max() < 1000
    assert abs(t.mean().item() - 500) < 5  # sigmoid(N(0, 1)) is symmetric around 1/2
    assert abs((t < 500).float().mean().item() - 0.5) < 0.02
    again = plain.sample_training_timesteps(20000, 256, 256, 17, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    shifted = golden_flow().sample_training_timesteps(20000, 480, 854, 51, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(shifted, golden_flow().timestep_transform(t, 480, 854, 51))
    assert shifted.mean() > 700  # ratio 4.8: mostly high noise levels


def test_add_noise_matches_reference(io):
    ours = golden_flow().add_noise(io["add_noise_x0"], io["add_noise_noise"], io["add_noise_t"])
    torch.testing.assert_close(ours, io["add_noise_out"], rtol=1e-6, atol=1e-6)
    x0 = io["add_noise_x0"]
    assert torch.equal(golden_flow().add_noise(x0, io["add_noise_noise"], torch.zeros(2)), x0)


# ---------------------------------------------------------------------- training loss (toy model)


class RecordingModel:
    """A toy model_fn: output channel-doubled a*x + b*t, recording what it is given."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, x, timestep, y=None, mask=None, x_mask=None, **kwargs):
        self.calls.append(dict(x=x.clone(), timestep=timestep.clone(), y=y, mask=mask, x_mask=x_mask, **kwargs))
        caption = 0.0 if y is None else y.mean(dim=(1, 2, 3))[:, None, None, None, None]
        v = 0.5 * x - 0.3 + 0.001 * timestep[:, None, None, None, None] + caption
        return torch.cat([v, torch.full_like(v, 99.0)], dim=1)  # second half: sigma channels, ignored


def test_training_loss_formula_and_conditioning_frames():
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 4, 5, 3, 3, generator=generator)
    noise = torch.randn(2, 4, 5, 3, 3, generator=generator)
    t = torch.tensor([700.0, 150.0])
    mask = torch.tensor([[False, True, True, True, True], [True, True, False, True, False]])
    flow, model = golden_flow(), RecordingModel()
    kwargs = dict(y=torch.zeros(2, 1, 4, 8), mask=torch.ones(2, 4, dtype=torch.long), fps=torch.tensor([24.0, 24.0]))

    loss = flow.training_loss(model, x0, kwargs, mask=mask, noise=noise, t=t)

    call = model.calls[0]
    assert torch.equal(call["x_mask"], mask) and torch.equal(call["timestep"], t)
    assert torch.equal(call["x"][0, :, 0], x0[0, :, 0]) and torch.equal(call["x"][1, :, 2], x0[1, :, 2])
    x_t = flow.add_noise(x0, noise, t)
    assert torch.equal(call["x"][0, :, 1:], x_t[0, :, 1:])
    squared = (model(call["x"], t, **kwargs)[:, :4] - (x0 - noise)) ** 2
    expected = torch.stack([squared[0][:, 1:].mean(), squared[1][:, [0, 1, 3]].mean()])
    torch.testing.assert_close(loss, expected)

    no_mask = flow.training_loss(model, x0, kwargs, noise=noise, t=t)
    torch.testing.assert_close(no_mask, ((model(x_t, t, **kwargs)[:, :4] - (x0 - noise)) ** 2).mean(dim=(1, 2, 3, 4)))
    assert model.calls[-2]["x_mask"] is None


def test_training_loss_draws_t_and_noise_and_rejects_empty_masks():
    flow, model = golden_flow(), RecordingModel()
    x0 = torch.randn(3, 4, 5, 2, 2)
    kwargs = dict(height=torch.tensor([256.0] * 3), width=torch.tensor([256.0] * 3))
    loss = flow.training_loss(model, x0, kwargs, generator=torch.Generator().manual_seed(0), num_frames=17)
    again = flow.training_loss(model, x0, kwargs, generator=torch.Generator().manual_seed(0), num_frames=17)
    assert loss.shape == (3,) and torch.equal(loss, again)
    with pytest.raises(ValueError, match="num_frames"):
        flow.training_loss(model, x0, kwargs)
    with pytest.raises(ValueError, match="no generated frame"):
        flow.training_loss(model, x0, kwargs, mask=torch.zeros(3, 5, dtype=torch.bool), t=torch.full((3,), 500.0))


# ---------------------------------------------------------------------- sampling loop (model-free)


def sample_inputs(io):
    kwargs = dict(fps=io["sample_fps"], height=io["sample_height"], width=io["sample_width"])
    return io["sample_y"], io["sample_mask"], io["sample_null_y"], kwargs, io["sample_num_frames"]


def test_sampler_first_step_matches_reference_given_the_recorded_model_output(io):
    """Guidance and the Euler update checked with the reference's step-0 model output replayed."""
    y, y_mask, y_null, kwargs, num_frames = sample_inputs(io)
    calls = []

    def replay(x, timestep, y_in, mask=None, x_mask=None, **model_kwargs):
        calls.append(dict(x=x.clone(), timestep=timestep, y=y_in, mask=mask, x_mask=x_mask, kwargs=model_kwargs))
        return io["sample_step0_model_out"] if len(calls) == 1 else torch.zeros_like(io["sample_step0_model_out"])

    golden_flow().sample(replay, io["sample_z0"], y, y_mask, y_null, kwargs, num_frames=num_frames)

    assert len(calls) == 3
    for i, call in enumerate(calls):
        assert call["x"].shape == (4, 4, 5, 8, 12)
        torch.testing.assert_close(call["timestep"], io["sample_step_t"][i], rtol=1e-6, atol=0)
        assert torch.equal(call["y"], torch.cat([y, y_null])) and call["mask"] is y_mask  # mask not doubled
        assert call["x_mask"] is None and set(call["kwargs"]) == {"fps", "height", "width"}
        assert torch.equal(call["x"][:2], call["x"][2:])
    assert torch.equal(calls[0]["x"][:2], io["sample_z0"])
    assert_close_to_golden(calls[1]["x"][:2], io["sample_step_z"][1], 1e-5)


def test_condition_frames_x_mask_per_step_matches_reference(io):
    y, y_mask, y_null, kwargs, num_frames = sample_inputs(io)
    model = RecordingModel()
    golden_flow().sample(
        model, io["cond_z0"], y, y_mask, y_null, kwargs, condition_mask=io["cond_mask"], num_frames=num_frames
    )
    assert torch.equal(torch.stack([call["x_mask"] for call in model.calls]), io["cond_step_x_mask"])


def test_cfg_scale_one_or_no_null_caption_runs_the_conditional_branch_only():
    flow = RectifiedFlow(FlowConfig(use_timestep_transform=False, num_sampling_steps=4, cfg_scale=1.0))
    z = torch.randn(2, 4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    y, y_null = torch.randn(2, 1, 6, 8), torch.randn(2, 1, 6, 8)
    model = RecordingModel()
    out = flow.sample(model, z, y, None, y_null, {})
    assert len(model.calls) == 4 and all(call["x"].shape[0] == 2 for call in model.calls)
    model_without_null = RecordingModel()
    assert torch.equal(flow.sample(model_without_null, z, y, None, None, {}, cfg_scale=7.0), out)
    # With guidance, v = v_u + s (v_c - v_u); this toy model's velocity is affine in the caption mean.
    guided = RecordingModel()
    flow.sample(guided, z, y, None, y_null, {}, cfg_scale=3.0, num_steps=1)
    v = guided(z, torch.full((2,), 1000.0), y)[:, :4]
    v_null = guided(z, torch.full((2,), 1000.0), y_null)[:, :4]
    expected = z + (v_null + 3.0 * (v - v_null)) * 1.0
    torch.testing.assert_close(flow.sample(RecordingModel(), z, y, None, y_null, {}, cfg_scale=3.0, num_steps=1), expected)


def test_condition_mask_keeps_reference_frames_and_edits_late():
    """m = 0 frames stay bit-equal to the reference; m = 0.5 stays clean while t > 500; an all-ones
    mask gives bitwise the result of no mask."""
    flow = RectifiedFlow(FlowConfig(use_timestep_transform=False, num_sampling_steps=10, cfg_scale=4.0))
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 4, 3, 3, generator=generator)
    y, y_null = torch.randn(2, 1, 5, 8, generator=generator), torch.randn(2, 1, 5, 8, generator=generator)
    condition_mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.5, 1.0, 1.0]])
    model, steps = RecordingModel(), []
    out = flow.sample(
        model, z, y, None, y_null, {}, condition_mask=condition_mask,
        generator=torch.Generator().manual_seed(7), progress=lambda done, total: steps.append((done, total)),
    )
    assert torch.equal(out[0, :, [0, 3]], z[0, :, [0, 3]])
    assert not torch.equal(out[0, :, 1], z[0, :, 1])
    assert steps == [(i, 10) for i in range(1, 11)]
    for call in model.calls:
        t = call["timestep"][0].item()
        edited_is_clean = torch.equal(call["x"][1, :, 1], z[1, :, 1])
        assert call["x_mask"][1, 1].item() == (t <= 500) and edited_is_clean == (t > 500)
        assert torch.equal(call["x_mask"][:2], call["x_mask"][2:])  # doubled for guidance

    injected = torch.randn(10, *z.shape, generator=generator)
    draws = iter(injected)
    with_noise_fn = flow.sample(RecordingModel(), z, y, None, y_null, {}, condition_mask=condition_mask,
                                noise_fn=lambda like: next(draws))
    assert torch.equal(with_noise_fn[0, :, [0, 3]], z[0, :, [0, 3]])

    all_ones = flow.sample(RecordingModel(), z, y, None, y_null, {}, condition_mask=torch.ones(2, 4))
    assert torch.equal(all_ones, flow.sample(RecordingModel(), z, y, None, y_null, {}))


# ---------------------------------------------------------------------- training frame masks


def test_frame_mask_modes_shapes():
    masks = FrameMaskGenerator(generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks.mask_for_mode("image_head", 6), torch.tensor([False] + [True] * 5))
    assert torch.equal(masks.mask_for_mode("image_tail", 6), torch.tensor([True] * 5 + [False]))
    assert torch.equal(masks.mask_for_mode("image_head_tail", 6), torch.tensor([False] + [True] * 4 + [False]))
    assert masks.mask_for_mode("identity", 6).all()
    for _ in range(50):
        assert (~masks.mask_for_mode("image_random", 6)).sum() == 1
        interpolate = masks.mask_for_mode("intepolate", 7)
        start = int(interpolate[0])  # every other frame is conditioning, starting at 0 or 1
        assert not interpolate[start::2].any() and interpolate[1 - start :: 2].all()
        head = masks.mask_for_mode("quarter_head", 12)
        k = int((~head).sum())
        assert 1 <= k <= 3 and not head[:k].any() and head[k:].all()
        tail = masks.mask_for_mode("quarter_tail", 12)
        k = int((~tail).sum())
        assert 1 <= k <= 3 and not tail[-k:].any() and tail[:-k].all()
        head_tail = masks.mask_for_mode("quarter_head_tail", 12)
        k = int((~head_tail).sum()) // 2
        assert 1 <= k <= 3 and not head_tail[:k].any() and not head_tail[-k:].any() and head_tail[k:-k].all()
        block = (~masks.mask_for_mode("quarter_random", 12)).nonzero().flatten()
        assert 1 <= len(block) <= 3 and torch.equal(block, torch.arange(block[0], block[0] + len(block)))
        assert masks.mask_for_mode("random", 5).any()


def test_frame_masks_of_short_clips_fall_back_to_identity():
    masks = FrameMaskGenerator({mode: 1.0 / 10 for mode in FRAME_MASK_MODES if mode != "identity"})
    assert masks(4, 1).all() and masks(4, 1).shape == (4, 1)
    for mode in ("quarter_random", "quarter_head", "quarter_tail", "quarter_head_tail"):
        assert masks.mask_for_mode(mode, 3).all()
    assert masks.mask_for_mode("image_head_tail", 2).all()
    assert masks(200, 2).any(dim=1).all() and masks(200, 3).any(dim=1).all()


def test_frame_mask_statistics():
    stage3 = FrameMaskGenerator(generator=torch.Generator().manual_seed(0))
    drawn = stage3(4000, 8)
    assert drawn.shape == (4000, 8) and drawn.dtype == torch.bool
    assert abs(drawn.all(dim=1).float().mean().item() - 0.75) < 0.03
    assert abs((~drawn[:, 0]).float().mean().item() - 0.24) < 0.03  # image_head, head_tail, random, ...
    half = FrameMaskGenerator({"image_tail": 0.5}, generator=torch.Generator().manual_seed(1))(4000, 8)
    assert abs((~half[:, -1]).float().mean().item() - 0.5) < 0.03 and half[:, :-1].all()
    random = FrameMaskGenerator({"random": 1.0}, generator=torch.Generator().manual_seed(2))
    assert random.ratios["identity"] == 0.0
    assert abs(random(4000, 8).float().mean().item() - 0.5) < 0.03  # E[1 - r], r ~ U(0.1, 0.9)
    seeded = [FrameMaskGenerator(generator=torch.Generator().manual_seed(5))(16, 8) for _ in range(2)]
    assert torch.equal(*seeded)


def test_frame_mask_ratios_are_validated():
    assert abs(sum(STAGE3_FRAME_MASK_RATIOS.values()) - 0.25) < 1e-9
    with pytest.raises(ConfigError, match="did you mean 'intepolate'"):
        FrameMaskGenerator({"interpolate": 0.1})
    with pytest.raises(ConfigError, match="sum to 1"):
        FrameMaskGenerator({"random": 0.7, "image_head": 0.6})
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        FrameMaskGenerator({"random": -0.1})


# ---------------------------------------------------------------------- with the small reference STDiT3


@pytest.fixture(scope="module")
def small_stdit3():
    from arlon.models.stdit3 import STDiT3

    config = json.loads((GOLDEN / "stdit3_small.json").read_text())["config"]
    cfg = BackboneConfig(
        hidden_size=config["hidden_size"],
        depth=config["depth"],
        num_heads=config["num_heads"],
        patch_size=tuple(config["patch_size"]),
        in_channels=config["in_channels"],
        mlp_ratio=config["mlp_ratio"],
        caption_channels=config["caption_channels"],
        model_max_length=config["model_max_length"],
        class_dropout_prob=config["class_dropout_prob"],
        pred_sigma=config["pred_sigma"],
        qk_norm=config["qk_norm"],
        input_sq_size=config["input_sq_size"],
    )
    model = STDiT3(cfg).eval()
    model.load_state_dict(load_file(GOLDEN / "stdit3_small.safetensors"), strict=True)
    return model


def test_training_losses_match_reference(io, small_stdit3):
    kwargs = dict(y=io["train_y"], mask=io["train_ymask"], fps=io["train_fps"], height=io["train_height"], width=io["train_width"])
    flow = golden_flow()
    with torch.no_grad():
        no_mask = flow.training_loss(small_stdit3, io["train_x_start"], kwargs, noise=io["train_noise"], t=io["train_t"])
        masked = flow.training_loss(
            small_stdit3, io["train_x_start"], kwargs, mask=io["train_x_mask"], noise=io["train_noise"], t=io["train_t"]
        )
    torch.testing.assert_close(no_mask, io["train_loss_nomask"], rtol=1e-5, atol=0)
    torch.testing.assert_close(masked, io["train_loss_mask"], rtol=1e-5, atol=0)


def test_text_to_video_sampling_run_matches_reference(io, small_stdit3):
    y, y_mask, y_null, kwargs, num_frames = sample_inputs(io)
    assert torch.equal(small_stdit3.null_caption(2), y_null)
    with torch.no_grad():
        z = golden_flow().sample(small_stdit3, io["sample_z0"], y, y_mask, y_null, kwargs, num_frames=num_frames)
    assert_close_to_golden(z, io["sample_z_final"], 5e-5)


def test_conditioned_sampling_run_matches_reference(io, small_stdit3):
    y, y_mask, y_null, kwargs, num_frames = sample_inputs(io)
    recorded_noise = iter(io["cond_noise"])
    with torch.no_grad():
        z = golden_flow().sample(
            small_stdit3, io["cond_z0"], y, y_mask, y_null, kwargs,
            condition_mask=io["cond_mask"], num_frames=num_frames, noise_fn=lambda like: next(recorded_noise),
        )
    assert_close_to_golden(z, io["cond_z_final"], 5e-5)
    assert torch.equal(z[0, :, 0], io["cond_ref"])  # the m = 0 reference frame is untouched
