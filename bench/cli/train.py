"""`arlon-bench train`: train one stage (and what it needs), or every stage, reusing cached checkpoints."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Annotated, Optional

import torch
import typer

from arlon.checkpoints.io import check_output_dir
from arlon.presets import get_preset
from arlon.training import DataConfig, TrainConfig, TrainingSession, default_train_config, stages_for
from arlon.training.cache import TrainedStage
from arlon.training.distributed import Distributed, from_environment, shutdown
from arlon.training.data import check_source
from arlon.training.shards import SHARD_SIZE
from arlon.training.stages import DEFAULT_RECIPE, check_stage
from bench.cli.console import cli_console, error_text
from bench.cli.options import DeviceOpt, PresetOpt, SetOpt
from bench.cli.progress import task_bars
from bench.cli.run_options import ExecutorOpt, WorkersOpt
from bench.cli.sample import parse_device
from bench.errors import BenchError
from bench.executors import make_executor
from bench.overrides import apply_overrides
from bench.grids import Cell, load_grid
from bench.runner import train_stages

EXAMPLES = """Examples:

  arlon-bench train --preset tiny --all

  arlon-bench train --preset tiny --all --recipe quick

  ARLON_CACHE_DIR=$(mktemp -d) arlon-bench train --preset tiny --all --no-shipped --out retrained/

  arlon-bench train --stage injector --set injection.layers=first:8 --set noise.strategy=gaussian

  arlon-bench train --stage vae --steps 20 --set train.batch_size=4 --set data.num_train_clips=64

  arlon-bench train --all --data clips.csv --out checkpoints/

  torchrun --nproc_per_node 8 --no-python arlon-bench train --preset paper --stage injector --data /data/arlon-latents --steps 100000 --set train.batch_size=16

