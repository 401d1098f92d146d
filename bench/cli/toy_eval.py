"""`arlon-bench toy-eval`: judge a trained tiny stack (VAE, VQ, AR, ARLON vs baseline) on held-out toy prompts."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from arlon.checkpoints.io import output_file
from arlon.pipelines.components import build_components
from arlon.presets import get_preset
from bench.cli.console import cli_console
from bench.cli.options import CheckpointOpt, DeviceOpt, SeedOpt, SetOpt
from bench.cli.progress import task_bars
from bench.cli.sample import parse_device
from bench.overrides import apply_overrides
from bench.toy_eval import CHECKS, ToyEvalConfig, ToyEvalReport, evaluate_tiny_stack

EXAMPLES = """Examples:

  arlon-bench toy-eval

  arlon-bench toy-eval --checkpoint ckpt/ --prompts 128 --out reports/tiny-eval.json

  arlon-bench toy-eval --check ar --check arlon --set injection.layers=last:14 --checkpoint ckpt-last14/
"""

# (figure, what it is) rows of the summary table, in order; missing ones are skipped.
SHOWN = (
    ("vae_psnr_db", "video VAE reconstruction PSNR (dB)"),
    ("vae_primary_all", "  VAE round trip keeps the primary object's colour, shape, motion"),
    ("vae_shape", "  VAE round trip keeps every object's shape"),
    ("vq_colour_and_motion_kept", "AR-ratio VQ round trip keeps colour and motion (share of videos)"),
    ("clean_colour_and_motion", "  the same judged on the clean clips (the judges' ceiling)"),
    ("ar_prompt_match", "AR samples show the primary object's colour, shape and motion (share of prompts)"),
    ("ar_primary_motion", "  the primary object's motion alone"),
    ("ar_all", "  ... and those of every object"),
    ("ar_colour", "  colour of every object"),
    ("ar_shape", "  shape of every object"),
    ("ar_motion", "  motion of every object"),
    ("ar_teacher_forced_primary_all", "  the same from teacher-forced codes (argmax after the true codes)"),
    ("ar_teacher_forced_primary_motion", "    primary object's motion only"),
    ("ar_from_1_frames_primary_all", "  the same continuing 1 true AR frame"),
    ("ar_from_1_frames_primary_motion", "    primary object's motion only"),
    ("ar_from_2_frames_primary_all", "  the same continuing 2 true AR frames"),
    ("ar_from_2_frames_primary_motion", "    primary object's motion only"),
    ("ar_from_3_frames_primary_all", "  the same continuing 3 true AR frames"),
    ("ar_from_3_frames_primary_motion", "    primary object's motion only"),
    ("arlon_layout_iou", "ARLON toy_layout_iou with the AR-decoded video"),
    ("baseline_layout_iou", "baseline toy_layout_iou with the AR-decoded video"),
    ("arlon_minus_baseline_layout_iou", "  ARLON minus baseline (paired)"),
    ("ar_motion_presence", "AR samples: objects asked to travel that travel (motion presence)"),
    ("arlon_motion_presence", "ARLON motion presence"),
    ("baseline_motion_presence", "baseline motion presence"),
    ("arlon_minus_baseline_motion_presence", "  ARLON minus baseline (paired)"),
    ("ar_motion_stillness", "AR samples: objects asked to stay that stay (motion stillness)"),
    ("arlon_motion_stillness", "ARLON motion stillness"),
    ("baseline_motion_stillness", "baseline motion stillness"),
    ("arlon_motion_accuracy", "ARLON toy_motion_accuracy"),
    ("baseline_motion_accuracy", "baseline toy_motion_accuracy"),
    ("arlon_minus_baseline_motion_accuracy", "  ARLON minus baseline (paired)"),
    ("arlon_true_codes_motion_accuracy", "  ARLON from the clips' true AR codes (the injection's ceiling)"),
    ("arlon_prompt_match", "ARLON videos match the prompt: every object's colour, shape, motion (share of prompts)"),
    ("arlon_primary_match", "  the primary object's"),
    ("arlon_true_codes_prompt_match", "  ARLON from the clips' true AR codes"),
    ("baseline_prompt_match", "baseline videos match the prompt (share of prompts)"),
    ("baseline_primary_match", "  the primary object's"),
)


def toy_eval(
    checkpoint: CheckpointOpt = None,
    prompts: Annotated[int, typer.Option("--prompts", help="Held-out prompts to judge.")] = 64,
    check: Annotated[
        Optional[list[str]], typer.Option("--check", help=f"Check to run (repeatable): {', '.join(CHECKS)}. Default: all.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Videos generated per batch.")] = 16,
    seed: SeedOpt = 0,
    overrides: SetOpt = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Also write every figure and interval to this JSON file.")] = None,
    device: DeviceOpt = None,
) -> None:
    """Judge the tiny preset's trained stages against the toy world's ground truth, each check against its target."""
    if out:
        output_file(out, "--out", example="toy-eval.json")  # refused before the evaluation, not after it
    cfg = apply_overrides(get_preset("tiny"), overrides or []).validate()
    eval_cfg = ToyEvalConfig(num_prompts=prompts, seed=seed, batch_size=batch_size, checks=tuple(check or CHECKS)).validate()
    components = build_components(cfg, checkpoint_dir=checkpoint, device=parse_device(device) or "cpu")
    console = cli_console()
    with task_bars(console) as progress:
        report = evaluate_tiny_stack(components, eval_cfg, progress)
    console.print(report_table(report))
    if out:
        console.print(f"wrote {report.save(out)}", soft_wrap=True)


def report_table(report: ToyEvalReport) -> Table:
    table = Table(title=f"tiny stack on {report.config['num_prompts']} held-out prompts")
    table.add_column("figure", ratio=1)  # the one that wraps on a narrow terminal
    for column in ("value", "95% interval", "target"):
        table.add_column(column, no_wrap=True)
    targets = {name.removesuffix("_low"): spec for name, spec in report.targets.items()}
    for name, text in SHOWN:
        estimate = report.intervals.get(name)
        value = report.figures.get(name, estimate.mean if estimate else None)
        if value is None:
            continue
        interval = f"[{estimate.low:.3f}, {estimate.high:.3f}]" if estimate else ""
        target = targets.get(name)
        verdict = ""
        if target is not None:
            mark = ("pass", "green") if target["passed"] else ("miss", "red")
            bound = "low > 0" if name.startswith("arlon_minus") else f">= {target['target']:g}"
            verdict = Text.assemble(f"{bound} ", mark)
        table.add_row(Text(text), f"{value:.3f}", Text(interval), verdict)
    return table
