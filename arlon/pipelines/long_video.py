"""Long videos and progressive prompts (paper Figure 1, Table 1 and section 4.5).

A long video is a list of parts (text, pixel frames): one part is a long video of one prompt,
several parts a progressive-prompt video. Both ARLON and the Open-Sora v1.2 baseline make it the
same way, segment by segment on one latent timeline, so that Table 1's rows are measured alike:

1. Plan. The timeline is tiled by DiT segments of the clip length the backbone was trained on
   (`video.num_frames`); every segment after the first starts with `overlap` latent frames of the
   previous one (`plan_segments`). Segment starts sit on AR code frames (multiples of r).
2. AR codes (ARLON only), part by part: part p's codes continue the last code frame of part p-1
   (section 4.5). Within a part, codes come in windows whose length (context + new frames) never
   exceeds the code frames the AR model was trained on (`ArlonComponents.ar_trained_grid`, from its
   manifest): the model never reads a position it was not trained on. Each new window keeps the last
   half window of codes as context.
3. DiT segments. Segment k is denoised with the prompt of the part its first new frame lies in.
   After the first, its first `overlap` latent frames are the previous segment's last latent frames,
   kept clean (condition mask 0), which is how Open-Sora v1.2 extends a video by frame unmasking
   (`scripts/inference.py`'s `loop` with `condition_frame_length`, `append_generated` in
   `opensora/utils/inference_utils.py`; docs/opensora-v1.2-notes.md); ARLON's segment is also guided by the condition F of its
   own code window, decoded by the latent VQ-VAE exactly as long as in training (so the VQ decoder's
   attention never spans more frames than it was trained on). Windows need no stitching: each
   segment reads only its own decoded window.
4. The stitched latent timeline is decoded by the video VAE and cut to the requested length.

Unlike Open-Sora's loop, which re-encodes the decoded pixels of the previous clip, the overlap is
taken from the previous segment's latents directly: the same frames, without a decode/encode trip.

Resuming. Every segment draws its noise from its own generators (`segment_seed`), so a segment
comes out the same whether or not the segments before it were computed in this call. With a
`SegmentStore`, the AR codes and each finished segment's latents are saved as they are made; a call
interrupted during a long video and repeated with the same store recomputes only the segments the
store lacks, and gives the same video bit for bit on the same device.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from arlon.config import ArlonConfig
from arlon.errors import ConfigError
from arlon.models.video_vae import build_video_vae
from arlon.pipelines.arlon import (
    GenerationOutput,
    PromptEmbedding,
    ProgressFn,
    codes_to_condition,
    decode_latents,
    denoise,
    encode_prompts,
    generate_codes,
    latent_shape,
    make_generators,
)
from arlon.pipelines.components import ArlonComponents


@dataclass(frozen=True)
class SegmentPlan:
    """Where each DiT segment sits on the latent timeline."""

    segment_frames: int  # latent frames per DiT segment
    overlap: int  # clean latent frames carried from the previous segment
    starts: tuple[int, ...]  # first latent frame of each segment
    total_frames: int  # latent frames of the stitched timeline

    def first_new(self, index: int) -> int:
        """First latent frame segment `index` generates (the overlap before it is carried over)."""
        return self.starts[index] + (self.overlap if index else 0)


def plan_segments(total_latent_frames: int, segment_frames: int, overlap: int, align: int) -> SegmentPlan:
    """Tile `total_latent_frames` with segments that overlap by `overlap` frames.

    Segment starts are multiples of `align` (the AR temporal ratio r), so each segment's slice of
    F begins on an AR code frame. The timeline is extended to a whole number of segments.
    """
    if not 0 < overlap < segment_frames:
        raise ConfigError(f"overlap must be in (0, {segment_frames}) latent frames, got {overlap}")
    if overlap % align or segment_frames % align:
        raise ConfigError(f"segment ({segment_frames}) and overlap ({overlap}) must be multiples of {align} latent frames")
    stride = segment_frames - overlap
    starts = [0]
    while starts[-1] + segment_frames < total_latent_frames:
        starts.append(starts[-1] + stride)
    return SegmentPlan(segment_frames, overlap, tuple(starts), starts[-1] + segment_frames)


def default_overlap(segment_frames: int, align: int) -> int:
    """About a third of the segment, as Open-Sora's app extends videos, on AR frame boundaries."""
    return max(align, round(segment_frames / 3 / align) * align)


def segment_overlap(segment_frames: int, align: int, overlap: int | None) -> int:
    """The overlap (latent frames) of segments of `segment_frames`: `overlap` if it fits, else the
    default; ConfigError when the segment or the overlap does not sit on AR frames (`align`)."""
    if segment_frames % align:
        raise ConfigError(f"the segment's {segment_frames} latent frames are not a multiple of the AR ratio r={align}")
    overlap = default_overlap(segment_frames, align) if overlap is None else overlap
    plan_segments(2 * segment_frames, segment_frames, overlap, align)  # raises when the overlap does not fit
    return overlap


