"""A grid small enough to train, generate and score in seconds, shared by the grid-run tests.

`tiny()` shrunk like tests/arlon/training/conftest.py `mini_config()` (4-frame 16x16 clips, 2 block
pairs, narrow widths) with two-step recipes; the injector trains a few steps without EMA at a high
learning rate so that ARLON's videos differ visibly from the baseline's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.executors.local import LocalExecutor
from bench.executors.work import WorkContext, cell_stages
from bench.grids import Grid, load_grid
from bench.runner import needs_reference, plan_training, run_grid
from bench.store import RunStore

MINI_GRID = """\
name: mini
preset: tiny
base:
  video: {{num_frames: 4, height: 16, width: 16}}
  vae.tiny_channels: [8, 16]
  text.dim: 32
  ar_vq: {{codebook_size: 32, code_dim: 8, hidden_channels: 16}}
  dit_vq: {{codebook_size: 32, code_dim: 8, hidden_channels: 16}}
  ar: {{n_layer: 1, n_head: 2, n_embd: 32, n_ffn: 64, codebook_size: 32, text_dim: 32}}
  backbone: {{hidden_size: 32, depth: 2, caption_channels: 32}}
  injection.layers: first:1
  flow.num_sampling_steps: 2
train:
  all: {{steps: 2, batch_size: 4, warmup_steps: 0}}
  injector: {{steps: 4, ema_decay: 0.0, lr: 0.05}}
data: {{num_train_clips: 16, num_heldout_clips: 4}}
rows:
  - {{name: baseline, baseline: true}}
axes:
  injection.layers: {layers}
prompts: {{kind: toyworld, split: heldout, n: {prompts}}}
samples_per_prompt: {samples}
seed: 0
metrics: [toy_colour_fidelity, toy_layout_iou, toy_temporal_flicker]
"""


def write_mini_grid(directory: Path, layers: str = "[first:1, last:1]", prompts: int = 2, samples: int = 2) -> Path:
    path = Path(directory) / "mini.yaml"
    path.write_text(MINI_GRID.format(layers=layers, prompts=prompts, samples=samples))
    return path


def train_mini_cache(grid: Grid, cache_dir: Path) -> Path:
    """Train every stage the grid's cells need into `cache_dir` (what a first run would do)."""
    with_reference = needs_reference(grid)
    units, _ = plan_training([(cell, cell_stages(cell, with_reference)) for cell in grid.cells])
    context = WorkContext(str(cache_dir), str(cache_dir), "cpu")
    _, failures = LocalExecutor("cpu").train(units, context, lambda *event: None)
    assert not failures, failures
    return cache_dir


@pytest.fixture(scope="module")
def mini_cache(tmp_path_factory) -> Path:
    """A training cache holding the mini grid's checkpoints, trained once per test module."""
    root = tmp_path_factory.mktemp("mini")
    grid = load_grid(write_mini_grid(root))
    return train_mini_cache(grid, root / "cache")


def video_hashes(store: RunStore) -> dict[str, tuple[str, str]]:
    """{video record path: (mp4 sha256, frames sha256)} of a run: what two executors must agree on."""
    records = {p: json.loads(p.read_text()) for p in sorted(store.root.glob("cells/*/videos/*.json"))}
    return {str(p.relative_to(store.root)): (r["sha256"], r["frames_sha256"]) for p, r in records.items()}


def checkpoint_hashes(store: RunStore) -> dict[str, str]:
    """{stage: sha256 of its weights} over every cell of a run."""
    stages = {}
    for path in store.root.glob("cells/*/checkpoints.json"):
        stages.update({name: s["sha256"] for name, s in json.loads(path.read_text())["stages"].items()})
    return stages


def run_on_one_thread(grid: Grid, store_dir: Path, cache_dir: Path) -> RunStore:
    """Run `grid` with the local executor on one torch thread, as the worker executors' workers run:
    bit-for-bit equality needs equal thread counts, for training too (they order float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = RunStore(store_dir)
        assert run_grid(grid, store, "local", cache_dir=cache_dir).ok
    finally:
        torch.set_num_threads(threads)
    return store
