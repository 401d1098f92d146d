"""`arlon-bench gpu-check`: the paper preset's GPU figures in one prepared command (Table 4 and beyond).

A GPU is lent now and then, briefly, so every check is prepared here and runs in one go, with random
weights, on one device, writing `gpu-check.md` and `gpu-check.json` to a folder:

1. STDiT3-XL/2 forward in bf16 on a 68-frame 512x512 latent, classifier-free guidance batch of 2:
   seconds per step, and model FLOP utilisation: FLOPs counted as `arlon-bench perf` counts them
   (`torch.utils.flop_counter`) over the seconds, against the device's dense bf16 peak;
2. the AR codes of one video (326 tokens for 68 frames at 512x512, KV cache): seconds;
3. ARLON end to end (AR + 10 injected steps + VAE decode) and the baseline (30 steps + decode):
   seconds each and their ratio (the paper's is 0.52 on an A100: 24.6 s against 47.3 s);
4. peak GPU memory of each, and of one injector training step (batch 2, bf16 autocast) through
   `train_injector` itself;
5. the CUDA tests (`pytest -m cuda`), pass or fail.

The captions come from the `hashed_words` encoder at T5-XXL's width (4096): T5's weights are not on
such a machine, and Table 4 times generation from caption embeddings on. No video file is written
(the device image has no PyAV). `--device cpu --tiny` runs the same code on the tiny preset's shapes
in seconds: the CI test that keeps the command from rotting.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from arlon.checkpoints.io import atomic_write_bytes, atomic_write_json
from arlon.config import ArlonConfig
from arlon.pipelines.arlon import ArlonPipeline, BaselinePipeline, code_grid, encode_prompts, generate_codes, latent_shape
from arlon.models.ar_transformer import num_visual_tokens
from arlon.pipelines.components import build_components
from arlon.presets import get_preset
from arlon.training.common import RunContext, TrainConfig
from arlon.training.data import ClipPool, TrainingData
from arlon.training.injection import train_injector
from arlon.training.stages import condition_vq_stage
from bench.perf import count_gflops, time_calls

# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, without sparsity), matched in this order
# against torch.cuda.get_device_name.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM / HBM3
    ("H200", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
)

# The issue's targets on an H100, beside the paper's A100 figures (Table 4).
TARGETS = {
    "dit_step_mfu": ("at least", 0.40),
    "ar_codes_seconds": ("at most", 0.5),  # paper: 5.7 s on an A100
    "arlon_over_baseline": ("at most", 0.40),  # paper: 0.52
    "arlon_peak_gib": ("at most", 25.2 + 2.3),  # paper: 25.2 GB DiT + 2.3 GB AR
}
PROMPT = "a red panda climbs a mossy tree trunk in the rain"


@dataclass
class Measurement:
    name: str
    what: str
    seconds: float | None = None
    peak_gib: float | None = None
    gflops: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class GpuCheckReport:
    device: str
    preset: str
    video: str
    dtype: str
    commit: str
    date: str
    torch: str
    peak_tflops: float | None
    measurements: list[Measurement]
    tests: dict

    def get(self, name: str) -> Measurement:
        return next(m for m in self.measurements if m.name == name)

    def figures(self) -> dict[str, float | None]:
        step, ar = self.get("dit_step"), self.get("ar_codes")
        arlon, baseline = self.get("arlon_end_to_end"), self.get("baseline_end_to_end")
        ratio = arlon.seconds / baseline.seconds if arlon.seconds and baseline.seconds else None
        return {
            "dit_step_mfu": step.extra.get("mfu"),
            "ar_codes_seconds": ar.seconds,
            "arlon_over_baseline": ratio,
            "arlon_peak_gib": arlon.peak_gib,
        }

    def verdicts(self) -> dict[str, str]:
        out = {}
        for name, value in self.figures().items():
            sense, target = TARGETS[name]
            if value is None:
                out[name] = "not measured"
            else:
                met = value >= target if sense == "at least" else value <= target
                out[name] = "met" if met else "missed"
        return out

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "figures": self.figures(), "targets": TARGETS, "verdicts": self.verdicts()}


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float | None]:
    """`time_calls`, warmed up on a GPU only (a CPU has no kernels to load, and the dry run stays short)."""
    return time_calls(fn, device, repeats, warm_up=device.type == "cuda")


def bf16_peak_tflops(device_name: str) -> float | None:
    for key, peak in BF16_PEAK_TFLOPS:
        if key in device_name:
            return peak
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_config(preset: str, tiny: bool) -> ArlonConfig:
    """The preset with the hashed-words caption encoder at the preset's text width (no T5 weights needed);
    `tiny`: the tiny preset at 8 frames, the dry run's shapes."""
    cfg = get_preset("tiny" if tiny else preset)
    text = dataclasses.replace(cfg.text, kind="hashed_words", pretrained=None)
    video = dataclasses.replace(cfg.video, num_frames=8) if tiny else cfg.video
    return dataclasses.replace(cfg, text=text, video=video).validate()


