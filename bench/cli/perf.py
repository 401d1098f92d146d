"""`arlon-bench perf`: parameters, FLOPs, latency and peak memory per component (paper Table 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.table import Table
from rich.text import Text

from arlon.checkpoints.io import atomic_write_bytes, atomic_write_json, check_output_dir, output_file
from arlon.presets import get_preset
from bench.cli.console import cli_console, note_text
from bench.cli.options import DeviceOpt, DtypeOpt, PresetOpt, SetOpt
from bench.cli.progress import rich_progress, task_bars
from bench.cli.sample import DTYPES, parse_device
from bench.errors import BenchError
from bench.overrides import apply_overrides
from bench.perf import GFLOPS_NOTE, measure_components
from bench.report.efficiency import efficiency_markdown

EXAMPLES = """Examples:

  arlon-bench perf --preset tiny

  arlon-bench perf --preset paper --device cuda --dtype bf16 --out bench/perf/paper-h100.json

  arlon-bench perf --preset paper --count-only     # parameters and FLOPs on any machine

  arlon-bench perf --preset tiny --md table4.md    # the Table 4 layout beside the paper's figures

  arlon-bench perf --scoring --md bench/perf/scoring-cpu.md   # official VBench vs native scoring, same videos

  arlon-bench perf --scoring --videos runs/layers/cells/<cell>/videos --metrics subject_consistency
"""


def perf(
    preset: PresetOpt = "tiny",
    overrides: SetOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "fp32",
    arlon_steps: Annotated[int, typer.Option("--arlon-steps", help="Denoising steps counted for ARLON.")] = 10,
    baseline_steps: Annotated[int, typer.Option("--baseline-steps", help="Denoising steps counted for the baseline.")] = 30,
    count_only: Annotated[
        bool, typer.Option("--count-only", help="Build on the meta device: parameters and FLOPs only, nothing runs.")
    ] = False,
    out: Annotated[Optional[str], typer.Option("--out", help="Write the report as JSON to this file.")] = None,
    md: Annotated[
        Optional[str], typer.Option("--md", help="Write the Table 4 layout (measured beside the paper's figures) as Markdown.")
    ] = None,
    scoring: Annotated[
        bool, typer.Option("--scoring", help="Instead: time VBench scoring, official backend vs native, on the same videos.")
    ] = False,
    videos: Annotated[
        Optional[str], typer.Option("--videos", help="With --scoring: a folder of .mp4s (default: synthetic ones).")
    ] = None,
    metrics: Annotated[
        Optional[str], typer.Option("--metrics", help="With --scoring: comma-separated dimensions (default: every native one).")
    ] = None,
    num_videos: Annotated[int, typer.Option("--num-videos", help="With --scoring: synthetic videos.")] = 3,
    frames: Annotated[int, typer.Option("--frames", help="With --scoring: frames per synthetic video.")] = 16,
    size: Annotated[int, typer.Option("--size", help="With --scoring: side of the synthetic videos, in pixels.")] = 128,
) -> None:
    """Measure each component's parameters, FLOPs, latency and peak memory with random weights
    (--scoring: VBench scoring speed, official vs native)."""
    for option, path in (("--out", out), ("--md", md)):
        if path:
            output_file(path, option)  # refused before the measurement, not after it
    if scoring:
        _scoring(videos, metrics, num_videos, frames, size, device, out, md)
        return
    if dtype not in DTYPES:
        raise BenchError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    cfg = apply_overrides(get_preset(preset), overrides or []).validate()
    run_device = parse_device(device) or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    console = cli_console()
    if preset == "paper" and run_device.type == "cpu" and not count_only:
        console.print(note_text("the paper preset does not run on a CPU: counting parameters and FLOPs only"))
        count_only = True
    with rich_progress("components", console=console) as progress:
        report = measure_components(
            cfg, torch.device("meta") if count_only else run_device, DTYPES[dtype],
            arlon_steps=arlon_steps, baseline_steps=baseline_steps, progress=progress,
        )
    table = Table(title=f"{report.preset} preset, {report.video}, {report.dtype} on {report.device}", caption=GFLOPS_NOTE)
    columns = ("component", "call", "params", "trainable", "GFLOPs/forward (Table 4)", "GFLOPs/call (as run)", "latency s", "peak GiB")
    for column in columns:
        table.add_column(column, justify="left" if column in ("component", "call") else "right")
    for row in report.rows:
        table.add_row(
            row.component, row.call, f"{row.params_total / 1e6:.1f}M", f"{row.params_trainable / 1e6:.1f}M",
            f"{row.gflops_per_forward:,.1f}", f"{row.gflops_call:,.1f}" + (f" (batch {row.batch})" if row.batch > 1 else ""),
            _fmt(row.latency_s, "{:.3f}"), _fmt(row.peak_mem_gib, "{:.2f}"),
        )
    for name, total in report.totals().items():
        table.add_row(
            Text(name, style="bold"), "end to end", "", "", f"{total['gflops_per_forward']:,.1f}", f"{total['gflops_call']:,.1f}",
            _fmt(total["latency_s"], "{:.2f}"), "",
        )
    console.print(table)
    if out:
        atomic_write_json(Path(out), report.to_dict())
        console.print(f"wrote {out}", soft_wrap=True)
    if md:
        atomic_write_bytes(Path(md), efficiency_markdown(report).encode())
        console.print(f"wrote {md}", soft_wrap=True)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _scoring(videos: str | None, metrics: str | None, num_videos: int, frames: int, size: int, device: str | None,
             out: str | None, md: str | None) -> None:
    import tempfile

    from bench.scoring_perf import benchmark_scoring, folder_videos, synthetic_videos

    console = cli_console()
    dimensions = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    with tempfile.TemporaryDirectory(prefix="arlon-scoring-perf-") as tmp:
        if videos:
            items, description = folder_videos(videos), f"the videos of {videos}"
        else:
            items = synthetic_videos(tmp, num_videos, frames, size)
            description = f"{num_videos} synthetic videos of {frames} frames at {size}x{size}"
        console.print(f"scoring {description} with the official backend, then the native one", soft_wrap=True)
        with task_bars(console) as progress:
            report = benchmark_scoring(items, dimensions, device=str(parse_device(device)) if device else None,
                                       description=f"{len(items)} videos ({description})", progress=progress)
    table = Table(title=f"VBench scoring, {report.videos}, on {report.device}")
    for column in ("dimension", "official s", "native s", "speed-up", "max |diff|"):
        table.add_column(column, justify="left" if column == "dimension" else "right")
    for row in report.rows():
        table.add_row(row["dimension"], _fmt(row["official_s"], "{:.1f}"), _fmt(row["native_s"], "{:.1f}"),
                      _fmt(row["speedup"], "{:.2f}x"), _fmt(row["max_abs_diff"], "{:.1e}"))
    console.print(table)
    for name, run in (("official", report.official), ("native", report.native)):
        for failure in run.failures:
            console.print(note_text(f"{name}: {failure}"), soft_wrap=True)
    if out:
        atomic_write_json(Path(out), report.to_dict())
        console.print(f"wrote {out}", soft_wrap=True)
    if md:
        atomic_write_bytes(Path(md), report.to_markdown().encode())
        console.print(f"wrote {md}", soft_wrap=True)


GPU_CHECK_EXAMPLES = """Examples:

  arlon-bench gpu-check --out bench/perf/gpu-check-h100

  PYTHONPATH=. python -m bench gpu-check --out $OUT            # a machine with torch but without this package installed

  arlon-bench gpu-check --device cpu --tiny --no-tests --repeats 1 --out /tmp/gpu-check   # the dry run CI makes

