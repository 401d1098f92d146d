"""Building every ARLON component from an `ArlonConfig` and loading its weights.

Where weights come from:
- Open-Sora v1.2's VAE and STDiT3 (`vae.kind == "opensora_v1_2"`, the paper preset) load from
  `vae.pretrained` / `backbone.pretrained` (a local path or a Hugging Face id in the local cache).
- T5 loads from `text.pretrained`; the tiny preset's `hashed_words` encoder has no weights.
- Our own components (latent VQ-VAEs, AR transformer, injector, and for the tiny preset also its
  VAE and base backbone) load from a checkpoint directory written by `arlon.checkpoints.io`.

Nothing falls back to random weights silently: `random_init=True` must be asked for (tests,
speed and memory benchmarks), and a missing checkpoint otherwise raises `MissingWeightsError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from arlon.checkpoints.io import load_component
from arlon.config import ArlonConfig
from arlon.errors import MissingWeightsError
from arlon.injection.adapters import SemanticInjector
from arlon.models.ar_transformer import ARTransformer
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.text_encoders import TextEncoder, build_text_encoder
from arlon.models.video_vae import OpenSoraVAE, VideoVAE, build_video_vae
from arlon.rectified_flow import RectifiedFlow

# Components trained by this project, saved as <name>.safetensors in a checkpoint directory.
TRAINED_COMPONENTS = ("vae", "ar_vq", "dit_vq", "ar", "backbone", "injector")


@dataclass
class ArlonComponents:
    """Every module of one ARLON model. The backbone is frozen; only the injector is ARLON's DiT part."""

    config: ArlonConfig
    text_encoder: TextEncoder
    vae: VideoVAE
    ar_vq: LatentVQVAE  # AR ratio (r, o, o): tokenises for the AR model, decodes its codes at inference
    dit_vq: LatentVQVAE  # coarser ratio (r, 2o, 2o): makes the training condition F (section 2.3)
    ar: ARTransformer
    backbone: STDiT3
    injector: SemanticInjector
    flow: RectifiedFlow

    def modules(self) -> dict[str, torch.nn.Module]:
        return {
            "text_encoder": self.text_encoder,
            "vae": self.vae,
            "ar_vq": self.ar_vq,
            "dit_vq": self.dit_vq,
            "ar": self.ar,
            "backbone": self.backbone,
            "injector": self.injector,
        }

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ArlonComponents":
        for name, module in self.modules().items():
            # The text encoder and the VAE stay in fp32, as Open-Sora runs T5 (and we run the tiny
            # encoders) in full precision; the transformers follow the requested dtype.
            keep_fp32 = name in ("text_encoder", "vae")
            module.to(device=device, dtype=None if keep_fp32 else dtype)
        return self

    def eval(self) -> "ArlonComponents":
        for module in self.modules().values():
            module.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype


def build_components(
    cfg: ArlonConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    random_init: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ArlonComponents:
    """Build all components of `cfg` and load their weights (see the module docstring)."""
    cfg.validate()
    text_encoder = build_text_encoder(cfg.text)
    vae = build_video_vae(cfg.vae)
    backbone = STDiT3(cfg.backbone)
    components = ArlonComponents(
        config=cfg,
        text_encoder=text_encoder,
        vae=vae,
        ar_vq=LatentVQVAE(cfg.ar_vq),
        dit_vq=LatentVQVAE(cfg.dit_vq),
        ar=ARTransformer(cfg.ar),
        backbone=backbone,
        injector=SemanticInjector(cfg.injection, cfg.noise, backbone),
        flow=RectifiedFlow(cfg.flow),
    )
    if not random_init:
        load_weights(components, checkpoint_dir)
    for p in components.backbone.parameters():
        p.requires_grad_(False)
    return components.to(device, dtype).eval()


def load_weights(components: ArlonComponents, checkpoint_dir: str | Path | None) -> None:
    """Load Open-Sora's pretrained parts from their configured paths and ours from `checkpoint_dir`."""
    cfg = components.config
    ours = list(TRAINED_COMPONENTS)
    if isinstance(components.vae, OpenSoraVAE):
        components.vae.load_pretrained(cfg.vae.pretrained)
        ours.remove("vae")
    if cfg.backbone.pretrained is not None:
        components.backbone.load_pretrained(cfg.backbone.pretrained)
        ours.remove("backbone")
    if checkpoint_dir is None:
        raise MissingWeightsError(
            f"preset {cfg.name!r} needs trained checkpoints for {', '.join(ours)}: pass --checkpoint DIR "
            "(a directory written by `arlon-bench train`), or --random-init to run with untrained weights"
        )
    for name in ours:
        load_component(checkpoint_dir, name, getattr(components, name))
