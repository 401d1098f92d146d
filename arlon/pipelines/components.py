"""Building every ARLON component from an `ArlonConfig` and loading its weights.

Where weights come from:
- Open-Sora v1.2's VAE and STDiT3 (`vae.kind == "opensora_v1_2"`, the paper preset) load from
  `vae.pretrained` / `backbone.pretrained` (a local path or a Hugging Face id in the local cache).
- T5 loads from `text.pretrained`; the tiny preset's `hashed_words` encoder has no weights.
- Our own components (latent VQ-VAEs, AR transformer, injector, and for the tiny preset also its
  VAE and base backbone) load from a checkpoint directory written by `arlon.checkpoints.io`;
  without one, the tiny preset loads the checkpoints shipped in the package (`arlon/weights/`).
  A manifest trained for another config (say `first:14` when `last:14` is asked) is refused.

Nothing falls back to random weights silently: `random_init=True` must be asked for (tests,
speed and memory benchmarks), and a missing checkpoint otherwise raises `MissingWeightsError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from arlon.checkpoints.io import REDO_HINT, check_checkpoint_dir, load_component, read_manifest
from arlon.checkpoints.opensora import (
    STDIT3_DOWNLOAD_HINT,
    STDIT3_FILENAMES,
    VAE_DOWNLOAD_HINT,
    VAE_FILENAMES,
    resolve_weights_source,
)
from arlon.config import ArlonConfig
from arlon.errors import CheckpointMismatchError, CorruptFileError, MissingWeightsError
from arlon.injection.adapters import SemanticInjector
from arlon.models.ar_transformer import ARTransformer
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.text_encoders import TextEncoder, build_text_encoder, resolve_t5_path
from arlon.models.video_vae import OpenSoraVAE, VideoVAE, build_video_vae
from arlon.rectified_flow import RectifiedFlow
from arlon.training.stages import stage_configs
from arlon.weights import DAMAGED_HINT, bundled_checkpoint_dir

# Components trained by this project, saved as <name>.safetensors in a checkpoint directory.
TRAINED_COMPONENTS = ("vae", "backbone", "ar_vq", "dit_vq", "ar", "injector")
ARLON_ONLY_COMPONENTS = ("ar_vq", "dit_vq", "ar", "injector")


@dataclass
class ArlonComponents:
    """Every module of one ARLON model. The backbone is frozen; the injector is ARLON's trainable DiT part.

    The AR-side modules (`ar_vq`, `dit_vq`, `ar`, `injector`) are None when the components were built
    for the baseline only.
    """

    config: ArlonConfig
    text_encoder: TextEncoder
    vae: VideoVAE
    backbone: STDiT3
    flow: RectifiedFlow
    ar_vq: LatentVQVAE | None = None  # AR ratio (r, o, o): tokenises for the AR model, decodes its codes
    dit_vq: LatentVQVAE | None = None  # coarser ratio (r, 2o, 2o): makes the training condition F (section 2.3)
    ar: ARTransformer | None = None
    injector: SemanticInjector | None = None
    # (t, h, w) AR code grid the AR model was trained on (its manifest's `trained_grid`; the config's
    # clip grid for untrained weights): long videos sample in windows of at most t code frames
    ar_trained_grid: tuple[int, int, int] | None = None

    def modules(self) -> dict[str, torch.nn.Module]:
        names = ("text_encoder", "vae", "backbone", "ar_vq", "dit_vq", "ar", "injector")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "ArlonComponents":
        for name, module in self.modules().items():
            # The text encoder and the VAE stay in fp32, as Open-Sora runs T5 and its VAE decode in
            # full precision here; the transformers and VQ-VAEs follow the requested dtype.
            keep_fp32 = name in ("text_encoder", "vae")
            module.to(device=device, dtype=None if keep_fp32 else dtype)
        return self

    def eval(self) -> "ArlonComponents":
        for module in self.modules().values():
            module.eval()
        return self

    @property
    def has_arlon(self) -> bool:
        return self.ar is not None

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
    baseline_only: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> ArlonComponents:
    """Build the components of `cfg` and load their weights (see the module docstring).

    `baseline_only` builds what Open-Sora-style generation needs (text encoder, VAE, backbone) and
    skips the AR model, the latent VQ-VAEs and the injector.
    """
    cfg.validate()
    ours = [name for name in TRAINED_COMPONENTS if not (baseline_only and name in ARLON_ONLY_COMPONENTS)]
    if cfg.vae.kind == "opensora_v1_2":
        ours.remove("vae")
    if cfg.backbone.pretrained is not None:
        ours.remove("backbone")
    if checkpoint_dir is not None and not random_init:
        checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    if not random_init and checkpoint_dir is None:
        checkpoint_dir = bundled_checkpoint_dir(cfg.name)  # the tiny preset's shipped weights
    if not random_init and ours and checkpoint_dir is None:
        raise MissingWeightsError(
            f"preset {cfg.name!r} needs trained checkpoints for {', '.join(ours)}: pass --checkpoint DIR "
            "(a directory written by `arlon-bench train`), or --random-init to run with untrained weights"
        )

    # 1. The frozen parts: text encoder, video VAE, backbone. The injector is built after the
    #    backbone is loaded, because ControlNet fusion starts from copies of its blocks.
    text_encoder = build_text_encoder(cfg.text)
    if random_init:
        vae, backbone = build_video_vae(cfg.vae), STDiT3(cfg.backbone)
    else:
        vae = OpenSoraVAE.from_pretrained(cfg.vae) if cfg.vae.kind == "opensora_v1_2" else build_video_vae(cfg.vae)
        backbone = STDiT3.from_pretrained(cfg.backbone) if cfg.backbone.pretrained else STDiT3(cfg.backbone)
        for name, module in (("vae", vae), ("backbone", backbone)):
            if name in ours:
                load_checked(checkpoint_dir, name, module, cfg)
    backbone.requires_grad_(False)
    components = ArlonComponents(config=cfg, text_encoder=text_encoder, vae=vae, backbone=backbone, flow=RectifiedFlow(cfg.flow))

    # 2. ARLON's own components.
    if not baseline_only:
        components.ar_vq = LatentVQVAE(cfg.ar_vq)
        components.dit_vq = LatentVQVAE(cfg.dit_vq)
        components.ar = ARTransformer(cfg.ar, cfg.ar_frame_grid)
        components.injector = SemanticInjector(cfg.injection, cfg.noise, backbone)
        if random_init:
            components.ar_trained_grid = clip_code_grid(cfg, vae)
        else:
            for name in ARLON_ONLY_COMPONENTS:
                manifest = load_checked(checkpoint_dir, name, getattr(components, name), cfg)
                if name == "ar" and manifest.get("trained_grid") is not None:
                    components.ar_trained_grid = tuple(int(n) for n in manifest["trained_grid"])
    return components.to(device, dtype).eval()


def clip_code_grid(cfg: ArlonConfig, vae: VideoVAE) -> tuple[int, int, int]:
    """(t, h, w) AR code grid of one clip of `cfg.video`: what the AR model trains on."""
    video = cfg.video
    T, _, _ = vae.latent_size(video.num_frames, video.height, video.width)
    return (T // cfg.ar_vq.compression[0], *cfg.ar_frame_grid)


def missing_pretrained(cfg: ArlonConfig) -> list[str]:
    """The released weights `cfg` loads that this machine lacks, one phrase each naming the setting and
    what it points at ([] when everything is there): Open-Sora v1.2's VAE and STDiT3, T5. Reads only
    the file system and the local Hugging Face cache; loads nothing."""
    missing = []
    sources = []
    if cfg.vae.kind == "opensora_v1_2":
        sources.append(("vae.pretrained", cfg.vae.pretrained, VAE_FILENAMES, VAE_DOWNLOAD_HINT))
    if cfg.backbone.pretrained is not None:
        sources.append(("backbone.pretrained", cfg.backbone.pretrained, STDIT3_FILENAMES, STDIT3_DOWNLOAD_HINT))
    for setting, source, filenames, hint in sources:
        if source is None:
            missing.append(f"{setting} (not set)")
            continue
        try:
            resolve_weights_source(source, filenames, download_hint=hint)
        except (MissingWeightsError, CorruptFileError):
            missing.append(f"{setting} {source!r}")
    if cfg.text.kind == "t5":
        try:
            resolve_t5_path(cfg.text.pretrained)
        except MissingWeightsError:
            missing.append("text.pretrained (not set)" if cfg.text.pretrained is None else f"text.pretrained {cfg.text.pretrained!r}")
    return missing


# Sub-configs a checkpoint may differ in: the video size and rate only say what it was trained on
# (the tiny VAE is trained on 8-frame crops and decodes any length).
UNCHECKED_CONFIGS = ("video",)


def load_checked(checkpoint_dir: str | Path, name: str, module: torch.nn.Module, cfg: ArlonConfig) -> dict:
    """Load a component and check that its manifest was trained for this config.

    Shapes alone cannot tell an injector trained for `first:14` from one trained for `last:14`, or
    one trained with Gaussian noise from one without: the manifest's config (written by
    `arlon-bench train`) must match the requested one wherever it determines the weights.
    """
    shipped = Path(checkpoint_dir) == bundled_checkpoint_dir(cfg.name)
    hint = DAMAGED_HINT if shipped else REDO_HINT
    manifest_path = Path(checkpoint_dir) / f"{name}.json"
    trained_for = read_manifest(checkpoint_dir, name, hint).get("config") if manifest_path.is_file() else None
    if isinstance(trained_for, dict):  # checked first: it names the setting, where shapes only show the symptom
        _check_trained_for(checkpoint_dir, name, trained_for, cfg)
    return load_component(checkpoint_dir, name, module, hint)


def _check_trained_for(checkpoint_dir: str | Path, name: str, trained_for: dict, cfg: ArlonConfig) -> None:
    wanted = stage_configs(name, cfg)
    differences = [
        f"{group}.{field}={trained_for[group].get(field)!r} (config: {value!r})"
        for group in wanted
        if group not in UNCHECKED_CONFIGS and group in trained_for
        for field, value in wanted[group].items()
        if _json_value(trained_for[group].get(field)) != _json_value(value)
    ]
    if differences:
        shown = "; ".join(differences[:4]) + (f" (+{len(differences) - 4} more)" if len(differences) > 4 else "")
        raise CheckpointMismatchError(
            f"{Path(checkpoint_dir) / name}.safetensors was trained for {shown}; train the components of this config "
            "with `arlon-bench train --all --out DIR` and the same --set options, then pass --checkpoint DIR"
        )


def _json_value(value: object) -> object:
    """Compare as the manifest stores it (tuples become lists in JSON)."""
    return json.loads(json.dumps(value, default=list))