def check_long_video(cfg: ArlonConfig, overlap: int | None) -> int:
    """The overlap (latent frames) a long video of `cfg` uses (`segment_overlap`), without weights:
    the VAE is built on the meta device only to read its latent length."""
    with torch.device("meta"):
        vae = build_video_vae(cfg.vae)
    video = cfg.video
    return segment_overlap(vae.latent_size(video.num_frames, video.height, video.width)[0], cfg.ar_vq.compression[0], overlap)


def pixel_frames_for(components: ArlonComponents, latent_frames: int) -> int:
    """Smallest pixel frame count whose latent has `latent_frames` frames."""
    video = components.config.video
    frames = 1
    while components.vae.latent_size(frames, video.height, video.width)[0] < latent_frames:
        frames += 1
    return frames


def pixel_frames_covered(components: ArlonComponents, latent_frames: int) -> int:
    """Pixel frames the first `latent_frames` latent frames decode to (the largest count whose latent
    is no longer): where a seam at latent frame `latent_frames` lands in pixels."""
    if latent_frames == 0:
        return 0
    video = components.config.video
    frames = pixel_frames_for(components, latent_frames)
    while components.vae.latent_size(frames + 1, video.height, video.width)[0] <= latent_frames:
        frames += 1
    return frames


def segment_seed(seed: int, index: int) -> int:
    """The seed of segment `index`'s generators: the video's own seed for the first segment."""
    if index == 0:
        return seed
    return int(hashlib.sha256(f"{seed}/segment/{index}".encode()).hexdigest()[:8], 16) % 2**31


@dataclass
class LongVideoOutput(GenerationOutput):
    segments: tuple[tuple[int, int], ...] = ()  # (first new pixel frame, end) of each DiT segment
    layout: "LongVideoLayout | None" = None
    segments_computed: int = 0  # segments denoised in this call (the others came from the store)

    @property
    def plan(self) -> SegmentPlan | None:
        return None if self.layout is None else self.layout.plan


# ---------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------


class SegmentStore:
    """A folder holding an unfinished long video: `request.json` (what it is a part of), `codes.pt`
    and `segment-<k>.pt` (latents (1, C, T_seg, H, W) of segment k). Writes are atomic (temp file +
    rename), so a kill leaves whole files only. A folder left by another request is emptied first."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def open(self, request: dict) -> None:
        """Use the folder for `request` (JSON-able): keep what it holds for the same request only."""
        text = json.dumps(request, sort_keys=True)
        marker = self.directory / "request.json"
        if marker.is_file() and marker.read_text() == text:
            return
        if self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        self._write_text(marker, text)

    def codes(self) -> torch.Tensor | None:
        return self._load(self.directory / "codes.pt")

    def save_codes(self, codes: torch.Tensor) -> None:
        self._save(self.directory / "codes.pt", codes)

    def segment(self, index: int) -> torch.Tensor | None:
        return self._load(self.directory / f"segment-{index:04d}.pt")

    def save_segment(self, index: int, latents: torch.Tensor) -> None:
        self._save(self.directory / f"segment-{index:04d}.pt", latents)

    def clear(self) -> None:
        """Drop the folder once the finished video is written."""
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _load(path: Path) -> torch.Tensor | None:
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None

    @staticmethod
    def _save(path: Path, tensor: torch.Tensor) -> None:
        partial = path.with_name(path.name + ".partial")
        torch.save(tensor.detach().cpu().clone(), partial)
        os.replace(partial, path)

    @staticmethod
    def _write_text(path: Path, text: str) -> None:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        os.replace(partial, path)


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LongVideoLayout:
    """Where a long video's parts and segments lie on the latent timeline."""

    parts: tuple[tuple[str, int], ...]  # (text, pixel frames)
    part_codes: tuple[int, ...]  # AR code frames of each part
    part_ends: tuple[int, ...]  # latent frame where each part ends
    plan: SegmentPlan

    @property
    def num_frames(self) -> int:
        """Pixel frames of the video."""
        return sum(frames for _, frames in self.parts)


