"""Long videos in the harness: the `long:` block and long prompts, one resumable unit per long video,
the same segments for ARLON and the baseline, segments in the records, long-video judges' inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arlon.data.video_io import read_video
from arlon.pipelines.long_video import SegmentStore
from bench.executors.local import LocalExecutor
from bench.executors.work import WorkContext, cell_stages
from bench.grids import GridError, load_grid, parse_grid, validate_grid
from bench.prompts import PromptSetConfig, load_prompts
from bench.runner import needs_reference, plan_training, run_grid, run_status
from bench.store import RunDefinition, RunStore

# The mini grid of mini_run.py with 8-frame clips: 4 latent frames, two AR code frames per segment,
# so that a 16-frame video takes three segments carrying 2 latent frames over.
LONG_GRID = """\
name: mini-long
preset: tiny
base:
  video: {num_frames: 8, height: 16, width: 16}
  vae.tiny_channels: [8, 16]
  text.dim: 32
  ar_vq: {codebook_size: 32, code_dim: 8, hidden_channels: 16}
  dit_vq: {codebook_size: 32, code_dim: 8, hidden_channels: 16}
  ar: {n_layer: 1, n_head: 2, n_embd: 32, n_ffn: 64, codebook_size: 32, text_dim: 32}
  backbone: {hidden_size: 32, depth: 2, caption_channels: 32}
  injection.layers: first:1
  flow.num_sampling_steps: 2
train:
  all: {steps: 2, batch_size: 4, warmup_steps: 0}
  injector: {steps: 4, ema_decay: 0.0, lr: 0.05}
data: {num_train_clips: 16, num_heldout_clips: 4}
rows:
  - {name: baseline, baseline: true}
  - {name: arlon}
