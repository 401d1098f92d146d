"""Rectified flow: Open-Sora v1.2's training objective and Euler sampler (`opensora/schedulers/rf/`).

Interpolation with tau = t / 1000 (t = 1000 is pure noise, t = 0 is clean data):

    x_t = (1 - tau) * x0 + tau * eps,      velocity target v = x0 - eps

`RectifiedFlow` owns the time grid (`sampling_timesteps`, the SD3-style resolution/length shift
`timestep_transform`), the forward process (`add_noise`), the loss (`training_loss`) and one pure
Euler update (`step`). The denoising loop in `sample` stays visible: conditioning-frame handling,
classifier-free guidance, `step`, in that order, as Open-Sora's `RFLOW.sample` runs them.

`FrameMaskGenerator` draws the training-time frame masks (ARLON paper section 2.3: "we randomly
unmask frames, leaving them noise-free"), with Open-Sora's `MaskGenerator` modes (`opensora/utils/train_utils.py`).

Frame masks everywhere here are (B, T) over latent frames: True = generated (noised, in the loss),
False = clean conditioning frame. The golden numbers are tests/golden/rflow.json.
"""

from __future__ import annotations

import difflib
from typing import Callable, Mapping

import torch
from torch import Tensor

from arlon.config import FlowConfig
from arlon.errors import ConfigError

# Reference resolution of the shift: ratio 1 for a 512x512 image (Open-Sora's `timestep_transform`).
BASE_RESOLUTION = 512 * 512
# Open-Sora counts video length in 17-pixel-frame VAE chunks of 5 latent frames each.
PIXEL_FRAMES_PER_CHUNK = 17
LATENT_FRAMES_PER_CHUNK = 5

ModelFn = Callable[..., Tensor]
NoiseFn = Callable[[Tensor], Tensor]
Progress = Callable[[int, int], None]


def _as_batch_tensor(value: float | int | Tensor, device: torch.device) -> Tensor:
    """A (B,) floating tensor on `device`. Floating tensors keep their dtype, because the
    reference computes the shift in the dtype of the model kwargs (bf16 in real inference)."""
    if not isinstance(value, Tensor):
        value = torch.tensor(value, dtype=torch.float32)
    elif not value.is_floating_point():
        value = value.float()
    return value.to(device).reshape(-1)


def _frame_factor(num_frames: Tensor) -> Tensor:
    """T_eff of the shift: 1 for an image batch, else Open-Sora's (num_frames // 17) * 5.

    Kept as the reference computes it, quirks included, so pretrained STDiT3 weights see the
    noise levels they were trained on: num_frames is in *pixel* frames (a latent-T estimate that
    is exact only for multiples of 17), only num_frames[0] decides the image case, and 2..16
    frames (or an image after a video in one batch) give 0, i.e. every shifted timestep is 0.
    """
    if num_frames[0] == 1:
        return torch.ones_like(num_frames)
    return num_frames // PIXEL_FRAMES_PER_CHUNK * LATENT_FRAMES_PER_CHUNK


def _broadcast_frames(values: Tensor) -> Tensor:
    return values[:, None, :, None, None]  # (B, T) -> (B, 1, T, 1, 1)


def _broadcast_batch(values: Tensor) -> Tensor:
    return values[:, None, None, None, None]  # (B,) -> (B, 1, 1, 1, 1)