Checkpoints are cached under $ARLON_CACHE_DIR (default ~/.cache/arlon-bench), keyed by everything that determines them; an interrupted stage resumes where it stopped when the same command runs again.
"""

# Metrics shown in the summary table, when a stage reports them.
SHOWN_METRICS = (
    "heldout_psnr_db",
    "heldout_mse",
    "codebook_usage",
    "heldout_loss",
    "heldout_code_accuracy",
    "heldout_loss_without_injection",
)


@dataclass(frozen=True)
class TrainingOptions:
    """The `train.*` and `data.*` fields that `--set` reaches besides the model config."""

    train: TrainConfig
    data: DataConfig


def train(
    stage: Annotated[
        Optional[list[str]], typer.Option("--stage", help="Stage to train (repeatable): vae, ar_vq, dit_vq, ar, backbone, injector.")
    ] = None,
    all_stages: Annotated[bool, typer.Option("--all", help="Train every stage of the preset, reusing cached ones (independent stages side by side when there are several workers).")] = False,
    preset: PresetOpt = "tiny",
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="Named recipe: full (the one behind the shipped tiny weights) or quick (the tiny preset in under "
            "20 minutes on 2 CPU cores, for CI and tests).",
        ),
    ] = DEFAULT_RECIPE,
    overrides: SetOpt = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimiser steps of every stage trained (= --set train.steps=N).")] = None,
    data: Annotated[str, typer.Option("--data", help="'toyworld' or a CSV of video paths and captions.")] = "toyworld",
    out: Annotated[Optional[str], typer.Option("--out", help="With --all: also gather every component in this directory.")] = None,
    device: DeviceOpt = None,
    executor: ExecutorOpt = "auto",
    workers: WorkersOpt = None,
    shipped: Annotated[
        bool,
        typer.Option(
            "--shipped/--no-shipped",
            help="Take the package's shipped tiny checkpoints as cached; --no-shipped trains those stages too "
            "(to re-create and check them).",
        ),
    ] = True,
    random_init: Annotated[
        bool,
        typer.Option(
            "--random-init",
            help="Build the released weights the preset loads (Open-Sora's VAE and STDiT3) at random: a smoke run "
            "of the paper preset's training path on a machine without them. Kept apart in the cache.",
        ),
    ] = False,
) -> None:
    """Train ARLON's components (and the stages they need), reusing cached checkpoints.

    `--set train.<field>=V` changes the recipe of the stages named by --stage (every stage with
    --all; the stages they depend on keep their default recipes), `--set data.<field>=V` the clips;
    other `--set` keys change the model config.
    """
    if all_stages == bool(stage):
        raise BenchError("give --stage NAME (repeatable) or --all")
    for name in stage or []:
        check_stage(name)
    if out is not None and not all_stages:
        raise BenchError("--out gathers every component of the preset: use it with --all")
    if out is not None:
        check_output_dir(out, "--out")  # refused before training, not after it
    model_overrides, recipe_overrides = split_overrides(overrides or [], steps)
    cfg = apply_overrides(get_preset(preset), model_overrides)
    data_cfg = apply_overrides(TrainingOptions(TrainConfig(), DataConfig(source=data)), [o for o in recipe_overrides if o.startswith("data.")]).data
    check_source(data_cfg)
    train_overrides = [o for o in recipe_overrides if o.startswith("train.")]
    asked = stages_for(cfg) if all_stages else list(stage)
    as_shipped = all_stages and recipe == DEFAULT_RECIPE and not overrides and steps is None and data == "toyworld"
    grid_cells = main_grid_injector_cells(preset) if as_shipped else []
    recipes = {name: default_train_config(name, cfg, recipe) for name in stages_for(cfg)}
    recipes.update(stage_recipes(cfg, asked, train_overrides, recipe))
    console = cli_console()
    torch_device = parse_device(device)
    ranks = from_environment()
    if ranks.is_distributed or random_init:
        # In this process (no executor): torchrun started the processes, or a smoke run of random weights.
        train_in_process(cfg, asked, recipes, data_cfg, torch_device, shipped, ranks, console, random_init)
        return
    runner = make_executor(executor, workers=workers, device=str(torch_device) if torch_device else None)
    try:
        with task_bars(console) as progress:
            cached, failures = train_stages(
                cfg, asked, recipes, data_cfg, runner, progress=progress, use_shipped=shipped, injector_cells=grid_cells
            )
    finally:
        runner.close()
    if failures:
        for failed in failures:
            console.print(error_text(f"{failed.unit}: {failed.error}"), soft_wrap=True)
        raise typer.Exit(1)
    # Every stage is in the cache now: this session only finds them.
    session = TrainingSession(cfg, data=data_cfg, train=recipes, device=torch_device, use_shipped=shipped)
    for name in (s for s in stages_for(cfg) if s in cached):
        console.print(summary_line(session.ensure(name), trained_now=not cached[name]), soft_wrap=True)
    variants = [
        (cell, TrainingSession(cell.config, data=cell.data, train=dict(cell.recipes), device=torch_device, use_shipped=shipped))
        for cell in grid_cells
    ]
    for cell, variant in variants:
        label = f"injector ({cell.label})"
        console.print(f"{cell.label}: " + summary_line(variant.ensure("injector"), trained_now=not cached[label]), soft_wrap=True)
    if all_stages:
        checkpoint_dir = session.checkpoint_dir(out)
        for _, variant in variants:
            variant.gather_variant("injector", checkpoint_dir)
        console.print(f"checkpoints: {checkpoint_dir}  (arlon-bench sample --checkpoint {checkpoint_dir} ...)", soft_wrap=True)


def train_in_process(
    cfg, stages, recipes, data_cfg, device, shipped, ranks: Distributed, console, random_init: bool = False
) -> None:
    """Every rank trains `stages` in this process, one after the other (no executor: under torchrun it
    started the processes); rank 0 shows the progress and the summary (arlon/training/distributed.py)."""
    try:
        with task_bars(console) if ranks.is_main else contextlib.nullcontext() as progress:
            session = TrainingSession(
                cfg, data=data_cfg, train=recipes, device=device, use_shipped=shipped, dist=ranks, progress=progress,
                random_init=random_init,
            )
            done = [session.ensure(name) for name in stages]
        if ranks.is_main and ranks.is_distributed:
            console.print(f"{ranks.world_size} ranks, global batch per stage: "
                          + ", ".join(f"{name} {recipes[name].batch_size}" for name in stages), soft_wrap=True)
            for stage in done:
                console.print(summary_line(stage, trained_now=not stage.cached), soft_wrap=True)
    finally:
        shutdown()


PREPARE_EXAMPLES = """Examples:

  arlon-bench prepare --preset paper --data clips.csv --out /data/arlon-latents

  torchrun --nproc_per_node 8 --no-python arlon-bench prepare --preset paper --data clips.csv --out /data/arlon-latents --dtype bfloat16

  arlon-bench train --preset paper --stage injector --data /data/arlon-latents --steps 100000

  arlon-bench prepare --preset tiny --data toyworld --out toy-latents --min-frames 8 --max-frames 16 --clips 512

