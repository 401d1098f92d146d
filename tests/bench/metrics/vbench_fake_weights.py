"""Random-initialised checkpoints with the exact architectures and key layouts VBench 0.1.5 loads,
for the end-to-end test of the official backend. Runs INSIDE the VBench environment (it builds the
models with VBench's own vendored code, openai-clip, pyiqa and timm):

    <env>/bin/python vbench_fake_weights.py VBENCH_CACHE TORCH_HOME

Every large tensor is a view over one small random buffer (same shape, overlapping strides), so the
files stay a few MB while the models load strictly and give finite scores that differ per video.
Norm weights sit near 1 and BatchNorm variances are positive, so activations neither vanish nor
blow up. Written files (the same paths `bench.metrics.vbench.dimensions` lists):

    VBENCH_CACHE/clip_model/ViT-B-32.pt, ViT-L-14.pt             TorchScript archives (traced openai-clip CLIP)
    VBENCH_CACHE/aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth?raw=true   (0.1.5's wget name)
    VBENCH_CACHE/pyiqa_model/musiq_spaq_ckpt-358bb6af.pth         MUSIQ state dict
    VBENCH_CACHE/amt_model/amt-s.pth                              {"state_dict": AMT-S}
    VBENCH_CACHE/raft_model/models/raft-things.pth                RAFT with "module." keys
    VBENCH_CACHE/ViCLIP/ViClip-InternVid-10M-FLT.pth              {"model": ViCLIP}
    VBENCH_CACHE/dino_model/facebookresearch_dino_main/hubconf.py a hub entry dino_vitb16 (timm ViT-B/16, DINO keys)
    TORCH_HOME/hub/checkpoints/dino_vitbase16_pretrain.pth        its weights, read through torch hub's cache
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

import math

BUFFER_SIZE = 1 << 18  # float32 values per shared buffer (1 MiB)
GENERATOR = torch.Generator().manual_seed(0)
_NORMAL = torch.randn(BUFFER_SIZE, generator=GENERATOR)
_BUFFERS: dict[tuple[float, float, bool], torch.Tensor] = {}


def buffer(scale: float, shift: float, absolute: bool = False) -> torch.Tensor:
    """One shared buffer per (scale, shift): every tensor drawn from it is a view, so a file stores
    each buffer once whatever the number and size of its tensors."""
    key = (scale, shift, absolute)
    if key not in _BUFFERS:
        values = _NORMAL.abs() if absolute else _NORMAL
        _BUFFERS[key] = values * scale + shift
    return _BUFFERS[key]


HUBCONF = '''"""Test hub entry with DINO's dino_vitb16 name and key layout (a timm ViT-B/16)."""
import torch

dependencies = ["torch", "timm"]
URL = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"


def dino_vitb16(pretrained=True, **kwargs):
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(patch_size=16, embed_dim=768, depth=12, num_heads=12, qkv_bias=True, num_classes=0,
                              dynamic_img_size=True)
    if pretrained:
        model.load_state_dict(torch.hub.load_state_dict_from_url(URL, map_location="cpu"), strict=True)
    return model