def run_gpu_check(
    cfg: ArlonConfig,
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    *,
    arlon_steps: int = 10,
    baseline_steps: int = 30,
    repeats: int = 3,
    run_tests: bool = True,
    peak_tflops: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> GpuCheckReport:
    """Every measurement of the module docstring, on `device`."""
    say = progress or (lambda text: None)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak_tflops = peak_tflops or (bf16_peak_tflops(device_name) if device.type == "cuda" else None)
    video = cfg.video
    say("building the components (random weights)")
    c = build_components(cfg, random_init=True, device=device, dtype=dtype)
    measurements = []

    # 1. One STDiT3 step, CFG batch 2.
    say("STDiT3 step")
    C, T, H, W = latent_shape(c, video.num_frames, video.height, video.width)
    prompt = encode_prompts(c, [PROMPT])
    x = torch.randn(2, C, T, H, W, device=device, dtype=dtype)
    t = torch.full((2,), 500.0, device=device)
    y = torch.cat([prompt.y, prompt.y_null]).to(dtype)
    mask = torch.cat([prompt.mask, prompt.mask])
    sizes = dict(
        fps=torch.full((1,), float(video.fps), device=device),
        height=torch.full((1,), float(video.height), device=device),
        width=torch.full((1,), float(video.width), device=device),
    )

    def dit_step() -> object:
        with torch.no_grad():
            return c.backbone(x, t, y, mask=mask, **sizes)

    gflops = count_gflops(dit_step)
    seconds, peak = _timed(dit_step, device, repeats)
    mfu = gflops / 1e3 / seconds / peak_tflops if peak_tflops else None
    measurements.append(
        Measurement("dit_step", f"STDiT3 forward, {dtype_name(dtype)}, CFG batch 2, latent {C}x{T}x{H}x{W}",
                    seconds, peak, round(gflops, 1), {"mfu": mfu, "tokens_per_sample": T * H * W // 4})
    )

    # 2. The AR codes of one video.
    say("AR codes")
    grid = code_grid(c, (T, H, W))
    generator = torch.Generator(device).manual_seed(0)
    tokens = num_visual_tokens(grid)  # the codes, one <FRAME> per AR frame, <EOS>

    def ar_codes() -> object:
        with torch.no_grad():
            return generate_codes(c, prompt, grid, generator)

    seconds, peak = _timed(ar_codes, device, repeats)
    measurements.append(Measurement("ar_codes", f"AR codes {grid} ({tokens} tokens), KV cache", seconds, peak))

    # 3. End to end.
    for name, pipeline, steps in (
        ("arlon_end_to_end", ArlonPipeline(c), arlon_steps),
        ("baseline_end_to_end", BaselinePipeline(c), baseline_steps),
    ):
        say(f"{name} ({steps} steps)")
        what = f"{'AR + ' if name.startswith('arlon') else ''}{steps} DiT steps + VAE decode, one {video.num_frames}-frame video"
        seconds, peak = _timed(lambda: pipeline([PROMPT], seed=0, num_steps=steps), device, max(1, repeats // 2))
        measurements.append(Measurement(name, what, seconds, peak))

    # 4. One injector training step, as `train_injector` runs it (bf16 autocast on CUDA).
    say("injector training step")
    measurements.append(injector_step(c, cfg, device))

    # 5. The CUDA tests.
    tests = run_cuda_tests() if run_tests else {"status": "not run (--no-tests)"}
    return GpuCheckReport(
        device=device_name,
        preset=cfg.name,
        video=f"{video.num_frames} frames {video.height}x{video.width}",
        dtype=dtype_name(dtype),
        commit=git_commit(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__,
        peak_tflops=peak_tflops,
        measurements=measurements,
        tests=tests,
    )


def injector_step(c, cfg: ArlonConfig, device: torch.device) -> Measurement:
    """Seconds and peak memory of one injector training step on a batch of 2 clips of the preset's size."""
    C, T, H, W = latent_shape(c, cfg.video.num_frames, cfg.video.height, cfg.video.width)
    backbone = c.backbone.float()  # training keeps fp32 weights and runs under bf16 autocast
    pool = ClipPool(torch.randn(2, C, T, H, W), [PROMPT, PROMPT], {"source": "gpu-check"})
    recipe = TrainConfig(steps=1, batch_size=2, lr=2e-5, mixed_precision=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    train_injector(
        cfg.injection, cfg.noise, cfg.flow, cfg.video, backbone, getattr(c, condition_vq_stage(cfg)).float(), c.text_encoder,
        TrainingData(pool, 2, seed=0), ClipPool(pool.x[:1], pool.captions[:1], pool.spec), recipe, RunContext(device),
    )
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Measurement(
        "injector_train_step", "one injector step, batch 2, bf16 autocast, fp32 weights (with the held-out loss after it)",
        seconds, peak,
    )


def run_cuda_tests() -> dict:
    """`pytest -m cuda` on the repository's test files that hold CUDA tests (collecting the others would
    import PyAV, which a GPU image may lack): its last line and exit code."""
    tests = Path(__file__).resolve().parents[1] / "tests"
    if not tests.is_dir():
        return {"status": "no tests folder beside the package"}
    if importlib.util.find_spec("pytest") is None:
        return {"status": "not run: pytest is not installed here"}
    files = sorted(str(path) for path in tests.rglob("test_*.py") if "pytest.mark.cuda" in path.read_text())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files],
        capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    return {"status": "passed" if done.returncode == 0 else "failed", "exit_code": done.returncode, "summary": lines[-1] if lines else ""}


def git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10)
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def report_markdown(report: GpuCheckReport) -> str:
    def number(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"# GPU check: {report.preset} preset, {report.video}, {report.dtype}",
        "",
        f"Device: {report.device} (dense bf16 peak {number(report.peak_tflops, '.0f')} TFLOP/s); commit {report.commit}; "
        f"{report.date}; torch {report.torch}. Random weights; captions from the hashed-words encoder at T5's width. "
        "Made by `arlon-bench gpu-check` (bench/gpu_check.py).",
        "",
        "| measurement | what | seconds | peak GiB | GFLOPs | MFU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for m in report.measurements:
        mfu = m.extra.get("mfu")
        lines.append(
            f"| {m.name} | {m.what} | {number(m.seconds, '.3f')} | {number(m.peak_gib, '.2f')} | "
            f"{number(m.gflops, '.0f')} | {number(mfu, '.1%')} |"
        )
    lines += ["", "| target | measured | target | verdict |", "|---|---:|---:|---|"]
    figures, verdicts = report.figures(), report.verdicts()
    for name, (sense, target) in TARGETS.items():
        lines.append(f"| {name} | {number(figures[name], '.3f')} | {sense} {target:g} | {verdicts[name]} |")
    tests = report.tests
    lines += ["", f"CUDA tests (`pytest -m cuda`): {tests.get('status')}" + (f" ({tests['summary']})" if tests.get("summary") else "")]
    return "\n".join(lines) + "\n"


def write_report(report: GpuCheckReport, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    md = atomic_write_bytes(out / "gpu-check.md", report_markdown(report).encode())
    js = atomic_write_json(out / "gpu-check.json", report.to_dict())
    return md, js
