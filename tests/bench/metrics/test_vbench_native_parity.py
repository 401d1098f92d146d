"""Parity of the native VBench backend with the official package: the same videos, the same weight files
(random, in VBench's exact layouts: this folder's conftest.py), scored by both; every per-video value and every
aggregate must agree within 1e-4 (fp32, CPU), and changing one preprocessing detail must break that.

The videos cover what the transforms must get right: a square clip, a landscape and a portrait one (the
CLIP centre crop, DINO's aspect-keeping resize and its position-table interpolation), and one of 5 s, which
both backends split into VBench-Long clips. Dynamic degree is a yes / no per video, so RAFT's flow field itself is
compared with VBench's on a frame pair too. (Sides are multiples of 16 after DINO's resize: the test's DINO
hub entry is a timm ViT, which refuses other sizes where DINO's own code drops the remainder.)

Slow like the official end-to-end test: runs in CI (CI=true) or with ARLON_VBENCH_E2E=1.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from arlon.data.video_io import write_video
from bench.metrics import METRICS, aggregate
from bench.metrics.backends import MetricFailure, VideoToScore
from bench.metrics.vbench.backend import OfficialVBenchBackend
from bench.metrics.vbench.dimensions import VICLIP_VOCAB
from bench.metrics.vbench.native import NATIVE_SCORERS, NativeVBenchBackend
from bench.metrics.vbench.native import frames as native_frames
from bench.metrics.vbench.native.viclip import BytePairTokenizer
from bench.prompts import BenchPrompt
from vbench_e2e import OFFICIAL_VBENCH_E2E

pytestmark = OFFICIAL_VBENCH_E2E

PARITY = 1e-4
DIMENSIONS = tuple(NATIVE_SCORERS.keys())
VIDEOS = {  # name: (frames, height, width, fps); RAFT's coarsest correlation level needs 128 pixels a side
    "square": (16, 128, 128, 8),
    "landscape": (12, 128, 192, 8),
    "portrait": (17, 192, 128, 12),  # every second frame for dynamic degree (round(12 / 8) = 2)
    "long": (20, 128, 128, 4),  # 5 s: three VBench-Long clips of 2 s
}


def moving_pattern(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Smooth stripes drifting across the frame plus noise: every dimension gets something to measure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    colour = np.array([1.0, 0.5, -0.7])
    video = [
        120 + 80 * np.sin((xx + 3 * t) / 7.0)[..., None] * colour + 40 * np.cos((yy - 2 * t) / 5.0)[..., None]
        + rng.normal(0, 6, (height, width, 3))
        for t in range(frames)
    ]
    return np.clip(np.stack(video), 0, 255).astype(np.uint8)


def collect(results) -> dict[tuple[str, str], tuple]:
    values = {}
    for result in results:
        assert not isinstance(result, MetricFailure), f"{result.metric}: {result.error}"
        assert not result.errors, result.errors
        for dimension, value in result.values.items():
            values[(result.video, dimension)] = (value.value, value.weight)
    return values


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[VideoToScore]:
    folder = tmp_path_factory.mktemp("parity-videos")
    items = []
    for n, (name, (frames, height, width, fps)) in enumerate(VIDEOS.items()):
        path = folder / f"{name}.mp4"
        write_video(path, moving_pattern(frames, height, width, n), fps=fps)
        items.append(VideoToScore(name, path, BenchPrompt(id=name, text=f"a {name} pattern drifting to the left")))
    return items


@pytest.fixture(scope="module")
def weights_in_place(vbench_weights):
    vbench_cache, torch_home = vbench_weights
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VBENCH_CACHE_DIR", str(vbench_cache))
        patch.setenv("TORCH_HOME", str(torch_home))
        yield


@pytest.fixture(scope="module")
def official(vbench_env, weights_in_place, videos, announce) -> dict:
    announce(f"official VBench: {len(DIMENSIONS)} dimensions on {len(videos)} videos, for the native parity check")
    return collect(OfficialVBenchBackend(vbench_env).score(videos, DIMENSIONS))


@pytest.fixture(scope="module")
def native(weights_in_place, videos) -> dict:
    return collect(NativeVBenchBackend("cpu").score(videos, DIMENSIONS))


def test_every_per_video_score_agrees_with_the_official_package(official, native, videos):
    assert set(native) == set(official) == {(v.video, d) for v in videos for d in DIMENSIONS}
    for key, (value, weight) in official.items():
        assert native[key][0] == pytest.approx(value, abs=PARITY), key
        assert native[key][1] == weight, key


def test_every_aggregate_agrees_with_the_official_package(official, native, videos):
    for dimension in DIMENSIONS:
        spec = METRICS.get(dimension)
        results = [[scores[(v.video, dimension)] for v in videos] for scores in (official, native)]
        weights = [[w for _, w in r] if spec.aggregation in ("pair_weighted_mean", "frame_weighted_mean") else None for r in results]
        theirs, ours = (aggregate([v for v, _ in r], spec, w) for r, w in zip(results, weights))
        assert ours == pytest.approx(theirs, abs=PARITY), dimension


def test_the_scores_are_not_trivially_equal(official):
    # Random weights could give every video the same score, which any code would match: they must differ
    # (dynamic degree is a yes / no per video; RAFT's flow itself is compared below).
    for dimension in (d for d in DIMENSIONS if d != "dynamic_degree"):
        values = [official[(name, dimension)][0] for name in VIDEOS]
        assert len({round(v, 6) for v in values}) == len(values), (dimension, values)


@pytest.mark.parametrize("dimension", ["background_consistency", "subject_consistency"])
def test_parity_fails_when_the_resize_interpolation_changes(official, weights_in_place, videos, monkeypatch, dimension):
    # Bicubic for bilinear and back (CLIP's transform resizes bicubically, DINO's bilinearly): the scores move
    # beyond the bound, so the parity test can fail.
    resize = native_frames.resize
    swapped = {"bilinear": "bicubic", "bicubic": "bilinear"}
    monkeypatch.setattr(native_frames, "resize", lambda frames, size, mode, from_uint8=False: resize(frames, size, swapped[mode], from_uint8))
    changed = collect(NativeVBenchBackend("cpu").score(videos, [dimension]))
    worst = max(abs(changed[(v.video, dimension)][0] - official[(v.video, dimension)][0]) for v in videos)
    assert worst > PARITY, f"{dimension}: the other interpolation moved no score beyond {PARITY} ({worst:.2e})"

TOKENISER_TEXTS = [
    "a diagram", "A red ball moves LEFT, quickly!", "caf\u00e9 au lait \u2013 3\u00bd cups &amp; more  ",
    "it's the dog's bowl, isn't it?", "word " * 40, "\u4e00\u53ea\u732b in the rain",
]


def test_the_tokeniser_is_clips(vbench_env, vbench_weights):
    """Our byte-pair tokeniser against openai-clip's (the one ViCLIP's vendored copy repeats) on the same file."""
    vocabulary = vbench_weights[0] / VICLIP_VOCAB
    script = ("import json, sys; from clip.simple_tokenizer import SimpleTokenizer; t = SimpleTokenizer(sys.argv[1]); "
              "print(json.dumps([t.encode(x) for x in json.loads(sys.argv[2])]))")
    done = subprocess.run([str(vbench_env / "bin" / "python"), "-c", script, str(vocabulary), json.dumps(TOKENISER_TEXTS)],
                          capture_output=True, text=True, check=True)
    ours = BytePairTokenizer(vocabulary)
    assert [ours.encode(text) for text in TOKENISER_TEXTS] == json.loads(done.stdout)


def test_the_side_by_side_benchmark(vbench_env, weights_in_place, tmp_path):
    from bench.scoring_perf import benchmark_scoring, synthetic_videos

    report = benchmark_scoring(synthetic_videos(tmp_path, count=1, frames=6, size=64),
                               ["temporal_flickering", "background_consistency"], env_dir=vbench_env, device="cpu")
    assert not report.official.failures and not report.native.failures
    rows = {row["dimension"]: row for row in report.rows()}
    assert rows["background_consistency"]["official_s"] > 0 and rows["background_consistency"]["native_s"] > 0
    assert rows["background_consistency"]["max_abs_diff"] <= PARITY
    assert "| background_consistency |" in report.to_markdown()


RAFT_SCRIPT = """
import sys, numpy as np, torch
from easydict import EasyDict
from vbench.third_party.RAFT.core.raft import RAFT
from vbench.third_party.RAFT.core.utils_core.utils import InputPadder
model = RAFT(EasyDict({"small": False, "mixed_precision": False, "alternate_corr": False}))
state = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
model.load_state_dict({k.replace("module.", ""): v for k, v in state.items()})
model.eval()
pair = torch.from_numpy(np.load(sys.argv[2]))
first, second = InputPadder(pair[:1].shape).pad(pair[:1], pair[1:])
with torch.no_grad():
    _, flow = model(first, second, iters=20, test_mode=True)
