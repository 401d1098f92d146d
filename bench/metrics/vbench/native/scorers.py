"""One scorer per VBench dimension the native backend computes: VBench's algorithm, on frames decoded once.

A scorer is built once per scoring job (its networks load then) and scores one decoded video (or one
VBench-Long clip) at a time, returning what the official worker returns for it: the per-video value, the
aggregation weight VBench's rule needs, and details. Frames go through each network in batches.
`NATIVE_SCORERS` maps a dimension to its class; adding a dimension is one class and one decorator line.

Each class cites the VBench file and function it reproduces; docs/vbench-notes.md has the aggregation rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from arlon.registry import Registry
from bench.metrics.vbench.dimensions import CLIP_B32, DIMENSIONS, DINO_WEIGHTS, WeightFile
from bench.metrics.vbench.native import frames as T
from bench.metrics.vbench.native.amt import load_amt_s, pad_to_multiple_of_16
from bench.metrics.vbench.native.musiq import load_musiq
from bench.metrics.vbench.native.raft import load_raft, pad_to_multiple_of_8
from bench.metrics.vbench.native.viclip import NUM_FRAMES, load_viclip
from bench.metrics.vbench.native.vit import load_dino_vit, load_openai_clip_visual


@dataclass
class DecodedVideo:
    """A video (or one VBench-Long clip) decoded once for every dimension: uint8 (T, H, W, 3) RGB frames."""

    frames: np.ndarray
    fps: float
    prompt: str
    memo: dict = field(default_factory=dict)  # features two dimensions share, computed once per video

    def tensor(self) -> torch.Tensor:
        """float32 (T, 3, H, W) in [0, 255], shared by the dimensions that read every frame."""
        if "tensor" not in self.memo:
            self.memo["tensor"] = T.to_tensor(self.frames)
        return self.memo["tensor"]


@dataclass(frozen=True)
class Runtime:
    """Where and how the networks run: fp32 for parity; `autocast` (bf16 / fp16) only for speed on GPU."""

    device: torch.device
    autocast: torch.dtype | None = None
    batch_frames: int = 32  # frames per forward pass

    def context(self):
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)


def encode_in_batches(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """encode(images[i : i + batch]) for every batch, concatenated, as float32 on the CPU."""
    out = []
    with torch.inference_mode(), runtime.context():
        for start in range(0, len(images), runtime.batch_frames):
            batch = images[start : start + runtime.batch_frames].to(runtime.device)
            if runtime.device.type == "cuda":
                batch = batch.contiguous(memory_format=torch.channels_last)
            out.append(encode(batch).float().cpu())
    return torch.cat(out)


def first_and_previous_similarity(features: torch.Tensor) -> tuple[float, int]:
    """VBench's consistency formula over L2-normalised per-frame features (T, D): for i >= 1,
    s_i = (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2. Returns (sum of s_i, T - 1)."""
    features = F.normalize(features.double(), dim=-1)
    previous = F.cosine_similarity(features[:-1], features[1:], dim=-1).clamp(min=0)
    first = F.cosine_similarity(features[:1].expand_as(features[1:]), features[1:], dim=-1).clamp(min=0)
    return float(((previous + first) / 2).sum()), len(features) - 1


class DimensionScorer(ABC):
    """Loads its networks once (`__init__`), then scores decoded videos one at a time. `shared` is one dict per
    scoring job: two dimensions that run the same network on the same inputs load and run it once through it."""

    files: tuple[WeightFile, ...] = ()  # the weight files it reads (VBench's own paths)

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        self.runtime = runtime
        self.shared = {} if shared is None else shared

    @abstractmethod
    def score(self, video: DecodedVideo) -> dict:
        """{"value": float, "weight": float | None, "details": dict}, as the official worker reports it."""


NATIVE_SCORERS: Registry[type[DimensionScorer]] = Registry("native VBench dimension")


def pairs_result(video: DecodedVideo, features: torch.Tensor) -> dict:
    total, pairs = first_and_previous_similarity(features)
    if pairs == 0:
        raise ValueError("a one-frame video has no frame pairs to compare")
    return {"value": total / pairs, "weight": float(pairs), "details": {"frames": len(video.frames)}}


@NATIVE_SCORERS.register("subject_consistency")
class SubjectConsistency(DimensionScorer):
    """`vbench/subject_consistency.py`: DINO ViT-B/16 CLS features of every frame (`dino_transform(224)`:
    bilinear shorter side 224, no crop), first/previous-frame similarity; weight = frame pairs."""

    files = tuple(w for w in DIMENSIONS["subject_consistency"].weights if w.path.endswith(DINO_WEIGHTS))

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        super().__init__(paths, runtime, shared)
        self.model = load_dino_vit(paths[0]).to(runtime.device)

    def score(self, video: DecodedVideo) -> dict:
        images = T.dino_transform(video.tensor())
        return pairs_result(video, encode_in_batches(self.model, images, self.runtime))


@NATIVE_SCORERS.register("background_consistency")
class BackgroundConsistency(DimensionScorer):
    """`vbench/background_consistency.py`: CLIP ViT-B/32 image features of every frame (`clip_transform(224)`
    on float frames), first/previous-frame similarity; weight = frame pairs (its `cnt_per_video`)."""

    files = (CLIP_B32,)

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        super().__init__(paths, runtime, shared)
        self.model = load_openai_clip_visual(paths[0]).to(runtime.device)

    def score(self, video: DecodedVideo) -> dict:
        images = T.clip_transform(video.tensor())
        return pairs_result(video, encode_in_batches(self.model, images, self.runtime))


@NATIVE_SCORERS.register("aesthetic_quality")
class AestheticQuality(DimensionScorer):
    """`vbench/aesthetic_quality.py` (`laion_aesthetic`): CLIP ViT-L/14 features of every frame, L2-normalised
    in fp32, through the LAION linear head, / 10; the video's value is the frame mean."""

    files = DIMENSIONS["aesthetic_quality"].weights  # CLIP ViT-L/14, the LAION head

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        super().__init__(paths, runtime, shared)
        self.model = load_openai_clip_visual(paths[0]).to(runtime.device)
        head = torch.load(paths[1], map_location="cpu", weights_only=True)
        if set(head) != {"weight", "bias"} or tuple(head["weight"].shape) != (1, 768):
            raise ValueError(f"{paths[1]}: not the LAION aesthetic head (a Linear 768 -> 1 state dict)")
        self.head_weight, self.head_bias = head["weight"].float(), head["bias"].float()

    def score(self, video: DecodedVideo) -> dict:
        features = encode_in_batches(self.model, T.clip_transform(video.tensor()), self.runtime)
        scores = F.linear(F.normalize(features, dim=-1), self.head_weight, self.head_bias).squeeze(-1) / 10
        return {"value": float(scores.mean()), "weight": None, "details": {"frames": len(video.frames)}}


@NATIVE_SCORERS.register("temporal_flickering")
class TemporalFlickering(DimensionScorer):
    """`vbench/temporal_flickering.py` (`cal_score`): (255 - mean over consecutive frame pairs of the mean
    absolute pixel difference) / 255. No network; the static filter is a selection step of VBench's standard
    protocol, not part of the score (the official backend does not run it either)."""

    def score(self, video: DecodedVideo) -> dict:
        if len(video.frames) < 2:
            raise ValueError("a one-frame video has no frame pairs to compare")
        frames = video.frames.astype(np.int16)
        per_pair = np.abs(frames[1:] - frames[:-1]).reshape(len(frames) - 1, -1).mean(axis=1, dtype=np.float64)
        return {"value": (255.0 - float(per_pair.mean())) / 255.0, "weight": None, "details": {"frames": len(video.frames)}}



class ViCLIPSimilarity(DimensionScorer):
    """`vbench/temporal_style.py` and `vbench/overall_consistency.py` (the two files differ only by name): ViCLIP's
    cosine similarity between the video (8 frames, "middle" sampling, `clip_transform(224)` on uint8 frames) and
    the prompt. The two dimensions share one loaded model, and each video's embedding is computed once."""

    files = DIMENSIONS["temporal_style"].weights  # ViCLIP's checkpoint, CLIP's BPE vocabulary

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        super().__init__(paths, runtime, shared)
        key = ("viclip", str(paths[0]))
        if key not in self.shared:
            self.shared[key] = (load_viclip(paths[0], paths[1]).to(runtime.device), {})
        self.model, self.text_features = self.shared[key]

    def video_features(self, video: DecodedVideo) -> torch.Tensor:
        if "viclip" not in video.memo:
            indices = T.middle_frame_indices(NUM_FRAMES, len(video.frames))
            frames = T.clip_transform(T.to_tensor(video.frames[indices]), from_uint8=True)  # (8, 3, 224, 224)
            with torch.inference_mode(), self.runtime.context():
                video.memo["viclip"] = self.model.encode_video(frames.unsqueeze(0).to(self.runtime.device)).cpu()
        return video.memo["viclip"]

    def score(self, video: DecodedVideo) -> dict:
        if video.prompt not in self.text_features:  # VBench memoises text features per prompt string too
            with torch.inference_mode(), self.runtime.context():
                self.text_features[video.prompt] = self.model.encode_text(video.prompt).cpu()
        similarity = (self.video_features(video) @ self.text_features[video.prompt].T).item()
        return {"value": float(similarity), "weight": None, "details": {"frames": len(video.frames)}}


NATIVE_SCORERS.register("temporal_style")(ViCLIPSimilarity)
NATIVE_SCORERS.register("overall_consistency")(ViCLIPSimilarity)


@NATIVE_SCORERS.register("dynamic_degree")
class DynamicDegree(DimensionScorer):
    """`vbench/dynamic_degree.py` (`DynamicDegree.infer`): every round(fps / 8)-th frame; RAFT flow (20 iterations)
    between consecutive kept frames, each pair replicate-padded to multiples of 8; a pair's score is the mean of
    the largest 5% flow magnitudes of the padded field. The video is dynamic (1.0, else 0.0) when at least
    round(4 n / 16) pair scores exceed 6 min(H, W) / 256 (n kept frames; no pair: not dynamic)."""

    files = DIMENSIONS["dynamic_degree"].weights
    pairs_per_batch = 4  # RAFT's correlation volume grows with (H W / 64)^2 per pair

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        super().__init__(paths, runtime, shared)
        self.model = load_raft(paths[0]).to(runtime.device)

    def score(self, video: DecodedVideo) -> dict:
        interval = max(1, round(video.fps / 8))  # Python's round, as VBench's
        frames = video.tensor()[::interval]  # (n, 3, H, W) in [0, 255]
        height, width = frames.shape[-2:]
        threshold, needed = 6.0 * min(height, width) / 256.0, round(4 * len(frames) / 16.0)
        padded = pad_to_multiple_of_8(frames)
        scores = []
        with torch.inference_mode():
            for start in range(0, len(padded) - 1, self.pairs_per_batch):
                end = min(start + self.pairs_per_batch, len(padded) - 1)
                first = padded[start:end].to(self.runtime.device)
                second = padded[start + 1 : end + 1].to(self.runtime.device)
                flow = self.model(first, second).float().cpu()  # (B, 2, H', W')
                magnitude = flow.square().sum(dim=1).sqrt().flatten(1)  # (B, H' W')
                top = int(magnitude.shape[1] * 0.05)
                scores.extend(float(row.topk(top).values.double().mean()) for row in magnitude)
        dynamic = len(scores) > 0 and sum(score > threshold for score in scores) >= needed
        return {"value": 1.0 if dynamic else 0.0, "weight": None,
                "details": {"frames": len(video.frames), "pair_scores_above": sum(s > threshold for s in scores),
                            "pairs_needed": needed}}


@NATIVE_SCORERS.register("motion_smoothness")
class MotionSmoothness(DimensionScorer):
    """`vbench/motion_smoothness.py` (`MotionSmoothness.motion_score`): AMT-S predicts the middle of every two
    even-indexed frames (f0, f2 -> f1', ...; frames in [0, 1], replicate-padded to multiples of 16, never
    downscaled: VBench's scale is 1 in every official run); predictions are cut back, x 255, clipped and truncated
    to uint8, and compared with the real odd frames: value = (255 - mean absolute difference) / 255."""

    files = DIMENSIONS["motion_smoothness"].weights
    pairs_per_batch = 4

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        super().__init__(paths, runtime, shared)
        self.model = load_amt_s(paths[0]).to(runtime.device)

    def score(self, video: DecodedVideo) -> dict:
        inputs = video.tensor()[::2] / 255.0  # (n, 3, H, W): the even frames
        if len(inputs) < 2:
            raise ValueError("motion smoothness needs at least three frames (two even-indexed ones)")
        height, width = inputs.shape[-2:]
        padded, (left, _, top, _) = pad_to_multiple_of_16(inputs)
        differences = []
        with torch.inference_mode():
            for start in range(0, len(padded) - 1, self.pairs_per_batch):
                end = min(start + self.pairs_per_batch, len(padded) - 1)
                middle = self.model(padded[start:end].to(self.runtime.device), padded[start + 1 : end + 1].to(self.runtime.device))
                middle = middle[..., top : top + height, left : left + width].float().cpu()
                predicted = (middle * 255.0).permute(0, 2, 3, 1).numpy().clip(0, 255).astype(np.uint8)  # truncated, as VBench
                real = video.frames[2 * start + 1 : 2 * end : 2]  # the odd frames between each pair
                differences.extend(np.abs(p.astype(np.int16) - r.astype(np.int16)).mean() for p, r in zip(predicted, real))
        value = (255.0 - float(np.mean(differences))) / 255.0
        return {"value": value, "weight": None, "details": {"frames": len(video.frames)}}


@NATIVE_SCORERS.register("imaging_quality")
class ImagingQuality(DimensionScorer):
    """`vbench/imaging_quality.py` (`technical_quality`, its default "longer" preprocessing): every frame, as float,
    resized bilinearly (no antialiasing) to a longer side of 512 when it is longer, / 255; MUSIQ-SPAQ's score per
    frame; the video's value is the frame mean on MUSIQ's 0-100 scale (the aggregate divides by 100)."""

    files = DIMENSIONS["imaging_quality"].weights

    def __init__(self, paths: tuple[Path, ...], runtime: Runtime, shared: dict | None = None):
        super().__init__(paths, runtime, shared)
        self.model = load_musiq(paths[0]).to(runtime.device)

    def score(self, video: DecodedVideo) -> dict:
        frames = video.tensor()
        height, width = frames.shape[-2:]
        if max(height, width) > 512:
            scale = 512.0 / max(height, width)
            frames = T.resize(frames, (int(scale * height), int(scale * width)), "bilinear")
        scores = []
        # A frame is a few hundred 32x32 patch images through MUSIQ's stem: one frame per pass is fastest on a CPU.
        per_pass = 1 if self.runtime.device.type == "cpu" else self.runtime.batch_frames
        with torch.inference_mode(), self.runtime.context():
            for start in range(0, len(frames), per_pass):
                batch = (frames[start : start + per_pass] / 255.0).to(self.runtime.device)
                scores.extend(float(s) for s in self.model(batch).float().cpu())
        return {"value": sum(scores) / len(scores), "weight": None, "details": {"frames": len(video.frames)}}