class LongVideoPipeline:
    """Long videos and progressive prompts; `use_injection=False` is the Open-Sora v1.2 baseline."""

    def __init__(self, components: ArlonComponents, use_injection: bool = True):
        if use_injection and not components.has_arlon:
            raise ConfigError("these components were built with baseline_only=True; ARLON's long videos need the AR model")
        if use_injection:
            self._check_ar(components)
        self.components = components
        self.use_injection = use_injection

    @staticmethod
    def _check_ar(components: ArlonComponents) -> None:
        if components.ar_trained_grid is None:
            raise ConfigError(
                "the AR checkpoint does not record the code grid it was trained on (`trained_grid` in ar.json, written "
                "since long videos keep their AR windows in the trained range); re-train the AR stage with this version: "
                "remove its cached folder ($ARLON_CACHE_DIR/stages/ar/<key>) and run `arlon-bench train --stage ar`"
            )

    def layout(self, parts: Sequence[tuple[str, int]], overlap: int | None = None) -> LongVideoLayout:
        """The parts' code frames and the segment plan of a video of `parts` (overlap in latent
        frames; default `default_overlap`)."""
        c = self.components
        video = c.config.video
        parts = tuple((str(text), int(frames)) for text, frames in parts)
        if not parts or any(not text.strip() for text, _ in parts):
            raise ConfigError("a long video needs at least one part with a prompt")
        if any(frames < 1 for _, frames in parts):
            raise ConfigError(f"every part needs at least one frame, got {[frames for _, frames in parts]}")
        r = c.config.ar_vq.compression[0]
        _, T_seg, _, _ = latent_shape(c, video.num_frames, video.height, video.width)
        overlap = segment_overlap(T_seg, r, overlap)
        part_codes = tuple(-(-c.vae.latent_size(frames, video.height, video.width)[0] // r) for _, frames in parts)
        plan = plan_segments(sum(part_codes) * r, T_seg, overlap, r)
        part_ends = tuple(sum(part_codes[: i + 1]) * r for i in range(len(parts)))
        return LongVideoLayout(parts, part_codes, part_ends, plan)

    @torch.no_grad()
    def ar_codes(self, layout: LongVideoLayout, seed: int) -> torch.Tensor:
        """The AR codes (1, t, h, w) ARLON draws for the whole timeline with `seed`: what it injects,
        and for the baseline the plan it never sees (its reference video)."""
        c = self.components
        if c.ar is None:
            raise ConfigError("these components have no AR model; build them with the AR side to draw AR codes")
        self._check_ar(c)
        return self._ar_codes(layout, [encode_prompts(c, [text]) for text, _ in layout.parts], seed)

    def _ar_codes(self, layout: LongVideoLayout, embeddings: list[PromptEmbedding], seed: int) -> torch.Tensor:
        c = self.components
        r = c.config.ar_vq.compression[0]
        _, ar_gen = make_generators(seed, c.device)
        return self._codes_for_parts(embeddings, list(layout.part_codes), layout.plan.total_frames // r, ar_gen)

    @torch.no_grad()
    def reference_frames(self, layout: LongVideoLayout, codes: torch.Tensor) -> np.ndarray:
        """The AR plan as a video, uint8 (1, T, H, W, 3): each segment's code window decoded by the latent
        VQ-VAE (as the injector reads it), every frame taken from the segment that generates it, then
        the video VAE; the long-video counterpart of a clip's reference video."""
        c = self.components
        plan, r = layout.plan, c.config.ar_vq.compression[0]
        condition = None
        for index, start in enumerate(plan.starts):
            window = codes[:, start // r : (start + plan.segment_frames) // r].to(c.device)
            F = codes_to_condition(c, window)  # (1, C, T_seg, H, W)
            if condition is None:
                condition = F.new_zeros((*F.shape[:2], plan.total_frames, *F.shape[3:]))
            first_new = plan.first_new(index)
            condition[:, :, first_new : start + plan.segment_frames] = F[:, :, first_new - start :]
        frames = decode_latents(c, condition, pixel_frames_covered(c, plan.total_frames))
        return frames[:, : layout.num_frames]

    @torch.no_grad()
    def __call__(
        self,
        parts: Sequence[tuple[str, int]],
        *,
        seed: int = 0,
        overlap: int | None = None,
        num_steps: int | None = None,
        cfg_scale: float | None = None,
        progress: ProgressFn | None = None,
        store: SegmentStore | None = None,
    ) -> LongVideoOutput:
        """One video of sum(frames) pixel frames from `parts` = [(text, pixel frames), ...];
        `overlap` in latent frames (default: `default_overlap`)."""
        c = self.components
        video = c.config.video

        # 1. Plan: each part's code frames, then segments over the whole timeline
        layout = self.layout(parts, overlap)
        plan, part_ends = layout.plan, list(layout.part_ends)
        C, T_seg, H, W = latent_shape(c, video.num_frames, video.height, video.width)
        if store is not None:
            store.open(self._request(list(layout.parts), seed, plan.overlap, num_steps, cfg_scale))
        embeddings = [encode_prompts(c, [text]) for text, _ in layout.parts]

        # 2. AR codes for the whole timeline (ARLON), part by part, in trained-length windows
        codes = None
        if self.use_injection:
            codes = store.codes() if store is not None else None
            if codes is None:
                codes = self._ar_codes(layout, embeddings, seed)
                if store is not None:
                    store.save_codes(codes)
            codes = codes.to(c.device)

        # 3. DiT segments
        latents = torch.zeros((1, C, plan.total_frames, H, W), device=c.device, dtype=c.dtype)
        computed = 0
        for index, start in enumerate(plan.starts):
            saved = store.segment(index) if store is not None else None
            if saved is None:
                # one bar over the whole video: step `done` of segment `index` of len(starts)
                shown = None if progress is None else (
                    lambda done, total, index=index: progress(index * total + done, len(plan.starts) * total)
                )
                saved = self._segment(plan, index, latents, embeddings, part_ends, codes, seed, num_steps, cfg_scale, shown)
                computed += 1
                if store is not None:
                    store.save_segment(index, saved)
            latents[:, :, start : start + T_seg] = saved.to(device=c.device, dtype=c.dtype)

        # 4. Decode the stitched timeline and cut it to length
        wanted = layout.num_frames
        frames = decode_latents(c, latents, pixel_frames_covered(c, plan.total_frames))[:, :wanted]
        pixel_bounds = [
            (pixel_frames_covered(c, plan.first_new(i)), min(wanted, pixel_frames_covered(c, start + T_seg)))
            for i, start in enumerate(plan.starts)
        ]
        segments = tuple((first, end) for first, end in pixel_bounds if first < wanted)
        return LongVideoOutput(frames, latents, codes, video.fps, segments=segments, layout=layout, segments_computed=computed)

    def _segment(self, plan, index, latents, embeddings, part_ends, codes, seed, num_steps, cfg_scale, progress) -> torch.Tensor:
        """Denoise segment `index` on the timeline: (1, C, T_seg, H, W)."""
        c = self.components
        video = c.config.video
        start, T_seg = plan.starts[index], plan.segment_frames
        C, H, W = latents.shape[1], latents.shape[3], latents.shape[4]
        part = next((p for p, end in enumerate(part_ends) if plan.first_new(index) < end), len(part_ends) - 1)
        condition_mask = reference = None
        if index > 0:
            condition_mask = torch.ones((1, T_seg), device=c.device)
            condition_mask[:, : plan.overlap] = 0
            reference = latents[:, :, start : start + T_seg].clone()
        injection = None
        if self.use_injection:
            r = c.config.ar_vq.compression[0]
            window = codes[:, start // r : (start + T_seg) // r]  # the segment's own code frames: a trained-length window
            injection = c.injector(codes_to_condition(c, window))
        noise_gen, sample_gen = make_generators(segment_seed(seed, index), c.device)
        return denoise(
            c, embeddings[part], (C, T_seg, H, W), (video.num_frames, video.height, video.width), noise_gen, sample_gen,
            injection=injection, num_steps=num_steps, cfg_scale=cfg_scale,
            reference_latents=reference, condition_mask=condition_mask, progress=progress,
        )

    def _request(self, parts, seed, overlap, num_steps, cfg_scale) -> dict:
        """What an unfinished video in a `SegmentStore` belongs to."""
        c = self.components
        return {
            "parts": parts, "seed": seed, "overlap": overlap, "num_steps": num_steps, "cfg_scale": cfg_scale,
            "arlon": self.use_injection, "config": c.config.hash(), "device": str(c.device), "dtype": str(c.dtype),
        }

    def _codes_for_parts(
        self, embeddings: list[PromptEmbedding], part_codes: list[int], total_frames: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Codes (1, total_frames, h, w): each part continues the last code frame of the previous one."""
        t_trained, h, w = self.components.ar_trained_grid
        frames: list[torch.Tensor] = []
        for index, prompt in enumerate(embeddings):
            # the last part also covers the frames the segment tiling adds at the end
            wanted = part_codes[index] if index < len(embeddings) - 1 else total_frames - sum(part_codes[:index])
            context = frames[-1][:, -1:] if frames else None
            frames.append(self._codes_for_part(prompt, wanted, (h, w), t_trained, context, generator))
        return torch.cat(frames, dim=1)

    def _codes_for_part(self, prompt, wanted, hw, window, context, generator) -> torch.Tensor:
        """`wanted` new code frames, in windows of at most `window` frames including the context."""
        if window < 2:
            raise ConfigError(f"the AR model was trained on {window} code frame(s); a long video needs at least two")
        produced: list[torch.Tensor] = []
        done = 0
        while done < wanted:
            if produced:  # continue the frames of this part, keeping half a window of context
                context = torch.cat(produced, dim=1)[:, -max(1, window // 2) :]
            t0 = 0 if context is None else context.shape[1]
            new = min(wanted - done, window - t0)
            out = generate_codes(self.components, prompt, (t0 + new, *hw), generator, prefix_codes=context)
            produced.append(out[:, t0:])
            done += new
        return torch.cat(produced, dim=1)
