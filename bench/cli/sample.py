"""`arlon-bench sample`: one prompt (or several progressive prompts) to an mp4: a clip, a long video, or a
clip guided by a reference video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from rich.console import Console

from arlon.checkpoints.io import output_file
from arlon.config import FIELD_RANGES, NON_NEGATIVE, ArlonConfig, FlowConfig, VideoConfig, check_range
from arlon.models.text_encoders import check_words, trained_caption_source, trained_vocabulary
from arlon.presets import get_preset
from arlon.pipelines.sample import sample_video
from arlon.weights import bundled_checkpoint_dir
from bench.cli.console import cli_console, note_text, styled
from bench.cli.options import CheckpointOpt, DeviceOpt, DtypeOpt, PresetOpt, RandomInitOpt, SeedOpt, SetOpt
from bench.cli.progress import rich_progress
from bench.errors import BenchError
from bench.overrides import apply_overrides

EXAMPLES = """Examples:

  arlon-bench sample --preset tiny --random-init --prompt "a red circle moves from left to right" --out video.mp4

  arlon-bench sample --prompt "a blue square moves right on a dark background" --frames 64 --out long.mp4

  arlon-bench sample --prompt "a blue square moves right on a dark background" \\
      --prompt "a green square moves down on a dark background" --frames 64 --out progressive.mp4

  arlon-bench sample --prompt "a red circle moves left on a dark background" --reference-video clip.mp4 --out guided.mp4
"""

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_device(name: str | None) -> torch.device | None:
    """`--device` -> torch.device, with one clear error for a device this machine does not have."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"--device {name!r}: not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name!r}: this machine has no CUDA GPU; use --device cpu")
    return device


def check_sampling_options(
    *, seed: int, steps: int | None, cfg_scale: float | None, frames: int | None, prompts: int = 1
) -> None:
    """The numeric options in the ranges of the config fields they stand for."""
    check_range("--seed", seed, NON_NEGATIVE)
    check_range("--steps", steps, FIELD_RANGES[FlowConfig]["num_sampling_steps"])
    check_range("--cfg-scale", cfg_scale, FIELD_RANGES[FlowConfig]["cfg_scale"])
    check_range("--frames", frames, FIELD_RANGES[VideoConfig]["num_frames"])
    if frames is not None and frames < prompts:
        raise BenchError(f"--frames {frames} cannot hold {prompts} prompts: give at least one frame per prompt")


def check_prompt_words(console: Console, cfg: ArlonConfig, prompts: list[str], checkpoint: str | None) -> None:
    """Refuse a prompt the model cannot show (no word it learned to draw); warn in one line about
    words it does not know (`arlon.models.text_encoders.check_words`)."""
    weights = checkpoint if checkpoint is not None else bundled_checkpoint_dir(cfg.name)
    vocabulary = trained_vocabulary(cfg.text, trained_caption_source(weights))
    if vocabulary is None:
        return
    model = f"preset {cfg.name!r}" if checkpoint is None else f"the model in {checkpoint}"
    for text in prompts:
        check = check_words(text, vocabulary, cfg.text.max_length)
        if check.refused:
            raise BenchError(check.refusal(model, vocabulary))
        warning = check.warning(model)
        if warning is not None:
            console.print(styled("warning:", "yellow", warning), soft_wrap=True)


def sample(
    prompt: Annotated[list[str], typer.Option("--prompt", help="Text prompt; repeat for progressive prompts.")],
    out: Annotated[str, typer.Option("--out", help="Output mp4 path.")] = "video.mp4",
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    seed: SeedOpt = 0,
    baseline: Annotated[bool, typer.Option("--baseline", help="Open-Sora-style generation without ARLON's injection.")] = False,
    frames: Annotated[
        Optional[int],
        typer.Option("--frames", help="Pixel frames of the video (default: the preset's clip); more makes a long video."),
    ] = None,
    reference_video: Annotated[
        Optional[str],
        typer.Option("--reference-video", help="Condition the clip on this video's semantics instead of AR codes (Figure 15)."),
    ] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Denoising steps (default: the preset's).")] = None,
    cfg_scale: Annotated[Optional[float], typer.Option("--cfg-scale", help="Classifier-free guidance scale.")] = None,
    checkpoint: CheckpointOpt = None,
    random_init: RandomInitOpt = False,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "fp32",
) -> None:
    """Generate a video from a text prompt and write it as an H.264 mp4.

    The tiny preset knows only the words of the toy world's captions: words it does not know get a
    warning, and a prompt with no word naming a colour, shape, motion or background it learned is refused.
    """
    if dtype not in DTYPES:
        raise BenchError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if reference_video is not None and (baseline or len(prompt) > 1 or frames):
        raise BenchError("--reference-video conditions one ARLON clip: drop --baseline, --frames and extra --prompt options")
    if reference_video is not None and not Path(reference_video).is_file():
        raise BenchError(f"--reference-video {reference_video}: no such file")
    output_file(out, "--out", example="video.mp4")  # refused before the minutes of sampling, not after
    cfg = apply_overrides(get_preset(preset), overrides or []).validate()
    check_sampling_options(seed=seed, steps=steps, cfg_scale=cfg_scale, frames=frames, prompts=len(prompt))
    if not all(text.strip() for text in prompt):
        raise BenchError("--prompt is empty: give the text of the video, e.g. --prompt \"a red circle moves right\"")
    torch_device = parse_device(device)
    console = cli_console()
    if random_init:
        console.print(note_text("--random-init: all weights are untrained, so the video shows noise, not the prompt"))
    else:
        check_prompt_words(cli_console(stderr=True), cfg, prompt, checkpoint)
    with rich_progress("denoising", console=console) as progress:
        result = sample_video(
            cfg, prompt, out, seed=seed, baseline=baseline, num_frames=frames, reference_video=reference_video,
            checkpoint_dir=checkpoint, random_init=random_init, num_steps=steps, cfg_scale=cfg_scale,
            device=torch_device, dtype=DTYPES[dtype], progress=progress,
        )
    console.print(
        f"wrote {result.path} ({result.num_frames} frames, {result.width}x{result.height}, {result.fps} fps, seed {result.seed})",
        soft_wrap=True,
    )
