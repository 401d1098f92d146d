"""VBench's frame sampling and image transforms, on batches of frames (`vbench/utils.py`).

VBench resizes torch tensors with torchvision's `Resize(..., antialias=False)`, i.e. `F.interpolate` with
`align_corners=False` and no antialiasing, and its input type matters (docs/vbench-notes.md, 'Video decoding'):
- `load_video` (DINO and CLIP dimensions) hands over float32 frames in [0, 255], so a bicubic resize keeps its
  overshoot (values below 0 and above 255) and nothing is rounded;
- `read_frames_decord_by_fps` (ViCLIP dimensions) hands over uint8 frames, which torchvision resizes in float,
  then clamps (bicubic only) and rounds back to uint8.
Frames come in as uint8 (T, H, W, 3) arrays, decoded once per video; the transforms return (T, 3, h, w) float32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def middle_frame_indices(num_frames: int, video_length: int) -> list[int]:
    """`get_frame_indices(num_frames, vlen, sample="middle")`: split [0, vlen) into min(n, vlen) intervals at
    int(linspace) boundaries, take each interval's middle; pad with the last index up to n."""
    count = min(num_frames, video_length)
    bounds = np.linspace(0, video_length, count + 1).astype(int)
    indices = [(int(start) + int(end) - 1) // 2 for start, end in zip(bounds[:-1], bounds[1:])]
    return indices + [indices[-1]] * (num_frames - len(indices))


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in [0, 255], as `load_video(..., return_tensor=True)`."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer int(size * long / short)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize(frames: torch.Tensor, size: tuple[int, int], mode: str, from_uint8: bool = False) -> torch.Tensor:
    """torchvision's tensor `resize(..., antialias=False)`; `from_uint8`: the input stood for uint8 frames, so
    the result is clamped (bicubic) and rounded as torchvision does before casting back to uint8."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames  # torchvision returns the input untouched when the size does not change
    out = F.interpolate(frames, size=size, mode=mode, align_corners=False, antialias=False)
    if from_uint8:
        if mode == "bicubic":
            out = out.clamp(0, 255)
        out = out.round()
    return out


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision `center_crop` (offsets int(round((H - size) / 2)); frames at least `size` on each side)."""
    height, width = frames.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return frames[..., top : top + size, left : left + size]


def normalize(frames: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=frames.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=frames.dtype).view(1, 3, 1, 1)
    return (frames - mean_t) / std_t


def clip_transform(frames: torch.Tensor, size: int = 224, from_uint8: bool = False) -> torch.Tensor:
    """`clip_transform(224)`: bicubic shorter side to 224, center crop 224, / 255, CLIP mean / std."""
    frames = resize(frames, shorter_side_size(*frames.shape[-2:], size), "bicubic", from_uint8)
    return normalize(center_crop(frames, size) / 255.0, CLIP_MEAN, CLIP_STD)


def dino_transform(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """`dino_transform(224)`: bilinear shorter side to 224 (no crop: the aspect ratio is kept), / 255, ImageNet
    mean / std."""
    frames = resize(frames, shorter_side_size(*frames.shape[-2:], size), "bilinear")
    return normalize(frames / 255.0, IMAGENET_MEAN, IMAGENET_STD)
