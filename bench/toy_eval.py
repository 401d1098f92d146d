"""How good is a trained tiny ARLON stack? Every stage judged against the toy world's ground truth.

The tiny preset stands in for the paper's models, so each stage must do its job well enough for the
ablations to mean something. Four checks on prompts of the held-out split (colour-shape-motion
triples never seen in training), each with its target:

1. video VAE: reconstruction PSNR of the rendered clips (target >= 28 dB);
2. latent VQ-VAE at the AR ratio: the clip through VAE encode -> VQ encode/decode -> VAE decode
   keeps every object's colour and motion (`object_verdicts`) in >= 95% of the videos;
3. AR model: codes sampled from the prompt, decoded to video (VQ decoder, VAE decoder), show the
   prompt's primary object (the first one named; its colour-shape-motion triple is the one held out
   from training) in its colour, shape and motion in >= 50% of the prompts, and its motion alone in
   >= 60%. The same for every
   object of the prompt is reported beside it, and a ladder that shows where the samples lose the
   prompt (`ar_ladder`: the teacher-forced codes, and samples continuing 1 .. t-1 true AR frames);
4. ARLON (the config's injection, e.g. adaptive_norm first:14) against the baseline (the same frozen
   backbone without injection) on the same prompts, the same AR codes and the same initial noise:
   `toy_layout_iou` with the video decoded from the AR codes, mean and 95% bootstrap interval for
   each and for the paired difference (target: the difference's interval lies above 0); motion accuracy
   (the exact motion label of every object; ARLON >= 50%, and ARLON - baseline paired, its interval
   above 0); the full prompt match (every object's colour, shape and motion; ARLON >= 40%); and, for
   "dynamic motion present where the prompt asks for it", each one's `motion_presence` (objects
   asked to travel that do, in any direction; paired ARLON - baseline difference with its interval),
   `motion_stillness` (objects asked to stay that do) and motion accuracy (the exact motion label).
   The AR videos get presence and stillness too: what the plan itself carries. ARLON is also run
   from the clip's own AR codes (VAE, then VQ encoder) instead of sampled ones (`arlon_true_codes_*`):
   what the injection makes of a perfect plan, so that a miss can be put on the AR model or on the
   injected backbone.

Per-prompt seeds: batch b is generated with seed `seed + b * batch_size`, so results depend on the
batch size as well as the seed; both are recorded in the report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from arlon.checkpoints.io import atomic_write_json
from arlon.data.toyworld import ToyPrompt, prompt_set, render
from arlon.data.video_io import uint8_to_video_tensor, video_tensor_to_uint8
from arlon.models.ar_transformer import guided_logits
from arlon.pipelines.arlon import (
    ArlonPipeline,
    BaselinePipeline,
    PromptEmbedding,
    code_grid,
    decode_latents,
    encode_prompts,
    generate_codes,
    latent_shape,
    make_generators,
    null_ar_prompt,
)
from arlon.pipelines.components import ArlonComponents
from bench.errors import BenchError
from bench.metrics.toyworld import layout_iou, motion_accuracy, motion_presence, motion_stillness, object_verdicts
from bench.stats import Estimate, bootstrap_mean, paired_bootstrap_difference

CHECKS = ("vae", "vq", "ar", "arlon")

TARGETS = {
    "vae_psnr_db": 28.0,  # mean held-out PSNR
    "vq_colour_and_motion_kept": 0.95,  # share of videos
    "ar_prompt_match": 0.50,  # share of prompts: the primary object's colour, shape and motion
    "ar_primary_motion": 0.60,  # share of prompts: the primary object's motion
    "arlon_prompt_match": 0.40,  # share of prompts: every object's colour, shape and motion
    "arlon_motion_accuracy": 0.50,  # mean over prompts of toy_motion_accuracy
    # lower ends of the paired 95% intervals of ARLON - baseline must exceed these
    "arlon_minus_baseline_layout_iou_low": 0.0,
    "arlon_minus_baseline_motion_accuracy_low": 0.0,
}

# (task, done, total): one call per finished batch.
EvalProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ToyEvalConfig:
    """Which prompts, and how videos are generated for them."""

    num_prompts: int = 64
    split: str = "heldout"
    world_seed: int = 0  # the toy world's seed: which prompts exist
    seed: int = 0  # generation seed of the first batch
    batch_size: int = 16
    checks: tuple[str, ...] = CHECKS

    def validate(self) -> "ToyEvalConfig":
        if self.num_prompts < 2:
            raise BenchError(f"--prompts must be at least 2 (an interval needs several videos), got {self.num_prompts}")
        if self.batch_size < 1:
            raise BenchError(f"--batch-size must be at least 1, got {self.batch_size}")
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise BenchError(f"unknown check(s) {', '.join(unknown)} (choices: {', '.join(CHECKS)})")
        return self


@dataclass
class ToyEvalReport:
    """Every figure of the checks, the targets they are held to, and how they were produced."""

    config: dict
    figures: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, Estimate] = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)

    def set_target(self, name: str, value: float, passed: bool) -> None:
        self.targets[name] = {"value": value, "target": TARGETS[name], "passed": bool(passed)}

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "figures": self.figures,
            "intervals": {name: e.to_dict() for name, e in self.intervals.items()},
            "targets": self.targets,
            "wall_s": self.wall_s,
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())


# ---------------------------------------------------------------------------------------------
# Videos
# ---------------------------------------------------------------------------------------------


def evaluation_prompts(cfg: ToyEvalConfig) -> list[ToyPrompt]:
    return prompt_set(cfg.split, cfg.num_prompts, seed=cfg.world_seed)


def render_prompts(prompts: list[ToyPrompt], num_frames: int, height: int, width: int) -> np.ndarray:
    """The scenes' own clips, uint8 (N, T, H, W, 3)."""
    return np.stack([render(p.scene, num_frames, height, width, caption_text=p.caption).frames for p in prompts])


