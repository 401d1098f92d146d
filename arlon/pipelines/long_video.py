"""Long videos and progressive prompts (paper Figure 1 and section 4.5).

1. The AR model generates codes for the whole video. With progressive prompts X_1, X_2, ... the
   codes Q_p of part p are generated from X_p conditioned on the last code frame of Q_{p-1}
   (section 4.5). When a part is longer than the AR position table, codes are generated window
   by window, each window continuing the last frames of the previous one.
2. The codes are decoded once to the condition F for the whole timeline.
3. The DiT generates the video segment by segment, Open-Sora-style: every segment after the first
   starts with `overlap` clean latent frames taken from the previous segment (condition mask 0,
   t = 0 modulation), and is guided by the slice of F under it. A segment takes the prompt of the
   part in which its first new frame lies.
4. The stitched latent timeline is decoded once and cut to the requested length.

Unlike Open-Sora's loop, which re-encodes the decoded pixels of the previous clip, the overlap is
taken from the previous segment's latents directly: the same frames, without a decode/encode trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arlon.errors import ConfigError
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


def plan_segments(total_latent_frames: int, segment_frames: int, overlap: int, align: int) -> SegmentPlan:
    """Tile `total_latent_frames` with segments that overlap by `overlap` frames.

    Segment starts are multiples of `align` (the AR temporal ratio r), so each segment's slice of
    F begins on an AR code frame. The timeline is extended to a whole number of segments.
    """
    if not 0 < overlap < segment_frames:
        raise ConfigError(f"overlap must be in (0, {segment_frames}), got {overlap}")
    if overlap % align or segment_frames % align:
        raise ConfigError(f"segment ({segment_frames}) and overlap ({overlap}) must be multiples of {align} latent frames")
    stride = segment_frames - overlap
    starts = [0]
    while starts[-1] + segment_frames < total_latent_frames:
        starts.append(starts[-1] + stride)
    return SegmentPlan(segment_frames, overlap, tuple(starts), starts[-1] + segment_frames)


def pixel_frames_for(components: ArlonComponents, latent_frames: int) -> int:
    """Smallest pixel frame count whose latent has `latent_frames` frames."""
    video = components.config.video
    frames = 1
    while components.vae.latent_size(frames, video.height, video.width)[0] < latent_frames:
        frames += 1
    return frames


class LongVideoPipeline:
    """ARLON long-video generation; several prompts make a progressive-prompt video."""

    def __init__(self, components: ArlonComponents):
        if not components.has_arlon:
            raise ConfigError("these components were built with baseline_only=True; long videos need the AR model")
        self.components = components

    @torch.no_grad()
    def __call__(
        self,
        prompts: list[str],
        frames_per_prompt: int,
        *,
        seed: int = 0,
        overlap: int | None = None,
        num_steps: int | None = None,
        cfg_scale: float | None = None,
        progress: ProgressFn | None = None,
    ) -> GenerationOutput:
        """One video of `len(prompts) * frames_per_prompt` pixel frames (before rounding up to latent frames)."""
        c = self.components
        video = c.config.video
        if not prompts:
            raise ConfigError("no prompts given")
        noise_gen, sample_gen = make_generators(seed, c.device)
        r, o_h, o_w = c.config.ar_vq.compression
        C, T_seg, H, W = latent_shape(c, video.num_frames, video.height, video.width)
        if T_seg % r:
            raise ConfigError(f"the segment's {T_seg} latent frames are not a multiple of the AR ratio r={r}")
        if overlap is None:  # about a third of the segment, as Open-Sora's app does, on AR frame boundaries
            overlap = max(r, round(T_seg / 3 / r) * r)
        part_latents = c.vae.latent_size(frames_per_prompt, video.height, video.width)[0]
        part_code_frames = -(-part_latents // r)  # ceil

        # 1. AR codes for the whole video, part by part
        embeddings = [encode_prompts(c, [p]) for p in prompts]
        plan = plan_segments(part_code_frames * r * len(prompts), T_seg, overlap, r)
        codes = self._codes_for_parts(embeddings, part_code_frames, plan.total_frames // r, (H // o_h, W // o_w), sample_gen)

        # 2. The condition F for the whole timeline
        F = codes_to_condition(c, codes)  # (1, C, T_total, H, W)

        # 3. DiT segments
        latents = torch.zeros((1, C, plan.total_frames, H, W), device=c.device, dtype=c.dtype)
        segment_pixels = video.num_frames
        for index, start in enumerate(plan.starts):
            first_new = start if index == 0 else start + overlap
            prompt = embeddings[min(first_new // (part_code_frames * r), len(prompts) - 1)]
            condition_mask = reference = None
            if index > 0:
                condition_mask = torch.ones((1, T_seg), device=c.device)
                condition_mask[:, :overlap] = 0
                reference = latents[:, :, start : start + T_seg].clone()
            segment = denoise(
                c, prompt, (C, T_seg, H, W), (segment_pixels, video.height, video.width), noise_gen, sample_gen,
                injection=c.injector(F[:, :, start : start + T_seg]), num_steps=num_steps, cfg_scale=cfg_scale,
                reference_latents=reference, condition_mask=condition_mask, progress=progress,
            )
            latents[:, :, start : start + T_seg] = segment

        # 4. Decode the stitched timeline and cut it to length
        total_pixels = pixel_frames_for(c, plan.total_frames)
        frames = decode_latents(c, latents, total_pixels)
        wanted = frames_per_prompt * len(prompts)
        return GenerationOutput(frames=frames[:, :wanted], latents=latents, codes=codes, fps=video.fps)

    def _codes_for_parts(
        self,
        embeddings: list[PromptEmbedding],
        part_frames: int,
        total_frames: int,
        hw: tuple[int, int],
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Codes (1, total_frames, h, w): each part continues the last code frame of the previous one."""
        c = self.components
        h, w = hw
        window = self._window_frames(h, w)
        frames: list[torch.Tensor] = []
        for index, prompt in enumerate(embeddings):
            # the last part also covers the frames the segment tiling adds at the end
            wanted = part_frames if index < len(embeddings) - 1 else total_frames - part_frames * index
            frames.append(self._codes_for_part(prompt, wanted, (h, w), window, frames[-1][:, -1:] if frames else None, generator))
        return torch.cat(frames, dim=1)

    def _codes_for_part(self, prompt, wanted, hw, window, context, generator) -> torch.Tensor:
        """`wanted` new code frames, in windows of at most `window` frames including the context."""
        h, w = hw
        produced: list[torch.Tensor] = []
        while sum(x.shape[1] for x in produced) < wanted:
            done = sum(x.shape[1] for x in produced)
            if produced:  # continue the frames of this part, keeping half a window of context
                history = torch.cat(produced, dim=1)
                context = history[:, -max(1, window // 2) :]
            t0 = 0 if context is None else context.shape[1]
            new = min(wanted - done, window - t0)
            grid = (t0 + new, h, w)
            out = generate_codes(self.components, prompt, grid, generator, prefix_codes=context)
            produced.append(out[:, t0:])
        return torch.cat(produced, dim=1)

    def _window_frames(self, h: int, w: int) -> int:
        """How many code frames fit in the AR model's position table (one <FRAME> per frame, one <EOS>)."""
        capacity = self.components.config.ar.max_video_tokens
        window = (capacity - 1) // (h * w + 1)
        if window < 2:
            raise ConfigError(
                f"ar.max_video_tokens ({capacity}) holds fewer than two {h}x{w} code frames; long videos need more"
            )
        return window
