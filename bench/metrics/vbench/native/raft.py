"""RAFT (large), the optical-flow network of VBench's dynamic degree, loading `raft-things.pth` as VBench does.

VBench vendors princeton-vl's RAFT (`vbench/third_party/RAFT/core/raft.py`, `extractor.py`, `update.py`, `corr.py`)
and runs it with small=False, mixed_precision=False, alternate_corr=False, 20 refinement iterations, test mode.
Module names here are the checkpoint's own (after its DataParallel `module.` prefix), so the file loads as is:

- `fnet`, `cnet`: feature and context encoders (7x7 stride-2 conv, three stages of two residual blocks at 64 / 96 /
  128 channels, strides 1 / 2 / 2, a 1x1 conv to 256): 1/8 resolution. fnet uses instance norm, cnet batch norm.
- all-pairs correlation of the two feature maps / sqrt(256), pooled into 4 levels, looked up in a radius-4 window
  around the current match (`CorrelationPyramid`);
- `update_block`: motion encoder, separable ConvGRU (1x5 then 5x1), flow head (a flow update at 1/8), and a mask
  head whose 9 weights per full-resolution pixel upsample the flow as a convex combination of its 3x3 neighbours.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.metrics.vbench.native.checkpoints import load_exactly

HIDDEN, CONTEXT = 128, 128
LEVELS, RADIUS = 4, 4
ITERATIONS = 20  # VBench's dynamic_degree (`DynamicDegree.infer`) and static filter


class ResidualBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1):
        super().__init__()
        make_norm = (lambda c: nn.BatchNorm2d(c)) if norm == "batch" else (lambda c: nn.InstanceNorm2d(c))
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1, self.norm2 = make_norm(planes), make_norm(planes)
        self.downsample = None
        if stride != 1:
            # One norm registered under two names, norm3 first, as upstream: the checkpoint holds it twice, and
            # loading copies `downsample.1` last (the two copies are equal in RAFT's own file).
            self.norm3 = make_norm(planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class Encoder(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, out, H/8, W/8)."""

    def __init__(self, out: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.norm1 = nn.BatchNorm2d(64) if norm == "batch" else nn.InstanceNorm2d(64)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64, norm), ResidualBlock(64, 64, norm))
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, norm, 2), ResidualBlock(96, 96, norm))
        self.layer3 = nn.Sequential(ResidualBlock(96, 128, norm, 2), ResidualBlock(128, 128, norm))
        self.conv2 = nn.Conv2d(128, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))  # (B, 64, H/2, W/2)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 128, H/8, W/8)
        return self.conv2(x)


