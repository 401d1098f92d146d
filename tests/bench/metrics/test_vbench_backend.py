"""The vbench backend's plumbing around the worker: unavailable dimensions, unreadable videos,
VBench-Long clips, and the results landing in the store (the worker itself is replaced here by a
function that answers like it; tests/bench/metrics/test_vbench_official.py runs the real one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arlon.data.video_io import write_video
from bench.metrics.backends import MetricFailure, VideoScores, VideoToScore
from bench.metrics.vbench.backend import OfficialVBenchBackend, clip_ranges
from bench.prompts import BenchPrompt
from bench.runner import run_grid
from fake_run import make_fake_run, pattern_video


def answering_worker(requests: list):
    """A stand-in for worker.py: temporal_flickering = 0.9 + clip index / 100, per entry."""

    def run(self, request, work, python):
        requests.append({**request, "files_exist": all(Path(v["path"]).is_file() for v in request["videos"])})
        results = {}
        for dimension in request["dimensions"]:
            results[dimension] = {}
            for n, video in enumerate(request["videos"]):
                clip = int(video["id"].split("#clip")[1]) if "#clip" in video["id"] else 0
                results[dimension][video["id"]] = {"value": 0.9 + clip / 100, "weight": None, "details": {"frames": 16}}
        return {"results": results, "errors": {}, "video_errors": {}, "dimension_video_errors": {}}

    return run


def test_clip_ranges_follow_vbench_long():
    assert clip_ranges(50, 8.0, 2.0) == [(0, 16), (16, 32), (32, 48), (34, 50)]  # the tail extended backwards
    assert clip_ranges(48, 8.0, 2.0) == [(0, 16), (16, 32), (32, 48)]
    assert clip_ranges(10, 8.0, 2.0) == [(0, 10)]  # shorter than one clip: whole
    assert clip_ranges(600, 23.976, 2.0)[0] == (0, 46)  # fps truncated to 23


def test_without_an_environment_every_dimension_is_unavailable_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ARLON_VBENCH_ENV", str(tmp_path / "nowhere"))
    prompt = BenchPrompt("p", "a cat")
    item = VideoToScore("p-0", tmp_path / "p-0.mp4", prompt)
    out = list(OfficialVBenchBackend().score([item], ["subject_consistency", "temporal_flickering"]))
    assert [type(o) for o in out] == [MetricFailure, MetricFailure]
    assert out[0].error.startswith("unavailable: no VBench environment at ")
    assert "fix: run `arlon-bench vbench setup`" in out[0].error and out[0].videos == ("p-0",)


def test_missing_weights_unreadable_videos_and_long_videos(tmp_path, fake_env, monkeypatch):
    requests = []
    monkeypatch.setattr(OfficialVBenchBackend, "_run_worker", answering_worker(requests))
    short = write_video(tmp_path / "short.mp4", pattern_video(0, 6), fps=8)
    long = write_video(tmp_path / "long.mp4", np.concatenate([pattern_video(i, 16) for i in range(3)]), fps=8)  # 6 s
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    prompt = BenchPrompt("p", "a cat")
    items = [VideoToScore("short", short, prompt), VideoToScore("empty", empty, prompt), VideoToScore("long", long, prompt)]
    out = list(OfficialVBenchBackend().score(items, ["motion_smoothness", "temporal_flickering"]))
    failures = [o for o in out if isinstance(o, MetricFailure)]
    assert len(failures) == 1 and failures[0].metric == "motion_smoothness"
    assert failures[0].error.startswith("unavailable: AMT-S interpolation network missing at ")
    assert ", fix: get it from https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth" in failures[0].error
    scores = {o.video: o for o in out if isinstance(o, VideoScores)}
    assert list(scores) == ["short", "empty", "long"]
    assert scores["short"].values["temporal_flickering"].value == pytest.approx(0.9)
    assert scores["empty"].errors["temporal_flickering"].startswith("cannot read the video: ")
    long_value = scores["long"].values["temporal_flickering"]
    assert long_value.details["vbench_long"]["clips"] == 3  # 48 frames at 8 fps in 2-s clips
    assert long_value.value == pytest.approx(np.mean([0.90, 0.91, 0.92]))
    (request,) = requests
    assert list(request["dimensions"]) == ["temporal_flickering"]  # never asked for the unavailable one
    assert [v["id"] for v in request["videos"]] == ["short", "long#clip000", "long#clip001", "long#clip002"]
    assert request["files_exist"]  # the clips exist while the worker runs (a temporary folder)


def test_scores_reach_the_store_and_unavailable_lines_the_failures(tmp_path, fake_env, monkeypatch):
    monkeypatch.setattr(OfficialVBenchBackend, "_run_worker", answering_worker([]))
    store, grid = make_fake_run(tmp_path / "run")
    summary = run_grid(grid, store, "local", phases=("score",), score_metrics=("temporal_flickering", "aesthetic_quality"))
    assert [f.unit for f in summary.failures] == [f"aesthetic_quality ({2 * 2} video(s))"] * len(grid.cells)
    assert summary.failures[0].error.startswith("unavailable: CLIP ViT-L/14 (TorchScript archive) missing at ")
    records = store.read_scores(grid.cells[0].id)
    assert {r["metric"] for r in records} == {"temporal_flickering"} and len(records) == 4
    assert all(r["backend"] == "vbench" and r["value"] == pytest.approx(0.9) for r in records)
    assert summary.table["temporal_flickering"].tolist() == pytest.approx([0.9] * len(grid.cells))
    assert json.loads((store.root / "failures.json").read_text())[0]["error"].startswith("unavailable: ")


def test_scene_needs_the_prompts_auxiliary_info(tmp_path, fake_env, monkeypatch):
    """scene / object_class run only on prompts that carry VBench's auxiliary info (its prompt lists do)."""
    requests = []
    monkeypatch.setattr(OfficialVBenchBackend, "_run_worker", answering_worker(requests))
    cache = tmp_path / "vbench-cache"
    for relative in ("caption_model/tag2text_swin_14m.pth",):
        (cache / relative).parent.mkdir(parents=True, exist_ok=True)
        (cache / relative).write_bytes(b"x")
    bert = tmp_path / "hf" / "hub" / "models--bert-base-uncased"
    bert.mkdir(parents=True)
    (bert / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    video = write_video(tmp_path / "v.mp4", pattern_video(0, 6), fps=8)
    with_info = BenchPrompt("a", "an alley", dimensions=("scene",), auxiliary={"scene": {"scene": "alley"}})
    without = BenchPrompt("b", "a cat")
    out = list(OfficialVBenchBackend().score([VideoToScore("a-0", video, with_info), VideoToScore("b-0", video, without)], ["scene"]))
    scores = {o.video: o for o in out}
    assert scores["a-0"].values["scene"].value == pytest.approx(0.9)
    assert scores["b-0"].errors["scene"] == "scene needs the prompt's VBench auxiliary info (use a VBench prompt list)"
    assert requests[0]["videos"][0]["auxiliary"] == {"scene": {"scene": "alley"}}


def test_the_cache_key_follows_the_weight_files(tmp_path, fake_env):
    """Scores made with other (or broken) weights are never reused: the key holds the files' sizes."""
    backend = OfficialVBenchBackend()
    model = tmp_path / "vbench-cache" / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth"
    missing = backend.fingerprint("imaging_quality")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"x" * 10)
    present = backend.fingerprint("imaging_quality")
    model.write_bytes(b"x" * 11)
    assert len({missing, present, backend.fingerprint("imaging_quality")}) == 3
    assert backend.fingerprint("temporal_flickering") == OfficialVBenchBackend().fingerprint("temporal_flickering")