class RectifiedFlow:
    """Open-Sora v1.2 RFLOW: logit-normal training timesteps, velocity MSE, Euler sampling with CFG."""

    def __init__(self, cfg: FlowConfig):
        self.cfg = cfg

    # ------------------------------------------------------------------ time grid

    def timestep_transform(
        self,
        t: Tensor,
        height: float | Tensor,
        width: float | Tensor,
        num_frames: float | Tensor,
        scale: float = 1.0,
    ) -> Tensor:
        """Shift timesteps t (B,) on 0..num_timesteps towards noise for large or long videos.

        ratio = sqrt(H*W / 512^2) * sqrt(T_eff) * scale with pixel H, W and T_eff from
        `_frame_factor`; t' = ratio*tau / (1 + (ratio - 1)*tau) * num_timesteps. height, width and
        num_frames are numbers or (B,)/(1,) tensors; a bf16 tensor makes the ratio bf16 (as in
        Open-Sora's inference and training) while t' keeps t's float32.
        """
        height, width, num_frames = (_as_batch_tensor(v, t.device) for v in (height, width, num_frames))
        tau = t / self.cfg.num_timesteps
        ratio_space = (height * width / BASE_RESOLUTION).sqrt()
        ratio_time = _frame_factor(num_frames).sqrt()
        ratio = ratio_space * ratio_time * scale
        shifted = ratio * tau / (1 + (ratio - 1) * tau)
        return shifted * self.cfg.num_timesteps

    def _check_frame_factor(self, num_frames: float | Tensor | None) -> None:
        """Refuse a shift that would make every timestep 0 (nothing would be noised or denoised)."""
        if num_frames is None:
            raise ValueError(
                "num_frames (pixel frames) is needed for the timestep transform; pass it, or set "
                "flow.use_timestep_transform=False"
            )
        frames = _as_batch_tensor(num_frames, torch.device("cpu"))
        if (_frame_factor(frames) == 0).any():
            raise ConfigError(
                f"flow timestep transform: num_frames={frames.tolist()} gives Open-Sora's frame factor "
                f"num_frames // {PIXEL_FRAMES_PER_CHUNK} * {LATENT_FRAMES_PER_CHUNK} = 0, so every timestep would "
                "be 0; use 1 (image) or >= 17 pixel frames (and no image after a video in one batch), or set "
                "flow.use_timestep_transform=False"
            )

    def sampling_timesteps(
        self,
        num_steps: int,
        height: float | Tensor,
        width: float | Tensor,
        num_frames: float | Tensor | None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> list[Tensor]:
        """The N sampling timesteps, each a tensor (B,) or (1,): t_i = (1 - i/N) * 1000, shifted.

        The grid is computed in Python floats and rounded once to `dtype` (float32), as the
        reference does; the shift always uses scale 1 when sampling.
        """
        if num_steps < 1:
            raise ConfigError(f"flow.num_sampling_steps must be >= 1, got {num_steps}")
        dtype = dtype or torch.float32
        grid = [(1.0 - i / num_steps) * self.cfg.num_timesteps for i in range(num_steps)]
        timesteps = [torch.tensor([value], device=device, dtype=dtype) for value in grid]
        if self.cfg.use_timestep_transform:
            self._check_frame_factor(num_frames)
            timesteps = [self.timestep_transform(t, height, width, num_frames, scale=1.0) for t in timesteps]
        return timesteps

    # ------------------------------------------------------------------ training

    def sample_training_timesteps(
        self,
        batch: int,
        height: float | Tensor,
        width: float | Tensor,
        num_frames: float | Tensor | None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training timesteps (batch,) float32: logit-normal sigmoid(N(0, 1)) * 1000, then the shift
        with `cfg.transform_scale` when `cfg.use_timestep_transform`. `generator` lives on `device`."""
        normal = torch.randn(batch, generator=generator, device=device)
        t = torch.sigmoid(normal) * self.cfg.num_timesteps
        if self.cfg.use_timestep_transform:
            self._check_frame_factor(num_frames)
            t = self.timestep_transform(t, height, width, num_frames, scale=self.cfg.transform_scale)
        return t

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = (1 - tau) x0 + tau eps with tau = t / 1000; x0, noise (B, C, T, H, W), t (B,).

        Written as keep*x0 + (1 - keep)*eps with keep = 1 - tau, the reference's evaluation order,
        so re-noised conditioning frames match it to the last bit; t = 0 returns x0 exactly.
        """
        keep = _broadcast_batch(1 - t.float() / self.cfg.num_timesteps)  # (B, 1, 1, 1, 1)
        return keep * x0 + (1 - keep) * noise

    def training_loss(
        self,
        model_fn: ModelFn,
        x0: Tensor,
        model_kwargs: Mapping[str, object],
        mask: Tensor | None = None,
        noise: Tensor | None = None,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        num_frames: float | Tensor | None = None,
    ) -> Tensor:
        """Velocity MSE per sample (B,), averaged over generated frames x C*H*W (`RFlowScheduler.training_losses`).

        x0: clean latents (B, C, T, H, W). mask: (B, T) bool, True = generated; False frames enter
        the model clean (x_t = x0) and are left out of the mean. model_fn(x_t, t, **model_kwargs,
        x_mask=mask) returns (B, C_out, T, H, W); its first C channels are the velocity (a
        pred_sigma model returns 2C). model_kwargs holds y, mask (caption mask), fps, height, width.
        When t is None it is drawn with `sample_training_timesteps`, which needs model_kwargs'
        height/width and the pixel `num_frames`; a given t is used as is (no shift).
        """
        channels = x0.shape[1]
        if t is None:
            height, width = self._pixel_size(model_kwargs)
            t = self.sample_training_timesteps(x0.shape[0], height, width, num_frames, generator, x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.add_noise(x0, noise, t)
        if mask is not None:
            x_t = torch.where(_broadcast_frames(mask), x_t, x0)
        velocity = model_fn(x_t, t, **model_kwargs, x_mask=mask)[:, :channels]  # (B, C, T, H, W)
        squared_error = (velocity - (x0 - noise)).pow(2)
        return self._masked_mean(squared_error, mask)

    @staticmethod
    def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
        """Mean of (B, C, T, H, W) values per sample, over True frames only when mask (B, T) is given."""
        if mask is None:
            return values.mean(dim=(1, 2, 3, 4))
        if not mask.any(dim=1).all():
            raise ValueError("training_loss: a sample has no generated frame (its mask row is all False)")
        per_frame = values.sum(dim=(1, 3, 4))  # (B, T)
        elements_per_frame = values.shape[1] * values.shape[3] * values.shape[4]
        return (per_frame * mask).sum(dim=1) / (mask.sum(dim=1) * elements_per_frame)

    # ------------------------------------------------------------------ sampling

    def step(self, z: Tensor, velocity: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
        """One Euler step from t to t_next (both (B,) on 0..1000): z + v * (t - t_next) / 1000.

        Pure: no state. The result follows type promotion with the fp32 velocity, so a bf16
        initial z continues in fp32 after the first step, as in the reference.
        """
        dt = (t - t_next) / self.cfg.num_timesteps
        return z + velocity * _broadcast_batch(dt)

    def sample(
        self,
        model_fn: ModelFn,
        z: Tensor,
        y: Tensor,
        y_mask: Tensor | None,
        y_null: Tensor | None,
        model_kwargs: Mapping[str, object],
        condition_mask: Tensor | None = None,
        num_steps: int | None = None,
        cfg_scale: float | None = None,
        generator: torch.Generator | None = None,
        progress: Progress | None = None,
        *,
        num_frames: float | Tensor | None = None,
        noise_fn: NoiseFn | None = None,
    ) -> Tensor:
        """Denoise z (B, C, T, H, W) from t = 1000 to 0; returns the clean latent (B, C, T, H, W).

        y (B, 1, L, D) captions with y_mask (B, L); y_null (B, 1, L, D) the null captions for
        classifier-free guidance, or None. model_kwargs: fps, height, width (pixels) for the model;
        height/width and `num_frames` (pixel frames, never given to the model) set the time shift.
        cfg_scale == 1 or y_null None runs the conditional branch only (guidance with scale 1 is
        the conditional velocity). condition_mask (B, T) float: 1 generate, 0 keep the frame
        already written into z clean, m in (0, 1) keep it clean until t <= 1000*m, then re-noise it
        to that level and denoise it (Open-Sora's `RFLOW.sample`). noise_fn(like) draws that re-noising noise
        (default: torch.randn with `generator`, one draw per step as the reference does).
        progress(done_steps, num_steps) is called after every step.
        """
        num_steps = self.cfg.num_sampling_steps if num_steps is None else num_steps
        cfg_scale = self.cfg.cfg_scale if cfg_scale is None else cfg_scale
        use_cfg = y_null is not None and cfg_scale != 1.0
        batch, channels = z.shape[:2]
        draw_noise = noise_fn or (
            lambda like: torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        )

        # 1. Time grid: one shifted schedule for the whole batch.
        height, width = self._pixel_size(model_kwargs)
        timesteps = self.sampling_timesteps(num_steps, height, width, num_frames, device=z.device)
        timesteps = [t.expand(batch) for t in timesteps]  # each (B,)

        # 2. Guidance batch: [conditional; unconditional]. The caption mask is NOT doubled: the
        # model repeats it, so the null caption is cut to the conditional captions' lengths.
        if use_cfg:
            if y_null.shape != y.shape:
                raise ValueError(f"y_null {tuple(y_null.shape)} must have the shape of y {tuple(y.shape)}")
            y_in = torch.cat([y, y_null])  # (2B, 1, L, D)

        # 3. Conditioning frames: m = 1 frames count as noised from the start.
        if condition_mask is not None:
            if condition_mask.shape != (batch, z.shape[2]):
                expected = (batch, z.shape[2])
                raise ValueError(f"condition_mask {tuple(condition_mask.shape)} must be (B, T) = {expected}")
            mask_t = condition_mask.float() * self.cfg.num_timesteps  # (B, T): level where a frame activates
            is_noised = condition_mask == 1

        # 4. Denoising loop.
        for i, t in enumerate(timesteps):
            x_mask = None
            if condition_mask is not None:
                x0 = z.clone()
                x_mask = mask_t >= t[:, None]  # (B, T): frames generated at this noise level
                activates_now = x_mask & ~is_noised
                renoised = self.add_noise(x0, draw_noise(x0), t)
                z = torch.where(_broadcast_frames(activates_now), renoised, x0)
                is_noised = is_noised | x_mask

            if use_cfg:
                x_mask_in = None if x_mask is None else torch.cat([x_mask, x_mask])
                out = model_fn(torch.cat([z, z]), torch.cat([t, t]), y_in, mask=y_mask, x_mask=x_mask_in, **model_kwargs)
                v_cond, v_uncond = out[:, :channels].chunk(2)  # each (B, C, T, H, W)
                velocity = v_uncond + cfg_scale * (v_cond - v_uncond)
            else:
                velocity = model_fn(z, t, y, mask=y_mask, x_mask=x_mask, **model_kwargs)[:, :channels]

            # The last step goes to t = 0: dt = t_{N-1} / 1000.
            t_next = timesteps[i + 1] if i + 1 < num_steps else torch.zeros_like(t)
            z = self.step(z, velocity, t, t_next)
            if condition_mask is not None:
                z = torch.where(_broadcast_frames(x_mask), z, x0)  # clean frames stay exactly x0
            if progress is not None:
                progress(i + 1, num_steps)
        return z

    def _pixel_size(self, model_kwargs: Mapping[str, object]) -> tuple[object, object]:
        if self.cfg.use_timestep_transform and not ("height" in model_kwargs and "width" in model_kwargs):
            raise ValueError("model_kwargs must hold 'height' and 'width' (pixels) for the timestep transform")
        return model_kwargs.get("height"), model_kwargs.get("width")


# ---------------------------------------------------------------------- training frame masks

# Open-Sora's MaskGenerator mode names; "intepolate" keeps the reference's spelling so ratio
# tables copied from its configs work unchanged.
FRAME_MASK_MODES = (
    "identity",
    "random",
    "intepolate",
    "quarter_random",
    "quarter_head",
    "quarter_tail",
    "quarter_head_tail",
    "image_random",
    "image_head",
    "image_tail",
    "image_head_tail",
)

# Open-Sora v1.2 stage-3 ratios (`configs/opensora-v1-2/train/stage3.py`); "identity" gets the remaining 0.75.
STAGE3_FRAME_MASK_RATIOS: dict[str, float] = {
    "random": 0.01,
    "intepolate": 0.002,
    "quarter_random": 0.002,
    "quarter_head": 0.002,
    "quarter_tail": 0.002,
    "quarter_head_tail": 0.002,
    "image_random": 0.0,
    "image_head": 0.22,
    "image_tail": 0.005,
    "image_head_tail": 0.005,
}


class FrameMaskGenerator:
    """Random training frame masks (B, T) bool, True = generated, False = clean condition frame.

    Each sample draws one mode with probability `ratios[mode]` ("identity", all frames generated,
    gets 1 - the sum of the others unless given). A video of T <= 1 frames is always all True. A
    mode that cannot apply to a short clip falls back to identity for that sample: quarter_* modes
    need T >= 4 (the reference would crash), and image_head_tail at T = 2 would leave no frame
    in the loss.
    """

    def __init__(self, ratios: Mapping[str, float] | None = None, generator: torch.Generator | None = None):
        ratios = dict(STAGE3_FRAME_MASK_RATIOS if ratios is None else ratios)
        for mode, ratio in ratios.items():
            if mode not in FRAME_MASK_MODES:
                close = difflib.get_close_matches(mode, FRAME_MASK_MODES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown frame mask mode {mode!r}{hint} (choices: {', '.join(FRAME_MASK_MODES)})")
            if not 0.0 <= ratio <= 1.0:
                raise ConfigError(f"frame mask ratio of {mode!r} must be in [0, 1], got {ratio}")
        if "identity" not in ratios:
            ratios["identity"] = 1.0 - sum(ratios.values())
        total = sum(ratios.values())
        if ratios["identity"] < -1e-9 or abs(total - 1.0) > 1e-6:
            raise ConfigError(f"frame mask ratios must sum to 1 (identity included), got {total:.6f}: {ratios}")
        self.ratios = {mode: max(ratio, 0.0) for mode, ratio in ratios.items()}
        self.generator = generator
        self._modes = list(self.ratios)
        self._probabilities = torch.tensor([self.ratios[mode] for mode in self._modes], dtype=torch.float64)

    def __call__(self, batch: int, num_frames: int, device: torch.device | str | None = None) -> Tensor:
        """One mask per sample: (batch, num_frames) bool on `device`."""
        if num_frames <= 1:
            return torch.ones(batch, num_frames, dtype=torch.bool, device=device)
        rows = [self.mask_for_mode(self.draw_mode(), num_frames) for _ in range(batch)]
        return torch.stack(rows).to(device)

    def draw_mode(self) -> str:
        index = torch.multinomial(self._probabilities, 1, generator=self.generator).item()
        return self._modes[index]

    def mask_for_mode(self, mode: str, num_frames: int) -> Tensor:
        """The (num_frames,) bool mask of one sample for `mode`, drawing its randomness."""
        mask = torch.ones(num_frames, dtype=torch.bool)
        if num_frames <= 1 or mode == "identity":
            return mask
        if mode.startswith("quarter_"):
            if num_frames < 4:
                return mask
            k = self._randint(1, num_frames // 4)  # conditioning block length
            if mode == "quarter_random":
                start = self._randint(0, num_frames - k)
                mask[start : start + k] = False
            if mode in ("quarter_head", "quarter_head_tail"):
                mask[:k] = False
            if mode in ("quarter_tail", "quarter_head_tail"):
                mask[-k:] = False
        elif mode == "image_random":
            mask[self._randint(0, num_frames - 1)] = False
        elif mode.startswith("image_"):
            if mode in ("image_head", "image_head_tail"):
                mask[0] = False
            if mode in ("image_tail", "image_head_tail"):
                mask[-1] = False
        elif mode == "intepolate":
            mask[self._randint(0, 1) :: 2] = False
        elif mode == "random":
            condition_ratio = 0.1 + 0.8 * torch.rand((), generator=self.generator).item()  # U(0.1, 0.9)
            mask = torch.rand(num_frames, generator=self.generator) > condition_ratio
            if not mask.any():
                mask[-1] = True
        else:
            raise ConfigError(f"unknown frame mask mode {mode!r} (choices: {', '.join(FRAME_MASK_MODES)})")
        if not mask.any():
            return torch.ones(num_frames, dtype=torch.bool)
        return mask

    def _randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high], both ends included."""
        return int(torch.randint(low, high + 1, (), generator=self.generator).item())
