"""Text-to-video generation: ARLON and the Open-Sora-style baseline (paper Figure 2, section 2).

ARLON:    text -> AR codes Q -> latent VQ-VAE decode -> F -> DiT sampling with semantic injection
          -> video VAE decode -> uint8 video (T, H, W, 3)
Baseline: the same frozen backbone with no injection: plain Open-Sora v1.2 generation.

The steps are small functions so that the long-video pipeline (`long_video.py`), the training
recipes and the benchmark can reuse them. Random draws come from generators seeded by the caller:
a fixed seed gives the same video on the same device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import torch

from arlon.data.video_io import video_tensor_to_uint8
from arlon.errors import ConfigError
from arlon.models.stdit3 import Injection
from arlon.pipelines.components import ArlonComponents

ProgressFn = Callable[[int, int], None]


@dataclass
class GenerationOutput:
    frames: np.ndarray  # uint8 (B, T, H, W, 3)
    latents: torch.Tensor  # (B, C, T', H', W') denoised DiT latents
    codes: torch.Tensor | None  # (B, t, h, w) AR codes at the AR ratio; None for the baseline
    fps: int


@dataclass(frozen=True)
class PromptEmbedding:
    y: torch.Tensor  # (B, 1, L, D_text) caption embeddings for the backbone
    mask: torch.Tensor  # (B, L) bool, True = valid token
    y_null: torch.Tensor  # (B, 1, L, D_text) the backbone's null caption (Open-Sora's CFG branch)

    @property
    def tokens(self) -> torch.Tensor:  # (B, L, D_text) for the AR model
        return self.y[:, 0]


# ---------------------------------------------------------------------------------------------
# Steps shared by every pipeline
# ---------------------------------------------------------------------------------------------


def make_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(noise generator on the CPU, sampling generator on `device`).

    Initial DiT noise is drawn on the CPU so that the same seed starts from the same noise on any
    device; AR token sampling needs a generator on the device of its logits.
    """
    noise_gen = torch.Generator("cpu").manual_seed(seed)
    sample_gen = torch.Generator(device).manual_seed(seed + 1)
    return noise_gen, sample_gen


@torch.no_grad()
def encode_prompts(components: ArlonComponents, prompts: list[str]) -> PromptEmbedding:
    emb, mask = components.text_encoder.encode(prompts)  # (B, L, D), (B, L)
    device, dtype = components.device, components.dtype
    y = emb.to(device=device, dtype=dtype)[:, None]  # (B, 1, L, D)
    L = y.shape[2]
    # Open-Sora's null caption is the y_embedding buffer (`T5Encoder.null`), cut to the caption length
    # because the conditional caption mask serves it too (`STDiT3.encode_text`).
    y_null = components.backbone.null_caption(len(prompts))[:, :, :L].to(device=device, dtype=dtype)
    return PromptEmbedding(y=y, mask=mask.to(device=device, dtype=torch.bool), y_null=y_null)


