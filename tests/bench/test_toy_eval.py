from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from arlon.config import ARSamplingConfig
from arlon.pipelines.arlon import encode_prompts, generate_codes
from arlon.pipelines.components import build_components
from arlon.presets import tiny
from bench.errors import BenchError
from bench.toy_eval import (
    ToyEvalConfig,
    evaluate_tiny_stack,
    evaluation_prompts,
    psnr_db,
    render_prompts,
    teacher_forced_codes,
    verdict_table,
)


@pytest.fixture(scope="module")
def untrained():
    return build_components(tiny(), random_init=True)


def test_clean_clips_match_their_prompts_and_noise_does_not():
    prompts = evaluation_prompts(ToyEvalConfig(num_prompts=6))
    clips = render_prompts(prompts, 16, 32, 32)
    clean = verdict_table(clips, prompts)
    assert clean["all"].all() and clean["colour_and_motion"].all()
    noise = np.random.default_rng(0).integers(0, 256, clips.shape, dtype=np.uint8)
    assert not verdict_table(noise, prompts)["all"].any()
    assert np.isinf(psnr_db(clips, clips)).sum() == 0 and psnr_db(clips, clips).min() >= 119
    assert psnr_db(clips, noise).max() < 12


def test_every_check_runs_and_an_untrained_arlon_gains_nothing(untrained, tmp_path):
    cfg = ToyEvalConfig(num_prompts=4, batch_size=2)
    seen = []
    report = evaluate_tiny_stack(untrained, cfg, progress=lambda task, done, total: seen.append((task, done, total)))
    assert {task for task, _, _ in seen} == {"vae", "vq", "ar", "ar ladder", "arlon"} and ("arlon", 4, 4) in seen
    assert set(report.targets) == {
        "vae_psnr_db", "vq_colour_and_motion_kept", "ar_prompt_match", "ar_primary_motion", "arlon_prompt_match",
        "arlon_motion_accuracy", "arlon_minus_baseline_layout_iou_low", "arlon_minus_baseline_motion_accuracy_low",
    }
    assert report.figures["clean_colour_and_motion"] == 1.0
    ladder = [f"ar_{rung}_primary_all" for rung in ("teacher_forced", "from_1_frames", "from_2_frames", "from_3_frames")]
    for name in ("vq_colour_and_motion_kept", "ar_all", "arlon_layout_iou", "baseline_motion_accuracy", *ladder):
        assert 0.0 <= report.figures[name] <= 1.0
    # A fresh injector leaves the backbone untouched: identical videos, a zero difference, the target missed.
    difference = report.intervals["arlon_minus_baseline_layout_iou"]
    assert difference.mean == difference.low == difference.high == 0.0
    assert not report.targets["arlon_minus_baseline_layout_iou_low"]["passed"]
    motion = report.intervals["arlon_minus_baseline_motion_accuracy"]
    assert motion.mean == motion.low == motion.high == 0.0
    assert not report.targets["arlon_minus_baseline_motion_accuracy_low"]["passed"]
    # ... whatever the codes: from the clips' own codes too.
    assert report.figures["arlon_true_codes_motion_accuracy"] == report.figures["baseline_motion_accuracy"]
    assert report.figures["arlon_true_codes_prompt_match"] == report.figures["baseline_prompt_match"]
    assert not report.targets["vae_psnr_db"]["passed"]  # random weights reconstruct nothing
    presence = report.intervals["arlon_minus_baseline_motion_presence"]  # two of the prompts ask for travel
    assert presence.n == 2 and presence.mean == presence.low == presence.high == 0.0
    assert report.intervals["arlon_motion_stillness"].n == 1
    saved = json.loads(report.save(tmp_path / "eval.json").read_text())
    assert saved["config"]["num_prompts"] == 4 and saved["intervals"]["vae_psnr_db"]["n"] == 4


def test_bad_settings_are_clear_errors(untrained):
    with pytest.raises(BenchError, match="--prompts"):
        evaluate_tiny_stack(untrained, ToyEvalConfig(num_prompts=1))
    with pytest.raises(BenchError, match="unknown check"):
        evaluate_tiny_stack(untrained, ToyEvalConfig(checks=("vae", "fid")))


def test_teacher_forced_codes_reproduce_greedy_samples(untrained):
    """Greedy sampling takes the argmax after its own codes, so teacher forcing on those codes must give
    them back, code for code, with and without classifier-free guidance."""
    for cfg_scale in (1.0, 3.0):
        components = dataclasses.replace(untrained)
        components.config = dataclasses.replace(untrained.config, ar_sampling=ARSamplingConfig(temperature=0.0, cfg_scale=cfg_scale))
        prompt = encode_prompts(components, [p.caption for p in evaluation_prompts(ToyEvalConfig(num_prompts=2))])
        greedy = generate_codes(components, prompt, (4, 8, 8), torch.Generator().manual_seed(0))
        assert torch.equal(teacher_forced_codes(components, prompt, greedy), greedy)
        shuffled = greedy.flip(-1)  # other true codes: the model's argmax no longer follows them everywhere
        assert not torch.equal(teacher_forced_codes(components, prompt, shuffled), shuffled)
