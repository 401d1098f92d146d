"""Stored runs with videos and scores but no training, for tests and screenshots of the report page:
a grid's cells, each video a small pattern written straight into the store, each score a synthetic
value (tests/bench/report/report_data.py) stored under the key the scorer would give it, so that
`bench.report.write_report` reads them as it reads a real run's."""

from __future__ import annotations

from pathlib import Path

from arlon.data.video_io import write_video
from bench.executors.work import score_key, seed_for
from bench.grids import Grid, load_grid
from bench.prompts import load_prompts
from bench.store import RunStore, file_sha256
from tests.bench.metrics.fake_run import pattern_video
from tests.bench.report.report_data import TABLE3_METRICS, synthetic_scores

TOY_METRICS = (
    "toy_colour_fidelity", "toy_shape_accuracy", "toy_motion_accuracy", "toy_layout_iou",
    "toy_object_layout_iou", "toy_temporal_flicker", "toy_trajectory_error",
)

# Two varied axes (the shipped fusion.yaml and noise.yaml crossed): a 3 x 3 matrix of cells.
FUSION_NOISE_GRID = """\
name: fusion_noise
description: Fusion of the AR condition crossed with the injector's noise augmentation
preset: tiny
base:
  injection.layers: first:14
  injection.condition_vq: dit
axes:
  injection.fusion: [adaptive_norm, controlnet, mlp_adapter]
  noise.strategy: [none, gaussian, uncertainty]
prompts: {{kind: toyworld, split: heldout, n: {prompts}, seed: 0}}
samples_per_prompt: 1
seed: 0
metrics: [{metrics}]
"""


def fusion_noise_grid(directory: Path, prompts: int = 6, metrics: tuple[str, ...] = TOY_METRICS) -> Grid:
    path = Path(directory) / "fusion_noise.yaml"
    path.write_text(FUSION_NOISE_GRID.format(prompts=prompts, metrics=", ".join(metrics)))
    return load_grid(path)


def table3_vbench_grid(prompts: int = 6) -> Grid:
    """The shipped table3 grid (nine rows) scoring the paper's six VBench columns."""
    return load_grid("table3", [f"metrics=[{', '.join(TABLE3_METRICS)}]", f"prompts.n={prompts}"])


def stored_run(root: Path, grid: Grid, shift: dict[str, float] | None = None, videos: bool = True) -> RunStore:
    """A run folder of `grid` under `root` holding one small video per (cell, prompt, sample) and a
    synthetic score per video and metric (`shift` moves a cell's mean, by label)."""
    prompts = load_prompts(grid.prompts)
    store = RunStore(Path(root))
    store.save_grid(grid, None)
    scores = synthetic_scores(grid, prompts=len(prompts), samples=grid.samples_per_prompt, shift=shift)
    for c, cell in enumerate(grid.cells):
        store.save_cell(cell)
        records = []
        for p, prompt in enumerate(prompts):
            for k in range(grid.samples_per_prompt):
                video = f"{prompt.id}-{k}"
                path = store.video_path(cell.id, video)
                if videos:
                    write_video(path, pattern_video(100 * c + 10 * p + k, frames=4, size=16), fps=8)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"")
                record = {"video": video, "prompt_id": prompt.id, "prompt": prompt.text, "sample": k,
                          "seed": seed_for(prompt.id, k, grid.seed), "fps": 8, "sha256": file_sha256(path)}
                store.write_video_record(cell.id, video, record)
                mine = scores[(scores["cell_id"] == cell.id) & (scores["video"] == f"p{p:02d}-{k}")]
                for score in mine.itertuples():
                    weight = None if score.weight != score.weight or score.weight is None else float(score.weight)
                    records.append({"video": video, "metric": score.metric, "value": float(score.value),
                                    "weight": weight, "key": score_key(record, score.metric, prompt.id)})
        store.add_scores(cell.id, records)
    return store