prompts: {kind: toyworld_long, split: heldout, n: 2, frames: 16}
long: {overlap: 2}
metrics: [toy_colour_fidelity, toy_layout_iou, toy_temporal_flicker]
"""


@pytest.fixture(scope="module")
def long_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    path = root / "mini-long.yaml"
    path.write_text(LONG_GRID)
    grid = load_grid(path)
    units, _ = plan_training([(cell, cell_stages(cell, needs_reference(grid))) for cell in grid.cells])
    context = WorkContext(str(root / "cache"), str(root / "cache"), "cpu")
    _, failures = LocalExecutor("cpu").train(units, context, lambda *event: None)
    assert not failures, failures
    return grid, root / "cache"


def _records(store: RunStore, cell_id: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((store.cell_dir(cell_id) / "videos").glob("*.json"))}


def test_toyworld_long_prompts_have_parts_and_ground_truth():
    prompts = load_prompts(PromptSetConfig(kind="toyworld_long", n=4, frames=32))
    assert [p.id for p in prompts] == [
        "toy_long_heldout_0_00000", "toy_progressive_heldout_0_00001", "toy_long_heldout_0_00002", "toy_progressive_heldout_0_00003",
    ]
    long, progressive = prompts[0], prompts[1]
    assert long.num_frames == progressive.num_frames == 32
    assert [p.frames for p in progressive.parts] == [16, 16] and long.scene is not None and progressive.scene is None
    assert progressive.timeline.part_starts == (0, 16) and long.timeline.num_frames == 32
    # the long prompt's scene is toy prompt 0's, so the clip judges read it over the whole video
    assert long.text == load_prompts(PromptSetConfig(n=1))[0].text
    with pytest.raises(Exception, match="even number"):
        load_prompts(PromptSetConfig(kind="toyworld_long", n=2, frames=33))


def test_the_long_block_is_validated(tmp_path):
    def problems(long: dict, prompts: dict | None = None) -> list[str]:
        document = {"name": "g", "metrics": ["toy_colour_fidelity"], "prompts": prompts or {"n": 2}, "long": long}
        try:
            parse_grid(document)
        except GridError as err:
            return [issue.message for issue in err.issues]
        return []

    assert problems({"frames": 64}) == [] and problems({"seconds": 8, "overlap": 2}) == []
    assert "give the length once" in problems({"frames": 64, "seconds": 8})[0]
    assert "say how long the videos are" in problems({"overlap": 2})[0]
    assert "did you mean 'overlap'" in problems({"frames": 64, "overlaps": 2})[0]
    assert "expected a whole number" in problems({"frames": 6.5})[0]
    assert "multiples of 2 latent frames" in problems({"frames": 64, "overlap": 3})[0]
    assert "overlap must be in (0, 8)" in problems({"frames": 64, "overlap": 8})[0]
    assert "keep only long.overlap" in problems({"frames": 64}, {"kind": "toyworld_long", "n": 2})[0]
    grid = parse_grid({"name": "g", "prompts": {"n": 2}, "long": {"seconds": 4}}, overrides=["long.overlap=4"])
    assert grid.long.overlap == 4 and grid.is_long
    prompt = load_prompts(grid.prompts)[0]
    assert grid.video_parts(prompt, fps=8) == ((prompt.text, 32),)


def test_shipped_long_grid_and_its_ci_smoke_grid_validate():
    assert validate_grid("long") == []
    grid = load_grid("long")
    assert grid.is_long and [c.label for c in grid.cells] == ["baseline", "arlon"]
    smoke = Path(__file__).resolve().parents[2] / "ablations" / "ci" / "long-smoke.yaml"
    assert validate_grid(smoke) == []
    # the CI gate runs the very cells of the long grid, on fewer prompts
    assert [c.id for c in load_grid(smoke).cells] == [c.id for c in grid.cells] and load_grid(smoke).prompts.n == 6


def test_a_long_run_makes_one_unit_per_long_video_with_its_segments(long_setup, tmp_path):
    grid, cache = long_setup
    store = RunStore(tmp_path / "run")
    summary = run_grid(grid, store, cache_dir=cache)
    assert summary.ok, summary.failures
    assert summary.counts["generate"].run == 4  # 2 cells x 2 long prompts
    baseline, arlon = (_records(store, cell.id) for cell in grid.cells)
    assert sorted(baseline) == sorted(arlon) == ["toy_long_heldout_0_00000-0", "toy_progressive_heldout_0_00001-0"]
    for records in (baseline, arlon):
        for record in records.values():
            assert record["shape"][0] == 16 and record["segments"] == [[0, 8], [8, 12], [12, 16]]
            assert record["overlap_latent_frames"] == 2 and record["segments_resumed"] == 0
    progressive = arlon["toy_progressive_heldout_0_00001-0"]
    assert [frames for _, frames in progressive["parts"]] == [8, 8]
    assert baseline["toy_long_heldout_0_00000-0"]["frames_sha256"] != arlon["toy_long_heldout_0_00000-0"]["frames_sha256"]
    # both are compared with the same AR plan: what ARLON injects, and the baseline never sees
    for name in baseline:
        assert baseline[name]["reference_sha256"] == arlon[name]["reference_sha256"]
    reference = read_video(store.reference_path(grid.cells[0].id, "toy_long_heldout_0_00000-0"))[0]
    assert reference.shape == (16, 16, 16, 3)
    assert not any(store.root.glob("cells/*/unfinished/*"))  # finished videos leave no segments behind
    # the clip judges read the long prompt's scene; the progressive prompt has none
    scores = {(r["video"], r["metric"]): r["value"] for r in store.read_scores(grid.cells[1].id)}
    assert scores[("toy_long_heldout_0_00000-0", "toy_colour_fidelity")] is not None
    assert scores[("toy_progressive_heldout_0_00001-0", "toy_colour_fidelity")] is None
    assert scores[("toy_long_heldout_0_00000-0", "toy_layout_iou")] is not None  # against the AR plan


def test_a_killed_long_video_resumes_from_its_finished_segments(long_setup, tmp_path, monkeypatch):
    grid, cache = long_setup
    whole = RunStore(tmp_path / "whole")
    assert run_grid(grid, whole, cache_dir=cache).ok
    store = RunStore(tmp_path / "run")
    real_save = SegmentStore.save_segment
    saved: list[int] = []

    def killed_in_the_second_video(self, index, latents):
        if len(saved) == 4:  # the first video's 3 segments and 1 of the second's are kept
            raise KeyboardInterrupt
        saved.append(index)
        real_save(self, index, latents)

    monkeypatch.setattr(SegmentStore, "save_segment", killed_in_the_second_video)
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, store, cache_dir=cache)
    assert len(list(store.root.glob("cells/*/unfinished/*/segment-*.pt"))) == 1
    assert sum(status.unfinished_segments for status in run_status(store, grid)) == 1
    monkeypatch.setattr(SegmentStore, "save_segment", real_save)
    summary = run_grid(grid, store, cache_dir=cache)
    assert summary.ok and summary.counts["generate"].skipped == 1 and summary.counts["generate"].run == 3
    resumed = [r for cell in grid.cells for r in _records(store, cell.id).values() if r["segments_resumed"]]
    assert [r["segments_resumed"] for r in resumed] == [1]
    for cell in grid.cells:  # bit for bit the videos of the run that was never killed
        mine, theirs = _records(store, cell.id), _records(whole, cell.id)
        assert {k: r["frames_sha256"] for k, r in mine.items()} == {k: r["frames_sha256"] for k, r in theirs.items()}
    first = store.video_path(grid.cells[1].id, "toy_long_heldout_0_00000-0")
    assert np.array_equal(read_video(first)[0], read_video(whole.video_path(grid.cells[1].id, "toy_long_heldout_0_00000-0"))[0])


def test_a_run_folder_knows_its_long_block():
    base = {"name": "g", "metrics": ["toy_colour_fidelity"], "prompts": {"n": 2}}
    short, longer = (parse_grid({**base, "long": {"frames": n}}) for n in (32, 64))
    changes = RunDefinition.of(short).differences(RunDefinition.of(longer))
    assert changes == ["long {'frames': 32, 'seconds': None, 'overlap': None} -> {'frames': 64, 'seconds': None, 'overlap': None}"]
    assert RunDefinition.of(short).differences(RunDefinition.of(parse_grid({**base, "long": {"frames": 32}}))) == []


def test_table1_grid_validates_and_stops_at_once_without_the_weights(capsys, monkeypatch, tmp_path):
    from cli_runner import run_main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # no Hugging Face cache holds the ids
    monkeypatch.setenv("ARLON_CACHE_DIR", str(tmp_path / "cache"))
    grid = load_grid("table1")
    assert validate_grid("table1") == [] and grid.preset == "paper" and grid.long.frames == 600
    code, out, err = run_main(capsys, monkeypatch, "ablate", "--grid", "table1", "--limit", "1", "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    for named in ("vae.pretrained 'hpcai-tech/OpenSora-VAE-v1.2'", "backbone.pretrained 'hpcai-tech/OpenSora-STDiT-v3'",
                  "text.pretrained 'DeepFloyd/t5-v1_1-xxl'"):
        assert named in err
    assert err.startswith("error: grid 'table1' cannot run here, weights or data missing:")
    assert not any((tmp_path / "cache").rglob("*.safetensors"))  # nothing was trained
    # a tiny grid loads only the shipped weights: nothing is missing, nothing stops it
    from arlon.pipelines.components import missing_pretrained
    from arlon.presets import tiny

    assert missing_pretrained(tiny()) == []
