"""The native VBench backend without the official package: VBench's sampling and transforms, the loaders on
small checkpoints in the real files' layouts, the formulas on videos with known answers, and the plumbing
(`score --backend native`, a run keeping its backend, `compare` refusing to mix backends).
Parity with the official package on the same weights: test_vbench_native_parity.py (CI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from arlon.data.video_io import write_video
from bench.metrics.backends import MetricFailure, VideoScores, VideoToScore
from bench.metrics.vbench.backend import OfficialVBenchBackend
from bench.metrics.vbench.native import NativeVBenchBackend
from bench.metrics.vbench.native import frames as T
from bench.metrics.vbench.native.scorers import DecodedVideo, Runtime, TemporalFlickering, first_and_previous_similarity
from bench.metrics.vbench.native.vit import load_dino_vit, load_openai_clip_visual, position_table
from bench.prompts import BenchPrompt
from bench.runner import run_grid
from tests.bench.cli_runner import run_main
from fake_run import make_fake_run, pattern_video
from test_vbench_backend import answering_worker


def test_middle_sampling_follows_vbench():
    assert T.middle_frame_indices(8, 16) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert T.middle_frame_indices(16, 16) == list(range(16))
    assert T.middle_frame_indices(16, 49) == list(range(1, 47, 3))
    assert T.middle_frame_indices(8, 5) == [0, 1, 2, 3, 4, 4, 4, 4]  # padded with the last index


def test_resize_sizes_and_types_follow_torchvision():
    assert T.shorter_side_size(320, 512, 224) == (224, 358)
    assert T.shorter_side_size(720, 1280, 224) == (224, 398)
    assert T.shorter_side_size(96, 64, 224) == (336, 224)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 40, 60))).float()
    clip = T.clip_transform(frames)
    assert clip.shape == (2, 3, 224, 224)
    assert T.dino_transform(frames).shape == (2, 3, 224, 336)  # no crop
    as_float = T.resize(frames, (224, 336), "bicubic")
    assert as_float.min() < 0 or as_float.max() > 255  # float frames keep the bicubic overshoot
    as_uint8 = T.resize(frames, (224, 336), "bicubic", from_uint8=True)
    assert as_uint8.min() >= 0 and as_uint8.max() <= 255 and torch.equal(as_uint8, as_uint8.round())
    assert T.resize(frames, (40, 60), "bicubic") is frames  # same size: untouched, as torchvision


def test_position_table_is_dinos():
    table = torch.randn(1, 1 + 14 * 14, 8)
    assert position_table(table, 14, 14, 16) is table
    wide = position_table(table, 14, 21, 16)
    assert wide.shape == (1, 1 + 14 * 21, 8) and torch.equal(wide[:, 0], table[:, 0])
    # DINO interpolates with scale factors (n + 0.1) / 14, not to the output size: the two differ.
    by_size = F.interpolate(table[:, 1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2), size=(14, 21), mode="bicubic")
    assert not torch.allclose(wide[:, 1:], by_size.permute(0, 2, 3, 1).reshape(1, -1, 8), atol=1e-3)


def tiny_clip_state(width: int = 64, layers: int = 2, patch: int = 32, output: int = 16) -> dict[str, torch.Tensor]:
    """An OpenAI CLIP image tower's tensors under their `visual.*` names, small."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape, scale=0.05: torch.randn(*shape, generator=g) * scale  # noqa: E731
    state = {"visual.conv1.weight": rand(width, 3, patch, patch), "visual.class_embedding": rand(width),
             "visual.positional_embedding": rand(1 + (224 // patch) ** 2, width), "visual.proj": rand(width, output),
             "visual.ln_pre.weight": 1 + rand(width), "visual.ln_pre.bias": rand(width),
             "visual.ln_post.weight": 1 + rand(width), "visual.ln_post.bias": rand(width)}
    for i in range(layers):
        p = f"visual.transformer.resblocks.{i}."
        state.update({p + "attn.in_proj_weight": rand(3 * width, width), p + "attn.in_proj_bias": rand(3 * width),
                      p + "attn.out_proj.weight": rand(width, width), p + "attn.out_proj.bias": rand(width),
                      p + "ln_1.weight": 1 + rand(width), p + "ln_1.bias": rand(width),
                      p + "ln_2.weight": 1 + rand(width), p + "ln_2.bias": rand(width),
                      p + "mlp.c_fc.weight": rand(4 * width, width), p + "mlp.c_fc.bias": rand(4 * width),
                      p + "mlp.c_proj.weight": rand(width, 4 * width), p + "mlp.c_proj.bias": rand(width)})
    return state


def reference_clip_image_features(state: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """openai-clip's `VisionTransformer.forward`, written out with torch's own MultiheadAttention."""
    width = state["visual.conv1.weight"].shape[0]
    patch = state["visual.conv1.weight"].shape[-1]
    x = F.conv2d(images, state["visual.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([state["visual.class_embedding"].expand(len(x), 1, -1), x], dim=1) + state["visual.positional_embedding"]
    ln = lambda x, name: F.layer_norm(x, (width,), state[name + ".weight"], state[name + ".bias"], 1e-5)  # noqa: E731
    x = ln(x, "visual.ln_pre")
    for i in range(len({k.split(".")[3] for k in state if ".resblocks." in k})):
        p = f"visual.transformer.resblocks.{i}."
        attention = nn.MultiheadAttention(width, width // 64, batch_first=True)
        attention.load_state_dict({"in_proj_weight": state[p + "attn.in_proj_weight"], "in_proj_bias": state[p + "attn.in_proj_bias"],
                                   "out_proj.weight": state[p + "attn.out_proj.weight"], "out_proj.bias": state[p + "attn.out_proj.bias"]})
        h = ln(x, p + "ln_1")
        x = x + attention(h, h, h, need_weights=False)[0]
        h = F.linear(ln(x, p + "ln_2"), state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"])
        x = x + F.linear(h * torch.sigmoid(1.702 * h), state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])
    return ln(x[:, 0], "visual.ln_post") @ state["visual.proj"]


def test_clip_loader_maps_openai_names_onto_the_same_network(tmp_path):
    state = tiny_clip_state()
    torch.save(state, tmp_path / "clip.pt")  # a plain state dict (the published files are TorchScript archives)
    model = load_openai_clip_visual(tmp_path / "clip.pt")
    images = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(model(images), reference_clip_image_features(state, images), atol=1e-5)


def test_dino_loader_reads_dinos_names_and_refuses_other_files(tmp_path):
    width = 64
    state = {"cls_token": torch.randn(1, 1, width), "pos_embed": torch.randn(1, 197, width),
             "patch_embed.proj.weight": torch.randn(width, 3, 16, 16) * 0.02, "patch_embed.proj.bias": torch.zeros(width),
             "norm.weight": torch.ones(width), "norm.bias": torch.zeros(width)}
    for name, shape in {"norm1.weight": (width,), "norm1.bias": (width,), "attn.qkv.weight": (3 * width, width),
                        "attn.qkv.bias": (3 * width,), "attn.proj.weight": (width, width), "attn.proj.bias": (width,),
                        "norm2.weight": (width,), "norm2.bias": (width,), "mlp.fc1.weight": (4 * width, width),
                        "mlp.fc1.bias": (4 * width,), "mlp.fc2.weight": (width, 4 * width), "mlp.fc2.bias": (width,)}.items():
        state[f"blocks.0.{name}"] = torch.randn(shape) * 0.02 + (1.0 if name.startswith("norm") and name.endswith("weight") else 0.0)
    torch.save(state, tmp_path / "dino.pth")
    model = load_dino_vit(tmp_path / "dino.pth")
    assert model.config.depth == 1 and model.config.heads == 1
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 224, 336)).shape == (2, width)
    torch.save({k: v for k, v in state.items() if k != "norm.bias"}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken.pth: not a DINO ViT checkpoint: 1 missing \(e.g. norm.bias\)"):
        load_dino_vit(tmp_path / "broken.pth")
    torch.save({"model": state}, tmp_path / "wrapped.pth")
    with pytest.raises(ValueError, match="not a DINO ViT checkpoint"):
        load_dino_vit(tmp_path / "wrapped.pth")


def test_formulas_on_videos_with_known_answers():
    frames = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    frames[1::2] = 10  # every consecutive pair differs by 10 everywhere
    result = TemporalFlickering((), Runtime(torch.device("cpu"))).score(DecodedVideo(frames, 8.0, ""))
    assert result["value"] == pytest.approx((255 - 10) / 255)
    same = torch.randn(1, 16).expand(6, 16)
    assert first_and_previous_similarity(same) == (pytest.approx(5.0), 5)
    opposite = torch.stack([torch.ones(4), -torch.ones(4), torch.ones(4)])
    # frame 1 is opposite both neighbours (cos -1 -> 0); frame 2 equals frame 0: (0 + 1) / 2
    assert first_and_previous_similarity(opposite) == (pytest.approx(0.0 + 0.5), 2)


def test_backend_lines_for_missing_weights_official_only_dimensions_and_unreadable_videos(tmp_path, monkeypatch):
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    good = write_video(tmp_path / "good.mp4", pattern_video(0, 6), fps=8)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    prompt = BenchPrompt("p", "a cat")
    items = [VideoToScore("good", good, prompt), VideoToScore("bad", bad, prompt)]
    out = list(NativeVBenchBackend("cpu").score(items, ["subject_consistency", "scene", "temporal_flickering"]))
    failures = {o.metric: o.error for o in out if isinstance(o, MetricFailure)}
    assert failures["subject_consistency"].startswith("unavailable: DINO ViT-B/16 weights (read through the torch hub cache) missing at ")
    assert "fix: get it from https://dl.fbaipublicfiles.com/dino/" in failures["subject_consistency"]
    assert failures["scene"] == ("unavailable: scene is computed by the official VBench package only (no native scorer), "
                                 "fix: score it with --backend vbench")
    scores = {o.video: o for o in out if isinstance(o, VideoScores)}
    assert 0.5 < scores["good"].values["temporal_flickering"].value < 1.0
    assert scores["bad"].errors["temporal_flickering"].startswith("cannot read the video: ")


def test_a_long_video_is_scored_clip_by_clip_like_the_official_backend(tmp_path):
    frames = np.concatenate([pattern_video(i, 16) for i in range(3)])  # 48 frames at 8 fps: 6 s, three 2-s clips
    path = write_video(tmp_path / "long.mp4", frames, fps=8)
    (scores,) = NativeVBenchBackend("cpu").score([VideoToScore("long", path, BenchPrompt("p", "a cat"))], ["temporal_flickering"])
    value = scores.values["temporal_flickering"]
    assert value.details["vbench_long"]["clips"] == 3
    assert value.value == pytest.approx(np.mean(value.details["vbench_long"]["clip_values"]))


def test_score_backend_native_is_recorded_kept_and_not_compared_with_official_scores(tmp_path, capsys, monkeypatch, fake_env):
    store, grid = make_fake_run(tmp_path / "run", prompts=2, samples=1)
    code, out, err = run_main(capsys, monkeypatch, "score", str(store.root), "--backend", "native", "--metrics", "temporal_flickering", "--executor", "local")
    assert code == 0, out + err
    records = [r for c in grid.cells for r in store.read_scores(c.id)]
    assert records and all(r["backend"] == "native" for r in records)
    # Resumed without --backend, the run keeps its native scores: nothing is scored again.
    summary = run_grid(grid, store, "local", phases=("score",), score_metrics=("temporal_flickering",))
    assert summary.counts["score"].run == 0 and summary.counts["score"].skipped == len(records)
    assert all(r["backend"] == "native" for c in grid.cells for r in store.read_scores(c.id))
    # The same videos scored by the official backend (its worker answered by a stand-in): compare refuses to mix.
    official, _ = make_fake_run(tmp_path / "official", prompts=2, samples=1)
    monkeypatch.setattr(OfficialVBenchBackend, "_run_worker", answering_worker([]))
    code, out, err = run_main(capsys, monkeypatch, "score", str(official.root), "--backend", "vbench", "--metrics", "temporal_flickering", "--executor", "local")
    assert code == 0, out + err
    code, out, err = run_main(capsys, monkeypatch, "compare", str(store.root), str(official.root))
    assert code == 2 and "temporal_flickering: scored by the native backend here and by the vbench backend in the baseline" in err
    assert "--mixed-backends" in err and "Traceback" not in err
    code, out, err = run_main(capsys, monkeypatch, "compare", str(store.root), str(official.root), "--mixed-backends")
    assert code in (0, 1) and "temporal_flickering" in out


def test_asking_native_for_an_official_only_dimension_is_one_line(tmp_path, capsys, monkeypatch):
    store, _ = make_fake_run(tmp_path / "run", prompts=1, samples=1)
    code, _, err = run_main(capsys, monkeypatch, "score", str(store.root), "--backend", "native", "--metrics", "scene")
    assert code == 2
    assert "scene not computed by the native backend; score them with --backend vbench" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_byte_pair_tokeniser_merges_by_rank_and_cuts_to_the_context(tmp_path):
    import gzip

    pytest.importorskip("ftfy", reason="the vbench extra (pip install -e '.[vbench]') brings ftfy")

    from bench.metrics.vbench.native.viclip import BytePairTokenizer

    vocabulary = tmp_path / "vocab.txt.gz"
    vocabulary.write_bytes(gzip.compress("#version: test\nc a\nca t</w>\nd o\ndo g</w>\n".encode()))
    tokenizer = BytePairTokenizer(vocabulary)
    start, end = tokenizer.ids[tokenizer.START], tokenizer.ids[tokenizer.END]
    assert tokenizer.encode("Cat  DOG") == [tokenizer.ids["cat</w>"], tokenizer.ids["dog</w>"]]  # lower-cased, merged
    assert tokenizer.encode("cog") == [tokenizer.ids["c"], tokenizer.ids["o"], tokenizer.ids["g</w>"]]  # no merge known
    assert tokenizer.tokenize("cat", 5).tolist() == [[start, tokenizer.ids["cat</w>"], end, 0, 0]]
    assert tokenizer.tokenize("cat dog cat", 3).tolist() == [[start, tokenizer.ids["cat</w>"], end]]  # cut, last = end


def test_scoring_benchmark_report_rows():
    from bench.scoring_perf import BackendRun, ScoringPerfReport

    official = BackendRun(20.0, {"subject_consistency": 12.0}, {("v", "subject_consistency"): 0.9}, [])
    native = BackendRun(5.0, {"subject_consistency": 4.0, "decode": 0.5}, {("v", "subject_consistency"): 0.90002}, [])
    report = ScoringPerfReport("1 video", "CPU", 2, ["subject_consistency"], official, native, "abc")
    rows = {row["dimension"]: row for row in report.rows()}
    assert rows["subject_consistency"]["speedup"] == pytest.approx(3.0)
    assert rows["subject_consistency"]["max_abs_diff"] == pytest.approx(2e-5)
    assert rows["all (wall, whole job)"]["speedup"] == pytest.approx(4.0)
    assert "| subject_consistency | 12.0 | 4.0 | 3.00x | 2.0e-05 |" in report.to_markdown()
    assert report.to_dict()["native"]["values"] == {"v subject_consistency": 0.90002}


def test_score_backend_native_without_metrics_takes_the_ablation_dimensions(tmp_path):
    from bench.cli.ablate import scoring_metrics

    _, grid = make_fake_run(tmp_path / "run", prompts=1, samples=1)
    assert scoring_metrics(grid, None, "native") == scoring_metrics(grid, None, "vbench")  # all six of Table 3
    assert scoring_metrics(grid, None, "vbench")[3:] == ("dynamic_degree", "aesthetic_quality", "imaging_quality")


def test_loaders_refuse_files_of_another_network_in_one_line(tmp_path, monkeypatch):
    from bench.metrics.vbench.native.amt import load_amt_s
    from bench.metrics.vbench.native.musiq import load_musiq
    from bench.metrics.vbench.native.raft import load_raft
    from bench.metrics.vbench.native.viclip import load_viclip

    other = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, other)
    for load, message in ((load_raft, "not a RAFT"), (load_amt_s, "not an AMT checkpoint"), (load_musiq, "not a MUSIQ"),
                          (lambda p: load_viclip(p, p), "not a ViCLIP checkpoint")):
        with pytest.raises(ValueError, match=message):
            load(other)
    # In the backend: the dimension fails with one line naming the file; the others go on.
    cache = tmp_path / "cache"
    (cache / "raft_model" / "models").mkdir(parents=True)
    torch.save({"weight": torch.zeros(2)}, cache / "raft_model" / "models" / "raft-things.pth")
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(cache))
    video = write_video(tmp_path / "v.mp4", pattern_video(0, 6), fps=8)
    out = list(NativeVBenchBackend("cpu").score([VideoToScore("v", video, BenchPrompt("p", "a cat"))], ["dynamic_degree", "temporal_flickering"]))
    (failure,) = [o for o in out if isinstance(o, MetricFailure)]
    assert failure.metric == "dynamic_degree" and failure.error.startswith("cannot load its weights: ValueError: ")
    assert "raft-things.pth: not a RAFT (large) checkpoint" in failure.error
    assert [o.values["temporal_flickering"].value > 0 for o in out if isinstance(o, VideoScores)] == [True]
