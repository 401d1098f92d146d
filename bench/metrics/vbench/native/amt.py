"""AMT-S, the frame-interpolation network of VBench's motion smoothness, loading `amt-s.pth` as VBench does.

VBench vendors AMT (`vbench/third_party/amt/networks/AMT-S.py` and `networks/blocks/{feat_enc,raft,ifrnet,
multi_flow}.py`, config `cfgs/AMT-S.yaml`: correlation radius 3, 4 levels, 3 flows) and predicts the middle frame
(t = 0.5) of two frames in [0, 1]. Module names are the checkpoint's (`state_dict` entry), so the file loads as is:

- `feat_encoder`: RAFT's small encoder (bottleneck blocks, instance norm) -> 84-channel features at 1/8, whose
  all-pairs correlation (both directions) is looked up around the current flows;
- `encoder`: a 4-level pyramid (20 / 32 / 44 / 56 channels at 1/2 ... 1/16) of each frame;
- `decoder4` .. `decoder1`: coarse-to-fine decoders of the two flows (middle -> frame 0, middle -> frame 1) and a
  middle-frame feature, each refined by an `update` block from correlation; `decoder1` gives 3 flow pairs, blend
  masks and residuals, and `comb_block` merges the 3 candidate frames.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.metrics.vbench.native.checkpoints import load_exactly

CHANNELS = (20, 32, 44, 56)
SKIP, FLOWS, RADIUS, LEVELS = 20, 3, 3, 4


def resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` at each pixel + flow (bilinear, border padding), as AMT's `utils/flow_utils.py` `warp`."""
    B, _, H, W = flow.shape
    xs = torch.linspace(-1.0, 1.0, W, device=flow.device).view(1, 1, 1, W).expand(B, -1, H, -1)
    ys = torch.linspace(-1.0, 1.0, H, device=flow.device).view(1, 1, H, 1).expand(B, -1, -1, W)
    grid = torch.cat([xs, ys], 1).to(image)
    scaled = torch.cat([flow[:, :1] / ((W - 1.0) / 2.0), flow[:, 1:2] / ((H - 1.0) / 2.0)], 1)
    return F.grid_sample(image, (grid + scaled).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True)


def conv_prelu(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.PReLU(cout))