The folder holds checksummed shards of latents (index.json lists them); an interrupted run resumes, and damaged shards are encoded again. Train on it with --data FOLDER.
"""

# Section 4.1: "trained ... with a frame range from 51 to 136". Other presets default to their one length.
FRAME_RANGES = {"paper": (51, 136)}


def prepare(
    out: Annotated[str, typer.Option("--out", help="Folder to write the shards to (resumes one of the same settings).")],
    preset: PresetOpt = "tiny",
    data: Annotated[str, typer.Option("--data", help="'toyworld' or a CSV of video paths and captions.")] = "toyworld",
    min_frames: Annotated[Optional[int], typer.Option("--min-frames", help="Shortest clip (default: 51 for the paper preset, else video.num_frames).")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", help="Longest clip (default: 136 for the paper preset, else video.num_frames).")] = None,
    clips: Annotated[Optional[int], typer.Option("--clips", help="Training clips to encode (default: every training row of the CSV; data.num_train_clips toy clips).")] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Clips per shard file.")] = SHARD_SIZE,
    dtype: Annotated[str, typer.Option("--dtype", help="Latent storage: float32 or bfloat16 (half the disk).")] = "float32",
    overrides: SetOpt = None,
    device: DeviceOpt = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="Encode with a randomly initialised VAE (smoke runs without Open-Sora's weights).")
    ] = False,
) -> None:
    """Encode training clips once into sharded latents, at every length bucket in [min, max] frames.

    Under torchrun every rank encodes its share of the shards. Train on the folder with
    `arlon-bench train --data FOLDER`: the stages stream it by length bucket.
    """
    storage = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(dtype)
    if storage is None:
        raise BenchError(f"--dtype {dtype!r}: choose float32 or bfloat16")
    model_overrides, recipe_overrides = split_overrides(overrides or [], None)
    cfg = apply_overrides(get_preset(preset), model_overrides)
    data_cfg = apply_overrides(TrainingOptions(TrainConfig(), DataConfig(source=data)), [o for o in recipe_overrides if o.startswith("data.")]).data
    check_source(data_cfg)
    low, high = FRAME_RANGES.get(preset, (cfg.video.num_frames, cfg.video.num_frames))
    ranks = from_environment()
    console = cli_console()
    try:
        with task_bars(console) if ranks.is_main else contextlib.nullcontext() as progress:
            session = TrainingSession(
                cfg, data=data_cfg, device=parse_device(device), dist=ranks, progress=progress, random_init=random_init
            )
            prepared = session.prepare_shards(
                out, min_frames=min_frames or low, max_frames=max_frames or high, shard_size=shard_size, dtype=storage,
                num_clips=clips,
            )
        if ranks.is_main:
            index = prepared.index
            console.print(
                f"{index['num_clips']} clips in {len(index['shards'])} shards ({prepared.encoded_now} encoded now), "
                f"{index['num_skipped']} skipped; lengths {', '.join(map(str, index['spec']['buckets']))} frames  [{prepared.folder}]",
                soft_wrap=True,
            )
    finally:
        shutdown()


# The grid of the README's main command per preset. `train --preset tiny --all` with the shipped
# recipe trains its cells' injectors too; they ship in arlon/weights/tiny/variants/, so that the
# command's cold run samples without training anything.
MAIN_GRIDS = {"tiny": "layers"}


def main_grid_injector_cells(preset: str) -> list[Cell]:
    """The cells of the preset's main grid that load an injector (none for a preset without one)."""
    if preset not in MAIN_GRIDS:
        return []
    return [cell for cell in load_grid(MAIN_GRIDS[preset]).cells if not cell.is_baseline]


def stage_recipes(
    cfg, stages: list[str], train_overrides: list[str], recipe: str = DEFAULT_RECIPE
) -> dict[str, TrainConfig]:
    """The recipe of each stage in `stages` with the `train.*` overrides applied.

    Only the stages asked for are changed: the stages they depend on keep their default recipes
    (and so their cache keys), so `--stage backbone --set train.steps=1000` reuses the cached VAE.
    """
    return {
        name: apply_overrides(TrainingOptions(default_train_config(name, cfg, recipe), DataConfig()), train_overrides).train
        for name in stages
    }


def split_overrides(overrides: list[str], steps: int | None) -> tuple[list[str], list[str]]:
    """(model config overrides, train.* / data.* overrides); --steps becomes train.steps."""
    recipe = [o for o in overrides if o.split("=", 1)[0].strip().startswith(("train.", "data."))]
    model = [o for o in overrides if o not in recipe]
    if steps is not None:
        recipe.append(f"train.steps={steps}")
    return model, recipe


def summary_line(stage: TrainedStage, trained_now: bool) -> str:
    """`vae: trained 700 steps (recipe full) in 212.3 s, loss 0.1102 -> 0.0041, heldout_psnr_db=29.1 [dir]`."""
    metrics = stage.metrics
    recipe = stage.manifest.get("train", {}).get("recipe", "custom")
    steps = f"{stage.manifest['step']} steps (recipe {recipe})"
    status = f"trained {steps} in {stage.manifest['wall_s']:.1f} s" if trained_now else f"cached, {steps}"
    loss = f"loss {metrics.get('loss_first', math.nan):.4f} -> {metrics.get('loss_final', math.nan):.4f}"
    shown = "".join(f", {name}={metrics[name]:.4g}" for name in SHOWN_METRICS if name in metrics)
    return f"{stage.stage}: {status}, {loss}{shown}  [{stage.directory}]"