class CorrelationPyramid:
    """All-pairs correlation volumes at 4 scales, and the radius-4 window around given matches."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor):
        B, C, H, W = fmap1.shape
        corr = fmap1.flatten(2).transpose(1, 2) @ fmap2.flatten(2) / torch.sqrt(torch.tensor(float(C)))  # (B, HW, HW)
        corr = corr.reshape(B * H * W, 1, H, W)  # one map of frame 2 per pixel of frame 1
        self.levels = [corr]
        for _ in range(LEVELS - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.levels.append(corr)
        steps = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float32, device=fmap1.device)
        # RAFT's window: the first offset moves x and the second y (its meshgrid(dy, dx) is added to (x, y));
        # the window is square, so only the order of the 81 channels depends on it, which its weights expect.
        first, second = torch.meshgrid(steps, steps, indexing="ij")
        self.window = torch.stack([first, second], dim=-1).view(1, 2 * RADIUS + 1, 2 * RADIUS + 1, 2)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        B, _, H, W = coords.shape
        centres = coords.permute(0, 2, 3, 1).reshape(B * H * W, 1, 1, 2)  # (x, y) at 1/8
        out = []
        for level, corr in enumerate(self.levels):
            points = centres / 2**level + self.window  # (BHW, 9, 9, 2)
            h, w = corr.shape[-2:]
            grid = torch.cat([2 * points[..., :1] / (w - 1) - 1, 2 * points[..., 1:] / (h - 1) - 1], dim=-1)
            sampled = F.grid_sample(corr, grid, align_corners=True)  # (BHW, 1, 9, 9)
            out.append(sampled.view(B, H, W, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()  # (B, 4*81, H, W)


class MotionEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        planes = LEVELS * (2 * RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(planes, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], dim=1))), flow], dim=1)  # (B, 128, H, W)


class SeparableConvGRU(nn.Module):
    def __init__(self, hidden: int = HIDDEN, inputs: int = 128 + HIDDEN):
        super().__init__()
        for axis, (kernel, pad) in {"1": ((1, 5), (0, 2)), "2": ((5, 1), (2, 0))}.items():
            for gate in "zrq":
                setattr(self, f"conv{gate}{axis}", nn.Conv2d(hidden + inputs, hidden, kernel, padding=pad))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for axis in "12":  # horizontal, then vertical
            hx = torch.cat([h, x], dim=1)
            z = torch.sigmoid(getattr(self, f"convz{axis}")(hx))
            r = torch.sigmoid(getattr(self, f"convr{axis}")(hx))
            q = torch.tanh(getattr(self, f"convq{axis}")(torch.cat([r * h, x], dim=1)))
            h = (1 - z) * h + z * q
        return h


class FlowHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(HIDDEN, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = MotionEncoder()
        self.gru = SeparableConvGRU()
        self.flow_head = FlowHead()
        self.mask = nn.Sequential(nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], dim=1))
        return net, 0.25 * self.mask(net), self.flow_head(net)


class RAFT(nn.Module):
    def __init__(self):
        super().__init__()
        self.fnet = Encoder(256, "instance")
        self.cnet = Encoder(HIDDEN + CONTEXT, "batch")
        self.update_block = UpdateBlock()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iterations: int = ITERATIONS) -> torch.Tensor:
        """Frames (B, 3, H, W) in [0, 255], H and W multiples of 8 -> flow from 1 to 2 (B, 2, H, W), in pixels."""
        image1, image2 = 2 * (image1 / 255.0) - 1.0, 2 * (image2 / 255.0) - 1.0
        fmap1, fmap2 = self.fnet(torch.cat([image1, image2])).float().chunk(2)  # one batch, as RAFT runs them
        correlation = CorrelationPyramid(fmap1, fmap2)
        net, inp = self.cnet(image1).split([HIDDEN, CONTEXT], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        B, _, H, W = fmap1.shape
        coords0 = pixel_grid(B, H, W, image1.device)  # (B, 2, H/8, W/8): (x, y) of each cell
        coords1 = coords0.clone()
        for _ in range(iterations):
            net, mask, delta = self.update_block(net, inp, correlation(coords1), coords1 - coords0)
            coords1 = coords1 + delta
        return convex_upsample(coords1 - coords0, mask)


def pixel_grid(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].repeat(batch, 1, 1, 1)


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) at 1/8 -> (B, 2, 8H, 8W): each full-resolution pixel a softmax-weighted mix of its cell's 3x3
    neighbourhood (RAFT's `upsample_flow`)."""
    B, _, H, W = flow.shape
    weights = torch.softmax(mask.view(B, 1, 9, 8, 8, H, W), dim=2)
    neighbours = F.unfold(8 * flow, [3, 3], padding=1).view(B, 2, 9, 1, 1, H, W)
    up = (weights * neighbours).sum(dim=2)  # (B, 2, 8, 8, H, W)
    return up.permute(0, 1, 4, 2, 5, 3).reshape(B, 2, 8 * H, 8 * W)


def pad_to_multiple_of_8(frames: torch.Tensor) -> torch.Tensor:
    """RAFT's `InputPadder` ("sintel" mode): replicate-pad H and W up to multiples of 8, split evenly (the extra
    pixel, if any, at the bottom / right)."""
    height, width = frames.shape[-2:]
    pad_h, pad_w = (-height) % 8, (-width) % 8
    return F.pad(frames, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], mode="replicate")


def load_raft(path: str | Path) -> RAFT:
    """RAFT from `raft-things.pth` (a state dict saved from DataParallel: keys start with `module.`)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return load_exactly(RAFT(), state, path, "a RAFT (large) checkpoint")