# ---------------------------------------------------------------------------------------------
# Feature encoder and bidirectional correlation (RAFT's small variants)
# ---------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes // 4, 1)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(planes // 4, planes, 1)
        self.norm1, self.norm2, self.norm3 = nn.InstanceNorm2d(planes // 4), nn.InstanceNorm2d(planes // 4), nn.InstanceNorm2d(planes)
        self.downsample = None if stride == 1 else nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride), nn.InstanceNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = F.relu(self.norm3(self.conv3(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class FeatureEncoder(nn.Module):
    """(B, 3, H, W) -> (B, 84, H/8, W/8)."""

    def __init__(self, out: int = 84):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(32)
        self.layer1 = nn.Sequential(Bottleneck(32, 32, 1), Bottleneck(32, 32, 1))
        self.layer2 = nn.Sequential(Bottleneck(32, 64, 2), Bottleneck(64, 64, 1))
        self.layer3 = nn.Sequential(Bottleneck(64, 96, 2), Bottleneck(96, 96, 1))
        self.conv2 = nn.Conv2d(96, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


def window_lookup(volumes: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
    """Each pixel's (2R+1)^2 window of its correlation map at every level, around coords (B, 2, h, w) at 1/8.
    The window's first offset moves x, the second y (RAFT's meshgrid(dy, dx) added to (x, y))."""
    B, _, h, w = coords.shape
    steps = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float32, device=coords.device)
    first, second = torch.meshgrid(steps, steps, indexing="ij")
    window = torch.stack([first, second], dim=-1).view(1, 2 * RADIUS + 1, 2 * RADIUS + 1, 2)
    centres = coords.permute(0, 2, 3, 1).reshape(B * h * w, 1, 1, 2)
    out = []
    for level, volume in enumerate(volumes):
        points = centres / 2**level + window
        H, W = volume.shape[-2:]
        grid = torch.cat([2 * points[..., :1] / (W - 1) - 1, 2 * points[..., 1:] / (H - 1) - 1], dim=-1)
        out.append(F.grid_sample(volume, grid, align_corners=True).view(B, h, w, -1))
    return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()


class BidirectionalCorrelation:
    """All-pairs correlation of frame-0 and frame-1 features, both ways, pooled into 4 levels."""

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor):
        B, C, h, w = fmap0.shape
        corr = (fmap0.flatten(2).transpose(1, 2) @ fmap1.flatten(2)).view(B, h, w, 1, h, w) / torch.sqrt(torch.tensor(float(C)))
        forward = corr.reshape(B * h * w, 1, h, w)  # per frame-0 pixel, a map over frame 1
        backward = corr.permute(0, 4, 5, 3, 1, 2).reshape(B * h * w, 1, h, w)  # per frame-1 pixel, over frame 0
        self.forward, self.backward = [forward], [backward]
        for _ in range(LEVELS - 1):
            self.forward.append(F.avg_pool2d(self.forward[-1], 2, stride=2))
            self.backward.append(F.avg_pool2d(self.backward[-1], 2, stride=2))

    def __call__(self, coords0: torch.Tensor, coords1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return window_lookup(self.forward, coords0), window_lookup(self.backward, coords1)


class UpdateBlock(nn.Module):
    """AMT's `SmallUpdateBlock`: a flow and feature update from correlation, at 1/8 (resized for finer levels)."""

    def __init__(self, cdim: int, scale: int | None = None, hidden: int = 76, flow_dim: int = 20, corr_dim: int = 64, fc_dim: int = 68):
        super().__init__()
        self.scale = scale
        planes = LEVELS * (2 * RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(2 * planes, corr_dim, 1)
        self.convf1 = nn.Conv2d(4, 2 * flow_dim, 7, padding=3)
        self.convf2 = nn.Conv2d(2 * flow_dim, flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(corr_dim + flow_dim, fc_dim, 3, padding=1)
        self.gru = nn.Sequential(nn.Conv2d(fc_dim + 4 + cdim, hidden, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, hidden, 3, padding=1))
        self.feat_head = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, cdim, 3, padding=1))
        self.flow_head = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, 4, 3, padding=1))

    def forward(self, net: torch.Tensor, flow: torch.Tensor, corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = resize(net, 1 / self.scale) if self.scale is not None else net
        cor = F.leaky_relu(self.convc1(corr), 0.1)
        flo = F.leaky_relu(self.convf2(F.leaky_relu(self.convf1(flow), 0.1)), 0.1)
        inp = torch.cat([F.leaky_relu(self.conv(torch.cat([cor, flo], dim=1)), 0.1), flow, net], dim=1)
        out = self.gru(inp)
        delta_net, delta_flow = self.feat_head(out), self.flow_head(out)
        if self.scale is not None:
            delta_net = resize(delta_net, self.scale)
            delta_flow = self.scale * resize(delta_flow, self.scale)
        return delta_net, delta_flow


# ---------------------------------------------------------------------------------------------
# IFRNet-style pyramid and decoders
# ---------------------------------------------------------------------------------------------


class SideResBlock(nn.Module):
    """IFRNet's `ResBlock`: the last `side` channels get extra convolutions between the main ones."""

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.side = side
        self.conv1, self.conv3 = conv_prelu(channels, channels), conv_prelu(channels, channels)
        self.conv2, self.conv4 = conv_prelu(side, side), conv_prelu(side, side)
        self.conv5 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.prelu = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.conv3(torch.cat([out[:, : -self.side], self.conv2(out[:, -self.side :])], 1))
        out = self.conv5(torch.cat([out[:, : -self.side], self.conv4(out[:, -self.side :])], 1))
        return self.prelu(x + out)


class Pyramid(nn.Module):
    def __init__(self):
        super().__init__()
        previous = 3
        for level, channels in enumerate(CHANNELS, 1):
            self.add_module(f"pyramid{level}", nn.Sequential(conv_prelu(previous, channels, 3, 2, 1), conv_prelu(channels, channels)))
            previous = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for level in range(1, len(CHANNELS) + 1):
            x = getattr(self, f"pyramid{level}")(x)
            levels.append(x)
        return levels  # 1/2, 1/4, 1/8, 1/16


def decoder_block(cin: int, channels: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_prelu(cin, channels), SideResBlock(channels, SKIP), nn.ConvTranspose2d(channels, cout, 4, 2, 1))


class InitDecoder(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblock = decoder_block(2 * cin + 1, 2 * cin, cout + 4)

    def forward(self, f0, f1, embt):
        out = self.convblock(torch.cat([f0, f1, embt.repeat(len(f0), 1, *f0.shape[2:])], 1))
        flow0, flow1 = torch.chunk(out[:, :4], 2, 1)
        return flow0, flow1, out[:, 4:]


class IntermediateDecoder(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblock = decoder_block(3 * cin + 4, 3 * cin, cout + 4)

    def forward(self, ft, f0, f1, flow0, flow1):
        out = self.convblock(torch.cat([ft, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        delta0, delta1 = torch.chunk(out[:, :4], 2, 1)
        return delta0 + 2.0 * resize(flow0, 2.0), delta1 + 2.0 * resize(flow1, 2.0), out[:, 4:]


class MultiFlowDecoder(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.convblock = decoder_block(3 * cin + 4, 3 * cin, 8 * FLOWS)

    def forward(self, ft, f0, f1, flow0, flow1):
        out = self.convblock(torch.cat([ft, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        delta0, delta1, mask, residual = torch.split(out, [2 * FLOWS, 2 * FLOWS, FLOWS, 3 * FLOWS], 1)
        flow0 = delta0 + 2.0 * resize(flow0, 2.0).repeat(1, FLOWS, 1, 1)
        flow1 = delta1 + 2.0 * resize(flow1, 2.0).repeat(1, FLOWS, 1, 1)
        return flow0, flow1, torch.sigmoid(mask), residual


class AMTS(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat_encoder = FeatureEncoder()
        self.encoder = Pyramid()
        self.decoder4 = InitDecoder(CHANNELS[3], CHANNELS[2])
        self.decoder3 = IntermediateDecoder(CHANNELS[2], CHANNELS[1])
        self.decoder2 = IntermediateDecoder(CHANNELS[1], CHANNELS[0])
        self.decoder1 = MultiFlowDecoder(CHANNELS[0])
        self.update4, self.update3, self.update2 = UpdateBlock(44), UpdateBlock(32, 2), UpdateBlock(20, 4)
        self.comb_block = nn.Sequential(nn.Conv2d(3 * FLOWS, 6 * FLOWS, 3, 1, 1), nn.PReLU(6 * FLOWS), nn.Conv2d(6 * FLOWS, 3, 3, 1, 1))

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: float = 0.5) -> torch.Tensor:
        """Frames (B, 3, H, W) in [0, 1], H and W multiples of 16 -> the frame at time t between them, in [0, 1]."""
        mean = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)  # (B, 1, 1, 1)
        img0, img1 = img0 - mean, img1 - mean
        B, _, H, W = img0.shape
        embt = torch.full((1, 1, 1, 1), t, device=img0.device)
        coord = pixel_grid(B, H // 8, W // 8, img0.device)
        fmap0, fmap1 = self.feat_encoder(torch.cat([img0, img1])).chunk(2)
        correlation = BidirectionalCorrelation(fmap0, fmap1)
        f0, f1 = self.encoder(img0), self.encoder(img1)

        def lookup(flow0, flow1, downsample):  # AMT's `_corr_scale_lookup`: flows brought to 1/8 first
            if downsample != 1:
                flow0, flow1 = resize(flow0, 1 / downsample) / downsample, resize(flow1, 1 / downsample) / downsample
            corr0, corr1 = correlation(coord + flow1 * (1.0 / embt), coord + flow0 * (1.0 / (1.0 - embt)))
            return torch.cat([corr0, corr1], 1), torch.cat([flow0, flow1], 1)

        flow0, flow1, ft = self.decoder4(f0[3], f1[3], embt)  # flows at 1/8
        for update, decoder, downsample, level in ((self.update4, self.decoder3, 1, 2), (self.update3, self.decoder2, 2, 1),
                                                   (self.update2, None, 4, 0)):
            corr, flows = lookup(flow0, flow1, downsample)
            delta_ft, delta_flow = update(ft, flows, corr)
            delta0, delta1 = torch.chunk(delta_flow, 2, 1)
            flow0, flow1, ft = flow0 + delta0, flow1 + delta1, ft + delta_ft
            if decoder is not None:
                flow0, flow1, ft = decoder(ft, f0[level], f1[level], flow0, flow1)
        flow0, flow1, mask, residual = self.decoder1(ft, f0[0], f1[0], flow0, flow1)  # full resolution, 3 flows each
        return combine(self.comb_block, img0, img1, flow0, flow1, mask, residual, mean).clamp(0, 1)


def combine(comb_block: nn.Module, img0, img1, flow0, flow1, mask, residual, mean) -> torch.Tensor:
    """AMT's `multi_flow_combine`: warp both frames by each of the 3 flow pairs, blend by mask, add the residual
    and the mean back; the frame is the average of the 3 candidates plus `comb_block` of them all."""
    B, _, H, W = flow0.shape
    n = FLOWS
    candidates = (
        mask.reshape(B * n, 1, H, W) * warp(img0.repeat_interleave(n, 0), flow0.reshape(B * n, 2, H, W))
        + (1 - mask.reshape(B * n, 1, H, W)) * warp(img1.repeat_interleave(n, 0), flow1.reshape(B * n, 2, H, W))
        + mean.repeat_interleave(n, 0) + residual.reshape(B * n, 3, H, W)
    ).reshape(B, n, 3, H, W)
    return candidates.mean(1) + comb_block(candidates.view(B, -1, H, W))


def pixel_grid(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].repeat(batch, 1, 1, 1)


def pad_to_multiple_of_16(frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """AMT's `InputPadder` (divisor 16): replicate padding split evenly; returns (padded, (left, right, top, bottom))."""
    height, width = frames.shape[-2:]
    pad_h, pad_w = (-height) % 16, (-width) % 16
    pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    return F.pad(frames, list(pads), mode="replicate"), pads


def load_amt_s(path: str | Path) -> AMTS:
    """AMT-S from `amt-s.pth` (weights under "state_dict")."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not an AMT checkpoint (no 'state_dict' entry)")
    return load_exactly(AMTS(), checkpoint["state_dict"], path, "an AMT-S checkpoint")
