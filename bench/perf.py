"""Speed, memory and FLOPs of every ARLON component (the paper's Table 4), with random weights.

For one video of the preset's size (paper: 68 frames at 512x512) this measures, per component:
parameters (total, trainable), FLOPs of one call (`torch.utils.flop_counter`), latency and peak
memory. Caption embeddings are random tensors of T5's output shape: the text encoder itself is not
part of Table 4 and T5-XXL's weights are not needed to time the rest.

Where the device cannot run the preset (the paper preset on a CPU), the models are built on the
meta device: parameters and FLOPs are exact, latency and memory are left empty.

FLOPs come in two counts (`GFLOPS_NOTE`): per call, as the sampler runs it, where classifier-free
guidance makes every DiT step (and the guided AR model's generation) one batch of 2, the prompt and
the null caption; and per forward, the same call for one sample, which is what the paper's Table 4
counts (Open-Sora v1.2's 42,626 GFLOPs x 30 steps: one forward per step).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from arlon.config import ArlonConfig
from arlon.injection.adapters import SemanticInjector
from arlon.models.ar_transformer import ARTransformer
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.video_vae import build_video_vae

META = torch.device("meta")


GFLOPS_NOTE = (
    "GFLOPs per forward: the call for one sample, the unit of the paper's Table 4 (compare these with it); "
    "GFLOPs per call: as run, where classifier-free guidance makes each DiT step (and a guided AR "
    "generation) a batch of 2, prompt and null caption, so twice the per-forward count"
)


@dataclass
class PerfRow:
    component: str
    call: str
    params_total: int
    params_trainable: int
    batch: int  # samples in one call: 2 for a classifier-free guidance batch (prompt + null caption)
    gflops_call: float  # the call as run, its whole batch
    gflops_per_forward: float  # the same call for one sample: what the paper's Table 4 counts
    latency_s: float | None  # of the call as run
    peak_mem_gib: float | None


@dataclass
class PerfReport:
    preset: str
    device: str
    dtype: str
    video: str
    rows: list[PerfRow]
    arlon_steps: int
    baseline_steps: int

    def totals(self) -> dict[str, dict[str, float | None]]:
        """End-to-end GFLOPs (per forward, and per call as run) and seconds: ARLON (AR + VQ decode +
        injector conditions, computed once, + N injected DiT steps + VAE decode) against the baseline
        (M plain DiT steps + VAE decode), as Table 4 adds them up."""
        row = {r.component: r for r in self.rows}

        def total(parts: list[tuple[str, int]], field: str) -> float | None:
            values = [getattr(row[name], field) for name, _ in parts]
            if any(v is None for v in values):
                return None
            return sum(v * n for v, (_, n) in zip(values, parts))

        arlon = [("ar", 1), ("latent_vq", 1), ("injector", 1), ("dit_step_arlon", self.arlon_steps), ("vae_decode", 1)]
        baseline = [("dit_step_baseline", self.baseline_steps), ("vae_decode", 1)]
        return {
            f"{name} ({steps} steps)": {field: total(parts, field) for field in ("gflops_per_forward", "gflops_call", "latency_s")}
            for name, steps, parts in (("arlon", self.arlon_steps, arlon), ("baseline", self.baseline_steps, baseline))
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "totals": self.totals(), "gflops_note": GFLOPS_NOTE}


def _count(module: torch.nn.Module) -> tuple[int, int]:
    return sum(p.numel() for p in module.parameters()), sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_gflops(fn: Callable[[], object]) -> float:
    """GFLOPs of one call of `fn`, counted by torch.utils.flop_counter (how every FLOP figure here is made)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def _measure(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float | None, float | None]:
    """(GFLOPs of one call, median latency in s, peak memory in GiB); the last two None on meta."""
    gflops = count_gflops(fn)
    if device.type == "meta":
        return gflops, None, None
    return (gflops, *time_calls(fn, device, repeats))