def _batches(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


@torch.no_grad()
def clip_latents(components: ArlonComponents, frames: np.ndarray) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) -> their video VAE latents (B, C, T', H', W')."""
    video = torch.stack([uint8_to_video_tensor(clip) for clip in frames]).to(components.device)  # (B, 3, T, H, W)
    return components.vae.encode(video)


@torch.no_grad()
def true_ar_codes(components: ArlonComponents, frames: np.ndarray) -> torch.Tensor:
    """The clips' own AR codes (B, t, h, w): VAE encoder, then the AR-ratio VQ encoder."""
    return components.ar_vq.encode(clip_latents(components, frames).to(components.dtype))


@torch.no_grad()
def vae_round_trip(components: ArlonComponents, frames: np.ndarray, vq: str | None = None) -> np.ndarray:
    """uint8 (B, T, H, W, 3) -> video VAE encode [-> latent VQ-VAE `vq` encode/decode] -> decode -> uint8."""
    latent = clip_latents(components, frames)  # (B, C, T', H', W')
    if vq is not None:
        quantiser = getattr(components, vq)
        latent = quantiser.decode(quantiser.encode(latent.to(components.dtype))).float()
    return video_tensor_to_uint8(components.vae.decode(latent, num_frames=frames.shape[1]))


def psnr_db(reference: np.ndarray, video: np.ndarray) -> np.ndarray:
    """Per-video PSNR (dB) of uint8 videos (N, T, H, W, 3) on the [0, 1] scale."""
    error = (reference.astype(np.float64) / 255.0 - video.astype(np.float64) / 255.0) ** 2
    mse = error.reshape(error.shape[0], -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def verdict_table(videos: np.ndarray, prompts: list[ToyPrompt]) -> dict[str, np.ndarray]:
    """Per prompt (bool arrays of length N): every object / the primary object keeps its colour, shape, motion."""
    rows = [object_verdicts(video, prompt.scene) for video, prompt in zip(videos, prompts, strict=True)]
    table = {}
    for attribute in ("colour", "shape", "motion"):
        table[attribute] = np.array([all(getattr(v, attribute) for v in row) for row in rows])
        table[f"primary_{attribute}"] = np.array([getattr(row[0], attribute) for row in rows])
    table["all"] = np.array([all(v.matches for v in row) for row in rows])
    table["primary_all"] = np.array([row[0].matches for row in rows])
    table["colour_and_motion"] = table["colour"] & table["motion"]
    return table


# ---------------------------------------------------------------------------------------------
# The four checks
# ---------------------------------------------------------------------------------------------


def _in_batches(
    task: str, fn: Callable[[np.ndarray], np.ndarray], clips: np.ndarray, batch_size: int, progress: EvalProgress | None
) -> np.ndarray:
    out = []
    for part in _batches(len(clips), batch_size):
        out.append(fn(clips[part]))
        if progress is not None:
            progress(task, part.stop, len(clips))
    return np.concatenate(out)


def check_vae(
    components: ArlonComponents,
    clips: np.ndarray,
    prompts: list[ToyPrompt],
    cfg: ToyEvalConfig,
    report: ToyEvalReport,
    progress: EvalProgress | None = None,
) -> None:
    recon = _in_batches("vae", lambda batch: vae_round_trip(components, batch), clips, cfg.batch_size, progress)
    psnr = psnr_db(clips, recon)
    table = verdict_table(recon, prompts)  # what the VAE alone lets through: a ceiling for the later stages
    for name in ("colour", "shape", "motion", "primary_all", "all"):
        report.figures[f"vae_{name}"] = float(table[name].mean())
    report.intervals["vae_psnr_db"] = bootstrap_mean(psnr, name="vae_psnr_db")
    report.figures["vae_psnr_db"] = float(psnr.mean())
    report.set_target("vae_psnr_db", float(psnr.mean()), psnr.mean() >= TARGETS["vae_psnr_db"])


def check_vq(
    components: ArlonComponents,
    clips: np.ndarray,
    prompts: list[ToyPrompt],
    cfg: ToyEvalConfig,
    report: ToyEvalReport,
    progress: EvalProgress | None = None,
) -> None:
    through_vq = _in_batches("vq", lambda batch: vae_round_trip(components, batch, vq="ar_vq"), clips, cfg.batch_size, progress)
    vq_table = verdict_table(through_vq, prompts)
    clean_table = verdict_table(clips, prompts)  # the judges' own ceiling on these prompts
    for name in ("colour", "motion", "colour_and_motion"):
        report.figures[f"vq_{name}_kept"] = float(vq_table[name].mean())
        report.figures[f"clean_{name}"] = float(clean_table[name].mean())
    report.figures["vq_psnr_db"] = float(psnr_db(clips, through_vq).mean())
    kept = float(vq_table["colour_and_motion"].mean())
    report.set_target("vq_colour_and_motion_kept", kept, kept >= TARGETS["vq_colour_and_motion_kept"])


@torch.no_grad()
def sample_ar_videos(
    components: ArlonComponents, prompts: list[ToyPrompt], cfg: ToyEvalConfig, progress: EvalProgress | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """AR codes (N, t, h, w) sampled from the prompts, and the videos they decode to (uint8 (N, T, H, W, 3))."""
    video = components.config.video
    size = latent_shape(components, video.num_frames, video.height, video.width)
    grid = code_grid(components, size[1:])
    codes, videos = [], []
    for part in _batches(len(prompts), cfg.batch_size):
        _, sample_gen = make_generators(cfg.seed + part.start, components.device)
        prompt = encode_prompts(components, [p.caption for p in prompts[part]])
        batch_codes = generate_codes(components, prompt, grid, sample_gen)  # (B, t, h, w)
        latents = components.ar_vq.decode(batch_codes)  # (B, C, T', H', W')
        codes.append(batch_codes.cpu())
        videos.append(decode_latents(components, latents, video.num_frames))
        if progress is not None:
            progress("ar", part.stop, len(prompts))
    return torch.cat(codes), np.concatenate(videos)


@torch.no_grad()
def teacher_forced_codes(components: ArlonComponents, prompt: PromptEmbedding, true_codes: torch.Tensor) -> torch.Tensor:
    """The AR model's most likely code at every position given the prompt and the true codes before it
    (with the configured classifier-free guidance): true_codes (B, t, h, w) -> predicted codes (B, t, h, w)."""
    ar = components.ar
    B, t, h, w = true_codes.shape
    tokens = ar.codes_to_tokens(true_codes)  # (B, N)
    logits, _ = ar(prompt.tokens, prompt.mask, tokens)  # (B, N, V)
    scale = components.config.ar_sampling.cfg_scale
    if scale != 1.0:
        null_logits, _ = ar(*null_ar_prompt(components, B), tokens)
        logits = guided_logits(logits, null_logits, scale)
    predicted = logits[..., : ar.cfg.codebook_size].float().argmax(-1)  # (B, N): codes only
    per_frame = predicted[:, :-1].reshape(B, t, h * w + 1)[:, :, : h * w]  # drop the <FRAME>/<EOS> positions
    return per_frame.reshape(B, t, h, w)


@torch.no_grad()
def ar_ladder(
    components: ArlonComponents,
    clips: np.ndarray,
    prompts: list[ToyPrompt],
    cfg: ToyEvalConfig,
    report: ToyEvalReport,
    progress: EvalProgress | None = None,
) -> None:
    """Where the AR samples lose the prompt. The clip's true AR codes (VAE, then VQ encoder) are the
    reference; from them, videos decoded from (1) the teacher-forced codes (each code the model's argmax
    given the true codes before it: what the model knows one token at a time) and (2) codes sampled to
    continue the first k true AR frames, k = 1 .. t-1 (the first frames are given, so these judge how
    well the model carries a scene on, and motion in particular, not how it starts one). Figures
    `ar_teacher_forced_*` and `ar_from_{k}_frames_*` for the primary object's colour, shape, motion, all."""
    video = components.config.video
    rungs: dict[str, list[np.ndarray]] = {}

    def decoded(codes: torch.Tensor) -> np.ndarray:
        return decode_latents(components, components.ar_vq.decode(codes), video.num_frames)

    for part in _batches(len(prompts), cfg.batch_size):
        true_codes = true_ar_codes(components, clips[part])  # (B, t, h, w)
        prompt = encode_prompts(components, [p.caption for p in prompts[part]])
        rungs.setdefault("teacher_forced", []).append(decoded(teacher_forced_codes(components, prompt, true_codes)))
        grid = tuple(true_codes.shape[1:])
        for given in range(1, grid[0]):
            _, sample_gen = make_generators(cfg.seed + part.start, components.device)
            codes = generate_codes(components, prompt, grid, sample_gen, prefix_codes=true_codes[:, :given])
            rungs.setdefault(f"from_{given}_frames", []).append(decoded(codes))
        if progress is not None:
            progress("ar ladder", part.stop, len(prompts))
    for rung, videos in rungs.items():
        table = verdict_table(np.concatenate(videos), prompts)
        for name in ("primary_colour", "primary_shape", "primary_motion", "primary_all"):
            report.figures[f"ar_{rung}_{name}"] = float(table[name].mean())


def travel_judgements(videos: np.ndarray, prompts: list[ToyPrompt]) -> dict[str, np.ndarray]:
    """Per prompt: `motion_presence` and `motion_stillness` (NaN where the prompt has no such object)."""
    judged = {"motion_presence": motion_presence, "motion_stillness": motion_stillness}
    return {
        name: np.array([np.nan if (v := judge(video, p.scene)) is None else v for video, p in zip(videos, prompts, strict=True)])
        for name, judge in judged.items()
    }


def _report_travel(report: ToyEvalReport, model: str, travel: dict[str, np.ndarray]) -> None:
    for name, values in travel.items():
        asked = values[np.isfinite(values)]
        if asked.size:
            report.intervals[f"{model}_{name}"] = bootstrap_mean(asked, name=f"{model}_{name}")
            report.figures[f"{model}_{name}"] = float(asked.mean())


def check_ar(ar_videos: np.ndarray, prompts: list[ToyPrompt], report: ToyEvalReport) -> None:
    table = verdict_table(ar_videos, prompts)
    for name in ("colour", "shape", "motion", "all", "primary_colour", "primary_shape", "primary_motion", "primary_all"):
        report.figures[f"ar_{name}"] = float(table[name].mean())
    _report_travel(report, "ar", travel_judgements(ar_videos, prompts))
    match = float(table["primary_all"].mean())
    report.intervals["ar_prompt_match"] = bootstrap_mean(table["primary_all"].astype(float), name="ar_prompt_match")
    report.set_target("ar_prompt_match", match, match >= TARGETS["ar_prompt_match"])
    motion = float(table["primary_motion"].mean())
    report.intervals["ar_primary_motion"] = bootstrap_mean(table["primary_motion"].astype(float), name="ar_primary_motion")
    report.set_target("ar_primary_motion", motion, motion >= TARGETS["ar_primary_motion"])


@torch.no_grad()
def check_arlon(
    components: ArlonComponents,
    prompts: list[ToyPrompt],
    codes: torch.Tensor,
    ar_videos: np.ndarray,
    clips: np.ndarray,
    cfg: ToyEvalConfig,
    report: ToyEvalReport,
    progress: EvalProgress | None = None,
) -> dict[str, np.ndarray]:
    """ARLON and the baseline from the same codes and noise; layout agreement with the AR video.
    ARLON from the clips' true AR codes too (same noise), judged on motion and prompt match."""
    arlon, baseline = ArlonPipeline(components), BaselinePipeline(components)
    arlon_videos, baseline_videos, true_code_videos = [], [], []
    for part in _batches(len(prompts), cfg.batch_size):
        captions = [p.caption for p in prompts[part]]
        batch_codes = codes[part].to(components.device)
        true_codes = true_ar_codes(components, clips[part])  # (B, t, h, w)
        arlon_videos.append(arlon(captions, seed=cfg.seed + part.start, codes=batch_codes).frames)
        baseline_videos.append(baseline(captions, seed=cfg.seed + part.start).frames)
        true_code_videos.append(arlon(captions, seed=cfg.seed + part.start, codes=true_codes).frames)
        if progress is not None:
            progress("arlon", part.stop, len(prompts))
    from_true_codes = np.concatenate(true_code_videos)
    report.figures["arlon_true_codes_motion_accuracy"] = float(
        np.mean([motion_accuracy(v, p.scene) for v, p in zip(from_true_codes, prompts, strict=True)])
    )
    verdicts = verdict_table(from_true_codes, prompts)
    report.figures["arlon_true_codes_prompt_match"] = float(verdicts["all"].mean())
    report.figures["arlon_true_codes_primary_match"] = float(verdicts["primary_all"].mean())
    videos = {"arlon": np.concatenate(arlon_videos), "baseline": np.concatenate(baseline_videos)}
    layout = {
        name: np.array([layout_iou(v, p.scene, reference_video=r) for v, p, r in zip(vids, prompts, ar_videos, strict=True)])
        for name, vids in videos.items()
    }
    motion = {
        name: np.array([motion_accuracy(v, p.scene) for v, p in zip(vids, prompts, strict=True)]) for name, vids in videos.items()
    }
    travel = {name: travel_judgements(vids, prompts) for name, vids in videos.items()}
    for name in videos:
        _report_travel(report, name, travel[name])
        report.intervals[f"{name}_layout_iou"] = bootstrap_mean(layout[name], name=f"{name}_layout_iou")
        report.intervals[f"{name}_motion_accuracy"] = bootstrap_mean(motion[name], name=f"{name}_motion_accuracy")
        report.figures[f"{name}_layout_iou"] = float(layout[name].mean())
        report.figures[f"{name}_motion_accuracy"] = float(motion[name].mean())
        verdicts = verdict_table(videos[name], prompts)
        report.intervals[f"{name}_prompt_match"] = bootstrap_mean(verdicts["all"].astype(float), name=f"{name}_prompt_match")
        report.figures[f"{name}_prompt_match"] = float(verdicts["all"].mean())
        report.figures[f"{name}_primary_match"] = float(verdicts["primary_all"].mean())
    presence = {name: values["motion_presence"] for name, values in travel.items()}
    asked = np.isfinite(presence["arlon"])  # the same prompts for both: it depends on the scene only
    if asked.any():
        report.intervals["arlon_minus_baseline_motion_presence"] = paired_bootstrap_difference(
            presence["arlon"][asked], presence["baseline"][asked], name="motion_presence"
        )
    for name, values in (("layout_iou", layout), ("motion_accuracy", motion)):
        difference = paired_bootstrap_difference(values["arlon"], values["baseline"], name=name)
        report.intervals[f"arlon_minus_baseline_{name}"] = difference
        report.set_target(f"arlon_minus_baseline_{name}_low", difference.low, difference.low > 0.0)
    for name in ("arlon_prompt_match", "arlon_motion_accuracy"):
        report.set_target(name, report.figures[name], report.figures[name] >= TARGETS[name])
    return videos


# ---------------------------------------------------------------------------------------------
# Everything
# ---------------------------------------------------------------------------------------------


def evaluate_tiny_stack(
    components: ArlonComponents, cfg: ToyEvalConfig = ToyEvalConfig(), progress: EvalProgress | None = None
) -> ToyEvalReport:
    """Run the checks of `cfg.checks` on `cfg.num_prompts` prompts; see the module docstring."""
    cfg.validate()
    if components.config.vae.kind != "tiny":
        raise BenchError("the toy-world checks judge the tiny preset's toy videos; use --preset tiny")
    needs_arlon = {"vq", "ar", "arlon"} & set(cfg.checks)
    if needs_arlon and not components.has_arlon:
        raise BenchError("the vq, ar and arlon checks need ARLON's components; build them without baseline_only")
    video = components.config.video
    prompts = evaluation_prompts(cfg)
    report = ToyEvalReport(config={**asdict(cfg), "model": components.config.to_dict(), "device": str(components.device)})
    clips = render_prompts(prompts, video.num_frames, video.height, video.width)

    def timed(name: str, fn: Callable[[], object]) -> object:
        started = time.perf_counter()
        out = fn()
        report.wall_s[name] = round(time.perf_counter() - started, 2)
        return out

    if "vae" in cfg.checks:
        timed("vae", lambda: check_vae(components, clips, prompts, cfg, report, progress))
    if "vq" in cfg.checks:
        timed("vq", lambda: check_vq(components, clips, prompts, cfg, report, progress))
    if {"ar", "arlon"} & set(cfg.checks):
        codes, ar_videos = timed("ar_sampling", lambda: sample_ar_videos(components, prompts, cfg, progress))
        if "ar" in cfg.checks:
            check_ar(ar_videos, prompts, report)
            timed("ar_ladder", lambda: ar_ladder(components, clips, prompts, cfg, report, progress))
        if "arlon" in cfg.checks:
            timed("arlon", lambda: check_arlon(components, prompts, codes, ar_videos, clips, cfg, report, progress))
    return report