'''


def strided_view(shape: tuple[int, ...], source: torch.Tensor) -> torch.Tensor:
    """A view of `source` with `shape`: contiguous when it fits, else with overlapping strides."""
    numel = math.prod(shape)
    offset = int(torch.randint(0, BUFFER_SIZE // 2, (1,), generator=GENERATOR))
    base = source[offset:]
    if numel <= base.numel():
        return base[:numel].view(shape)
    strides, reach = [0] * len(shape), 0
    for dim in reversed(range(len(shape))):
        room = (base.numel() - 1 - reach) // max(shape[dim] - 1, 1)
        contiguous = 1 if dim == len(shape) - 1 else strides[dim + 1] * shape[dim + 1]
        strides[dim] = max(1, min(contiguous, room - dim))  # minus dim: rows start at different phases
        reach += (shape[dim] - 1) * strides[dim]
    return base.as_strided(shape, strides)


def fake_tensor(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if not tensor.is_floating_point():
        return tensor.detach().clone()
    leaf = name.rsplit(".", 1)[-1]
    shape = tuple(tensor.shape)
    if tensor.dim() == 0:
        value = float(tensor.detach())
        return torch.tensor(value if value != 0 else 0.01)
    if leaf == "running_var":
        return strided_view(shape, buffer(0.1, 1.0, absolute=True))
    if leaf == "running_mean" or "bias" in leaf:
        return strided_view(shape, buffer(0.02, 0.0))
    if tensor.dim() == 1:  # norm scales (and the odd 1-D parameter)
        return strided_view(shape, buffer(0.05, 1.0))
    fan_in = max(1, tensor[0].numel())
    scale = 2.0 ** round(math.log2(min(0.05, fan_in ** -0.5)))  # a few shared scales, not one per tensor
    return strided_view(shape, buffer(scale, 0.0))


def fake_state_dict(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {prefix + name: fake_tensor(name, t) for name, t in module.state_dict().items()}


def replace_parameters(module: nn.Module) -> None:
    """Swap every parameter and floating buffer for its strided view, in place (for tracing)."""
    for full_name, _ in list(module.named_parameters()) + list(module.named_buffers()):
        owner_name, _, leaf = full_name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        current = getattr(owner, leaf)
        if not current.is_floating_point():
            continue
        fake = fake_tensor(full_name, current)
        if isinstance(current, nn.Parameter):
            setattr(owner, leaf, nn.Parameter(fake, requires_grad=False))
        else:
            owner.register_buffer(leaf, fake)


def save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def clip_archive(path: Path, vision_layers: int, vision_width: int, patch: int, embed_dim: int, text_width: int,
                 text_heads: int) -> None:
    import clip

    model = clip.model.CLIP(embed_dim, 224, vision_layers, vision_width, patch, 77, 49408, text_width, text_heads, 12)
    replace_parameters(model)
    model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, (torch.zeros(1, 3, 224, 224), clip.tokenize(["a test"])), check_trace=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))


def main(vbench_cache: Path, torch_home: Path) -> None:
    clip_archive(vbench_cache / "clip_model" / "ViT-B-32.pt", 12, 768, 32, 512, 512, 8)
    clip_archive(vbench_cache / "clip_model" / "ViT-L-14.pt", 24, 1024, 14, 768, 768, 12)
    save(fake_state_dict(nn.Linear(768, 1)),
         vbench_cache / "aesthetic_model" / "emb_reader" / "sa_0_4_vit_l_14_linear.pth?raw=true")

    from pyiqa.archs.musiq_arch import MUSIQ

    save(fake_state_dict(MUSIQ(pretrained=False)), vbench_cache / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth")

    import vbench
    from omegaconf import OmegaConf
    from vbench.third_party.amt.utils.build_utils import build_from_cfg

    config = Path(vbench.__file__).parent / "third_party" / "amt" / "cfgs" / "AMT-S.yaml"
    save({"state_dict": fake_state_dict(build_from_cfg(OmegaConf.load(config).network))},
         vbench_cache / "amt_model" / "amt-s.pth")

    from easydict import EasyDict
    from vbench.third_party.RAFT.core.raft import RAFT

    raft = RAFT(EasyDict({"small": False, "mixed_precision": False, "alternate_corr": False}))
    save(fake_state_dict(raft, prefix="module."), vbench_cache / "raft_model" / "models" / "raft-things.pth")

    from vbench.third_party.ViCLIP.simple_tokenizer import SimpleTokenizer
    from vbench.third_party.ViCLIP.viclip import ViCLIP

    viclip = ViCLIP(tokenizer=SimpleTokenizer(str(vbench_cache / "ViCLIP" / "bpe_simple_vocab_16e6.txt.gz")), pretrain=None)
    save({"model": fake_state_dict(viclip)}, vbench_cache / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth")

    hub = vbench_cache / "dino_model" / "facebookresearch_dino_main"
    hub.mkdir(parents=True, exist_ok=True)
    (hub / "hubconf.py").write_text(HUBCONF)
    namespace: dict = {}
    exec(HUBCONF, namespace)
    save(fake_state_dict(namespace["dino_vitb16"](pretrained=False)),
         torch_home / "hub" / "checkpoints" / "dino_vitbase16_pretrain.pth")


if __name__ == "__main__":
    cache, home = Path(sys.argv[1]), Path(sys.argv[2])
    # ViCLIP's tokenizer module fetches its vocabulary at import time unless the VBench cache has it.
    import os
    import shutil

    os.environ["VBENCH_CACHE_DIR"] = str(cache)
    import clip

    vocab = cache / "ViCLIP" / "bpe_simple_vocab_16e6.txt.gz"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz"), vocab)
    main(cache, home)