def time_calls(fn: Callable[[], object], device: torch.device, repeats: int, warm_up: bool = True) -> tuple[float, float | None]:
    """(median seconds over `repeats` calls of `fn`, peak GiB allocated during them; None off CUDA), after
    one untimed warm-up call (kernels, allocator, caches) unless `warm_up` is False."""
    if warm_up:
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return sorted(times)[len(times) // 2], peak


@torch.no_grad()
def measure_components(
    cfg: ArlonConfig,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    arlon_steps: int = 10,
    baseline_steps: int = 30,
    repeats: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> PerfReport:
    """Measure each component of `cfg` on `device` (or count on the meta device); see the module docstring."""
    cfg.validate()
    video = cfg.video
    run_device = device
    with torch.device(device):
        backbone = STDiT3(cfg.backbone).to(dtype).requires_grad_(False)
        injector = SemanticInjector(cfg.injection, cfg.noise, backbone).to(dtype)
        ar = ARTransformer(cfg.ar, cfg.ar_frame_grid).to(dtype)
        ar_vq = LatentVQVAE(cfg.ar_vq).to(dtype)
        vae = build_video_vae(cfg.vae)  # fp32, as the pipelines run it
    for module in (backbone, injector, ar, ar_vq, vae):
        module.eval()

    T, H, W = vae.latent_size(video.num_frames, video.height, video.width)
    C = cfg.vae.latent_channels
    r, o_h, o_w = cfg.ar_vq.compression
    grid = (T // r, H // o_h, W // o_w)
    L = cfg.text.max_length

    def randn(*shape, dt=dtype):
        return torch.randn(*shape, device=run_device, dtype=dt)

    text = randn(1, L, cfg.text.dim)
    text_mask = torch.ones(1, L, dtype=torch.bool, device=run_device)
    codes = torch.zeros((1, *grid), dtype=torch.long, device=run_device)
    tokens = ar.codes_to_tokens(codes)
    latent = randn(1, C, T, H, W)
    y = randn(2, 1, L, cfg.text.dim)  # CFG batch: conditional + null caption (its first row alone: one forward)
    x = randn(2, C, T, H, W)
    t = torch.full((2,), 500.0, device=run_device)
    size_kwargs = dict(
        fps=torch.full((1,), float(video.fps), device=run_device),
        height=torch.full((1,), float(video.height)),
        width=torch.full((1,), float(video.width)),
    )
    injection = injector(latent)

    def dit_step(batch: int, with_injection: bool) -> Callable[[], object]:
        extra = {"injection": injection} if with_injection else {}
        return lambda: backbone(x[:batch], t[:batch], y[:batch], mask=text_mask, **extra, **size_kwargs)

    # (component, call, as run, its batch, the same call for one sample, module counted)
    if run_device.type == "meta":
        ar_call = ("forward over the whole token sequence", lambda: ar(text, text_mask, tokens), 1, None)
    else:
        # With AR guidance the empty prompt's embedding runs beside the prompt, as in the pipeline.
        guided = cfg.ar_sampling.cfg_scale != 1.0
        null_text = randn(1, L, cfg.text.dim) if guided else None
        null_mask = text_mask if guided else None
        unguided = dataclasses.replace(cfg.ar_sampling, cfg_scale=1.0)
        ar_call = (
            f"generate {tokens.shape[1]} tokens with the KV cache" + (" (CFG batch 2)" if guided else ""),
            lambda: ar.generate(
                text, text_mask, grid=grid, sampling=cfg.ar_sampling, null_text_emb=null_text, null_text_mask=null_mask
            ),
            2 if guided else 1,
            (lambda: ar.generate(text, text_mask, grid=grid, sampling=unguided)) if guided else None,
        )
    calls = [
        ("ar", *ar_call, ar),
        ("latent_vq", f"decode {grid} codes to F", lambda: ar_vq.decode(codes), 1, None, ar_vq),
        ("injector", "adapters + noise: F -> per-layer conditions", lambda: injector(latent), 1, None, injector),
        ("dit_step_baseline", "backbone forward, CFG batch 2", dit_step(2, False), 2, dit_step(1, False), backbone),
        ("dit_step_arlon", "backbone + injection forward, CFG batch 2", dit_step(2, True), 2, dit_step(1, True), injector),
        (
            "vae_decode", f"decode latent {T}x{H}x{W} to {video.num_frames} frames",
            lambda: vae.decode(latent.float(), video.num_frames), 1, None, vae,
        ),
    ]
    rows = []
    for index, (name, call, fn, batch, one_sample, module) in enumerate(calls):
        gflops, latency, peak = _measure(fn, run_device, repeats)
        per_forward = gflops if one_sample is None else count_gflops(one_sample)
        total, trainable = _count(module)
        if name == "dit_step_arlon":
            total, trainable = total + _count(backbone)[0], trainable
        rows.append(PerfRow(name, call, total, trainable, batch, round(gflops, 3), round(per_forward, 3), latency, peak))
        if progress:
            progress(index + 1, len(calls))
    return PerfReport(
        preset=cfg.name,
        device=str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        dtype=str(dtype).removeprefix("torch."),
        video=f"{video.num_frames} frames {video.height}x{video.width}",
        rows=rows,
        arlon_steps=arlon_steps,
        baseline_steps=baseline_steps,
    )