def latent_shape(components: ArlonComponents, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(C, T', H', W') of the DiT latent for a video of the given pixel size."""
    T, H, W = components.vae.latent_size(num_frames, height, width)
    return components.vae.latent_channels, T, H, W


def code_grid(components: ArlonComponents, latent_thw: tuple[int, int, int]) -> tuple[int, int, int]:
    """(t, h, w) of the AR code grid over a latent of size (T', H', W'), at the AR ratio (r, o, o)."""
    r, o_h, o_w = components.config.ar_vq.compression
    T, H, W = latent_thw
    if T % r or H % o_h or W % o_w:
        raise ConfigError(
            f"latent size {T}x{H}x{W} is not divisible by the AR compression {r}x{o_h}x{o_w}; "
            "choose num_frames/height/width so that it is (e.g. 68 frames at 512x512 for the paper preset)"
        )
    return T // r, H // o_h, W // o_w


@torch.no_grad()
def null_ar_prompt(components: ArlonComponents, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoded empty prompt, the AR model's classifier-free guidance branch: (B, L, D), (B, L) bool."""
    null_emb, null_mask = components.text_encoder.encode([""] * batch)
    return null_emb.to(device=components.device, dtype=components.dtype), null_mask.to(device=components.device, dtype=torch.bool)


@torch.no_grad()
def generate_codes(
    components: ArlonComponents,
    prompt: PromptEmbedding,
    grid: tuple[int, int, int],
    generator: torch.Generator,
    prefix_codes: torch.Tensor | None = None,
) -> torch.Tensor:
    """AR codes Q (B, t, h, w) for the prompts (eq. 1), optionally continuing `prefix_codes`."""
    sampling = components.config.ar_sampling
    null_emb = null_mask = None
    if sampling.cfg_scale != 1.0:
        null_emb, null_mask = null_ar_prompt(components, prompt.mask.shape[0])
    return components.ar.generate(
        prompt.tokens,
        prompt.mask,
        grid=grid,
        sampling=sampling,
        generator=generator,
        prefix_codes=prefix_codes,
        null_text_emb=null_emb,
        null_text_mask=null_mask,
    )


@torch.no_grad()
def codes_to_condition(components: ArlonComponents, codes: torch.Tensor) -> torch.Tensor:
    """F = D_latent(Q): the AR codes decoded to the DiT latent space, (B, C, T', H', W') (eq. 3)."""
    return components.ar_vq.decode(codes).to(components.dtype)


@torch.no_grad()
def condition_from_video(components: ArlonComponents, video: torch.Tensor) -> torch.Tensor:
    """F = D_latent(E_latent(E_video(x))) from a reference video (B, 3, T, H, W) in [-1, 1] (Figure 15).

    Uses the VQ-VAE the injector was trained with (`injection.condition_vq`), so the condition has
    the granularity the DiT saw in training.
    """
    vq = components.dit_vq if components.config.injection.condition_vq == "dit" else components.ar_vq
    latent = components.vae.encode(video.to(components.device, torch.float32))
    return vq.decode(vq.encode(latent.to(components.dtype))).to(components.dtype)


@torch.no_grad()
def denoise(
    components: ArlonComponents,
    prompt: PromptEmbedding,
    latent_size: tuple[int, int, int, int],
    video_size: tuple[int, int, int],
    noise_generator: torch.Generator,
    sample_generator: torch.Generator,
    injection: Injection | None = None,
    num_steps: int | None = None,
    cfg_scale: float | None = None,
    reference_latents: torch.Tensor | None = None,
    condition_mask: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """Rectified-flow sampling of the DiT latent (B, C, T', H', W').

    `reference_latents` with `condition_mask` (B, T') float (0 = keep clean, 1 = generate) keeps
    the masked frames clean, as Open-Sora's mask strategy does for long videos.
    """
    B = prompt.y.shape[0]
    device, dtype = components.device, components.dtype
    num_frames, height, width = video_size
    z = torch.randn((B, *latent_size), generator=noise_generator).to(device=device, dtype=dtype)
    if reference_latents is not None:
        keep = (condition_mask == 0)[:, None, :, None, None]  # (B, 1, T', 1, 1)
        z = torch.where(keep, reference_latents.to(dtype), z)
    model_kwargs = dict(
        fps=torch.full((1,), float(components.config.video.fps), device=device),
        height=torch.full((1,), float(height), device=device),
        width=torch.full((1,), float(width), device=device),
    )
    model_fn = partial(components.backbone, injection=injection)
    return components.flow.sample(
        model_fn,
        z,
        prompt.y,
        prompt.mask,
        prompt.y_null,
        model_kwargs,
        condition_mask=condition_mask,
        num_steps=num_steps,
        cfg_scale=cfg_scale,
        generator=sample_generator,
        progress=progress,
        num_frames=torch.full((1,), float(num_frames), device=device),
    )


@torch.no_grad()
def decode_latents(components: ArlonComponents, latents: torch.Tensor, num_frames: int) -> np.ndarray:
    """DiT latents -> uint8 frames (B, T, H, W, 3)."""
    video = components.vae.decode(latents.to(torch.float32), num_frames=num_frames)  # (B, 3, T, H, W)
    return video_tensor_to_uint8(video)


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------


class ArlonPipeline:
    """ARLON text-to-video (section 2). `use_injection=False` gives the Open-Sora-style baseline."""

    def __init__(self, components: ArlonComponents, use_injection: bool = True):
        if use_injection and not components.has_arlon:
            raise ConfigError("these components were built with baseline_only=True; ARLON needs its AR model and injector")
        self.components = components
        self.use_injection = use_injection

    @torch.no_grad()
    def __call__(
        self,
        prompts: list[str],
        *,
        seed: int = 0,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_steps: int | None = None,
        cfg_scale: float | None = None,
        codes: torch.Tensor | None = None,
        reference_video: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
    ) -> GenerationOutput:
        c = self.components
        video_cfg = c.config.video
        # 1. Check inputs
        num_frames = num_frames or video_cfg.num_frames
        height, width = height or video_cfg.height, width or video_cfg.width
        if not prompts:
            raise ConfigError("no prompts given")
        if codes is not None and reference_video is not None:
            raise ConfigError("pass either AR codes or a reference video as the condition, not both")
        noise_gen, sample_gen = make_generators(seed, c.device)
        size = latent_shape(c, num_frames, height, width)

        # 2. Encode the prompts
        prompt = encode_prompts(c, prompts)

        # 3. AR semantic condition F (skipped by the baseline)
        injection = None
        if self.use_injection:
            if reference_video is not None:
                F = condition_from_video(c, reference_video)
            else:
                if codes is None:
                    codes = generate_codes(c, prompt, code_grid(c, size[1:]), sample_gen)
                F = codes_to_condition(c, codes)
            injection = c.injector(F)

        # 4. Denoise with the frozen backbone (+ injection)
        latents = denoise(
            c, prompt, size, (num_frames, height, width), noise_gen, sample_gen,
            injection=injection, num_steps=num_steps, cfg_scale=cfg_scale, progress=progress,
        )

        # 5. Decode to pixels
        frames = decode_latents(c, latents, num_frames)
        return GenerationOutput(frames=frames, latents=latents, codes=codes, fps=video_cfg.fps)


class BaselinePipeline(ArlonPipeline):
    """Open-Sora v1.2-style generation: the same frozen backbone, no AR model, no injection."""

    def __init__(self, components: ArlonComponents):
        super().__init__(components, use_injection=False)