Writes gpu-check.md and gpu-check.json: STDiT3 step time and FLOP utilisation, AR code time, ARLON and baseline end to end, peak memory, one injector training step, the CUDA tests.
"""


def gpu_check(
    out: Annotated[str, typer.Option("--out", help="Folder for gpu-check.md and gpu-check.json.")],
    preset: PresetOpt = "paper",
    device: Annotated[str, typer.Option("--device", help="cuda, cuda:N, or cpu (with --tiny: the dry run).")] = "cuda",
    tiny: Annotated[bool, typer.Option("--tiny", help="The tiny preset's shapes: a dry run of every step in seconds.")] = False,
    arlon_steps: Annotated[int, typer.Option("--arlon-steps", help="ARLON's denoising steps (Table 4: 10).")] = 10,
    baseline_steps: Annotated[int, typer.Option("--baseline-steps", help="The baseline's denoising steps (Table 4: 30).")] = 30,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed calls per measurement, after one warm-up (median).")] = 3,
    tests: Annotated[bool, typer.Option("--tests/--no-tests", help="Run `pytest -m cuda` too.")] = True,
    peak_tflops: Annotated[Optional[float], typer.Option("--peak-tflops", help="The device's dense bf16 peak, when it is not in the built-in table.")] = None,
) -> None:
    """Measure the paper preset's GPU figures in one run, with random weights (bench/gpu_check.py)."""
    from bench.gpu_check import check_config, report_markdown, run_gpu_check, write_report

    torch_device = parse_device(device)
    if torch_device is None or (torch_device.type == "cuda" and not torch.cuda.is_available()):
        raise BenchError("--device cuda: no GPU visible here; use --device cpu --tiny for the dry run")
    if torch_device.type != "cuda" and not tiny:
        raise BenchError("the paper preset's GPU figures need a GPU: pass --device cuda, or --tiny for a CPU dry run")
    check_output_dir(out, "--out")
    console = cli_console()
    dtype = torch.bfloat16 if torch_device.type == "cuda" else torch.float32
    cfg = check_config(preset, tiny)
    report = run_gpu_check(
        cfg, torch_device, dtype, arlon_steps=arlon_steps, baseline_steps=baseline_steps, repeats=repeats,
        run_tests=tests, peak_tflops=peak_tflops, progress=lambda text: console.print(Text(f"... {text}", style="dim")),
    )
    md, _ = write_report(report, out)
    console.print(report_markdown(report), markup=False, soft_wrap=True)
    console.print(f"written: {md} and gpu-check.json", soft_wrap=True)
