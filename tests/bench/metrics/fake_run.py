"""A run folder with videos but no training: the mini grid's cells, each video a small moving
pattern written straight into the store, so scoring, export and import can be tested in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arlon.data.video_io import write_video
from bench.executors.work import seed_for
from bench.grids import Grid, load_grid
from bench.prompts import load_prompts
from bench.store import RunStore, file_sha256
from tests.bench.mini_run import write_mini_grid


def pattern_video(seed: int, frames: int = 6, size: int = 32) -> np.ndarray:
    """uint8 (T, H, W, 3): a random background with a bright square drifting right."""
    rng = np.random.default_rng(seed)
    video = np.repeat(rng.integers(0, 120, (1, size, size, 3), dtype=np.uint8), frames, axis=0)
    for t in range(frames):
        video[t, 8:16, 2 + 2 * t : 10 + 2 * t] = 230
    return video


def make_fake_run(
    root: Path, prompts: int = 2, samples: int = 2, fps: int = 8, frames: int = 6, single_cell: bool = False,
    size: int = 32,
) -> tuple[RunStore, Grid]:
    """The mini grid's three cells (only its baseline row with `single_cell`), each with
    prompts x samples videos of `frames` frames."""
    root.mkdir(parents=True, exist_ok=True)
    path = write_mini_grid(root, prompts=prompts, samples=samples)
    if single_cell:  # drop the axes: the baseline row alone
        lines = path.read_text().splitlines()
        at = lines.index("axes:")
        path.write_text("\n".join(lines[:at] + lines[at + 2 :]) + "\n")
    grid = load_grid(path)
    store = RunStore(root / "run")
    store.save_grid(grid, None)
    for c, cell in enumerate(grid.cells):
        store.save_cell(cell)
        for p, prompt in enumerate(load_prompts(grid.prompts)):
            for k in range(samples):
                video = f"{prompt.id}-{k}"
                path = write_video(store.video_path(cell.id, video), pattern_video(100 * c + 10 * p + k, frames, size), fps=fps)
                record = {"video": video, "prompt_id": prompt.id, "prompt": prompt.text, "sample": k,
                          "seed": seed_for(prompt.id, k, grid.seed), "fps": fps, "sha256": file_sha256(path)}
                store.write_video_record(cell.id, video, record)
    return store, grid