np.save(sys.argv[3], flow.numpy())
"""


def test_raft_flow_is_vbenchs(vbench_env, vbench_weights, tmp_path):
    """dynamic_degree's network: the flow of one frame pair (130 x 190: padded to multiples of 8) against VBench's
    vendored RAFT on the same checkpoint."""
    import torch

    from bench.metrics.vbench.native.raft import load_raft, pad_to_multiple_of_8

    checkpoint = vbench_weights[0] / "raft_model" / "models" / "raft-things.pth"
    pair = torch.from_numpy(moving_pattern(2, 130, 190, 7)).permute(0, 3, 1, 2).float()
    np.save(tmp_path / "pair.npy", pair.numpy())
    subprocess.run([str(vbench_env / "bin" / "python"), "-W", "ignore", "-c", RAFT_SCRIPT, str(checkpoint),
                    str(tmp_path / "pair.npy"), str(tmp_path / "flow.npy")], check=True, capture_output=True,
                   env=dict(os.environ, VBENCH_CACHE_DIR=str(vbench_weights[0])))
    theirs = np.load(tmp_path / "flow.npy")
    padded = pad_to_multiple_of_8(pair)
    with torch.inference_mode():
        ours = load_raft(checkpoint)(padded[:1], padded[1:]).numpy()
    assert ours.shape == theirs.shape == (1, 2, 136, 192)
    assert np.abs(theirs).mean() > 1.0  # a flow worth comparing
    assert np.abs(ours - theirs).max() < 1e-3
