"""Typed configuration of every ARLON component, and of the whole model.

Each component takes only its own config (`STDiT3(cfg: BackboneConfig)`); nothing below
`arlon/pipelines/` sees the whole `ArlonConfig`. Configs are frozen dataclasses: a variant is
`dataclasses.replace` of a preset (see `arlon/presets.py`). Every ablation axis is one field holding
a registry key, checked in `ArlonConfig.validate()`.

Paper section numbers refer to the ARLON paper; Open-Sora v1.2 files are those of docs/opensora-v1.2-notes.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from arlon.errors import ConfigError


@dataclass(frozen=True)
class VideoConfig:
    """The pixel videos the model is trained on and generates."""

    num_frames: int = 68  # paper Table 4: 68-frame 512x512 videos
    height: int = 512
    width: int = 512
    fps: int = 24


@dataclass(frozen=True)
class VAEConfig:
    """Video VAE: pixels (B, 3, T, H, W) in [-1, 1] <-> latent (B, C, T', H', W').

    `kind` is a key of `arlon.models.video_vae.VIDEO_VAES`: "opensora_v1_2" is Open-Sora v1.2's
    VideoAutoencoderPipeline (SDXL 2D VAE + causal temporal VAE, `opensora/models/vae/vae.py`), "tiny" is the
    small trainable VAE of the tiny preset.
    """

    kind: str = "opensora_v1_2"
    latent_channels: int = 4
    # Open-Sora v1.2 pipeline (the widths are configurable only so tests can build small copies).
    spatial_channels: tuple[int, ...] = (128, 256, 512, 512)  # SDXL AutoencoderKL block_out_channels
    spatial_norm_groups: int = 32
    spatial_layers_per_block: int = 2
    temporal_filters: int = 128  # VAE_Temporal_SD
    temporal_norm_groups: int = 32
    micro_frame_size: int = 17  # pixel frames per temporal chunk -> 5 latent frames
    micro_batch_size: int = 4  # frames per 2D micro-batch
    pretrained: str | None = None  # local dir / file, or a Hugging Face id found in the local cache
    # tiny VAE
    tiny_channels: tuple[int, ...] = (32, 64)
    spatial_compression: int = 8  # pixels per latent pixel along H and W
    temporal_compression: int = 4  # pixel frames per latent frame (Open-Sora: 17 -> 5, about 4)
    kl_weight: float = 1e-4  # tiny VAE training: weight of the per-element KL term in TinyVAE.loss


@dataclass(frozen=True)
class LatentVQConfig:
    """Latent VQ-VAE nested inside the video VAE (paper section 2.1, VideoGPT-style).

    Compresses the DiT latent (C, T, H, W) by (r, o, o) into indices Q of shape (T/r, H/o, W/o)
    over a codebook of K entries of dimension m.
    """

    compression: tuple[int, int, int] = (4, 8, 8)  # (r, o, o), section 4.1
    codebook_size: int = 2048  # K
    code_dim: int = 256  # m
    in_channels: int = 4  # DiT latent channels
    hidden_channels: int = 256  # width of the 3D CNN
    num_res_blocks: int = 2  # residual attention blocks at the bottleneck
    num_heads: int = 4  # attention heads in those blocks
    commitment_weight: float = 0.25  # beta of the commitment loss
    ema_decay: float = 0.99  # EMA codebook updates
    dead_code_threshold: float = 1.0  # codes whose EMA usage falls below this are restarted
    # Encode and decode each token frame (r latent frames) on its own, so that a token frame's codes depend
    # only on its own frames (VideoGPT's encoder, and so the paper's, sees the whole clip: False)
    frame_local: bool = False

    @property
    def ratio_label(self) -> str:
        r, o1, o2 = self.compression
        return f"{r}x{o1}x{o2}"


@dataclass(frozen=True)
class TextEncoderConfig:
    """Text encoder feeding both the AR transformer and the DiT cross-attention.

    `kind` is a key of `arlon.models.text_encoders.TEXT_ENCODERS`: "t5" (transformers
    T5EncoderModel from a local path, the paper's DeepFloyd/t5-v1_1-xxl) or "hashed_words" (a
    weight-free encoder for the tiny preset: fixed pseudo-random embeddings of hashed words).
    """

    kind: str = "t5"
    pretrained: str | None = None  # local path of the T5 checkpoint (or an id in the HF cache)
    max_length: int = 300  # tokens, Open-Sora's model_max_length
    dim: int = 4096  # output width (T5-XXL d_model)


@dataclass(frozen=True)
class ARConfig:
    """Causal AR transformer over visual tokens (paper section 2.1, eq. 1; sizes from 4.1)."""

    n_layer: int = 12
    n_head: int = 16
    n_embd: int = 1024
    n_ffn: int = 4096
    dropout: float = 0.1
    codebook_size: int = 2048  # K visual tokens; <FRAME> = K, <EOS> = K + 1
    text_dim: int = 4096  # width of the text encoder output, projected to n_embd
    max_text_tokens: int = 300
    max_video_tokens: int = 4096  # longest visual sequence (and size of the "learned" position table)
    # key of arlon.models.ar_transformer.AR_POSITIONS: "learned" (one table over the flat visual
    # sequence) or "factorised_rope" (per-axis t/h/w embeddings plus 3D rotary attention on the code
    # grid of one AR frame, `ArlonConfig.ar_frame_grid`)
    position: str = "learned"
    rope_base: float = 100.0  # rotary frequencies base^(-2i/d) per axis; the grids are short (<= 64)
    # Rows of the token embedding (0 = exactly the K codes + <FRAME> + <EOS>). A language-model-sized
    # vocabulary of which only those K + 2 rows are ever fed or sampled: how the paper preset reaches
    # Table 4's 192M (docs/paper-preset.md, "AR size").
    padded_vocab_size: int = 0
    tie_embeddings: bool = False  # the output head reuses the token embedding (GPT-2's weight tying)

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding and logits of the head: the K codes, <FRAME>, <EOS> and any padding."""
        return max(self.codebook_size + 2, self.padded_vocab_size)


@dataclass(frozen=True)
class ARSamplingConfig:
    """How AR codes are sampled at inference."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float = 1.0  # 1.0 disables classifier-free guidance


@dataclass(frozen=True)
class BackboneConfig:
    """STDiT3 (Open-Sora v1.2 `opensora/models/stdit/stdit3.py`). Defaults are STDiT3-XL/2."""

    hidden_size: int = 1152
    depth: int = 28  # block pairs (spatial + temporal); the layer axis counts these
    num_heads: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_channels: int = 4
    mlp_ratio: float = 4.0
    caption_channels: int = 4096
    model_max_length: int = 300
    class_dropout_prob: float = 0.1
    pred_sigma: bool = True
    qk_norm: bool = True
    input_sq_size: int = 512
    pretrained: str | None = None  # local path to hpcai-tech/OpenSora-STDiT-v3 (or an id in the HF cache)

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.pred_sigma else self.in_channels

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class InjectionConfig:
    """Semantic injection of the AR condition F into the frozen backbone (paper section 2.2)."""

    fusion: str = "adaptive_norm"  # key of arlon.injection.fusion.FUSIONS
    layers: str = "first:14"  # "first:N", "last:N" or "i,j,k": block-pair indices
    adapter_mlp_ratio: float = 0.5  # hidden width of each residual adapter MLP, eq. 4
    condition_vq: str = "dit"  # which latent VQ-VAE makes F during training: "dit" (coarse) or "ar"


@dataclass(frozen=True)
class NoiseConfig:
    """Noise-resilient training of the injector (paper section 2.3, eq. 7)."""

    # key of arlon.injection.noise.NOISE_STRATEGIES: "none", "gaussian", "uncertainty" (eq. 7 as written)
    # or "uncertainty_mean_preserving" (the reading that keeps the feature's scale; docs/noise-strategies.md)
    strategy: str = "uncertainty"
    probability: float = 0.1  # per adapter block, training only (section 4.1)
    # std of the additive noise of "gaussian": the paper gives none; 0.1 is ours, about a tenth of the
    # condition's spread (it decodes DiT latents normalised to about unit variance)
    gaussian_scale: float = 0.1
    # lambda, multiplying the spreads of both uncertainty strategies' draws. "uncertainty": sigma_hat ~
    # N(1, lambda * sigma), mu_hat ~ N(mu, lambda * sigma); "uncertainty_mean_preserving": s ~ N(1, lambda)
    # scales sigma, mu_hat ~ N(mu, lambda * sigma). Eq. 7 has no such factor: 1.0 is eq. 7 itself.
    uncertainty_scale: float = 1.0


@dataclass(frozen=True)
class FlowConfig:
    """Rectified flow, Open-Sora v1.2's objective and sampler (`opensora/schedulers/rf/`)."""

    num_timesteps: int = 1000
    use_timestep_transform: bool = True
    transform_scale: float = 1.0
    num_sampling_steps: int = 30
    cfg_scale: float = 7.0


@dataclass(frozen=True)
class ArlonConfig:
    """The whole model: one sub-config per component."""

    name: str = "paper"
    video: VideoConfig = field(default_factory=VideoConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    ar_vq: LatentVQConfig = field(default_factory=LatentVQConfig)  # AR ratio (r, o, o)
    dit_vq: LatentVQConfig = field(default_factory=lambda: LatentVQConfig(compression=(4, 16, 16)))  # (r, 2o, 2o)
    ar: ARConfig = field(default_factory=ARConfig)
    ar_sampling: ARSamplingConfig = field(default_factory=ARSamplingConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    injection: InjectionConfig = field(default_factory=InjectionConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)

    def validate(self) -> "ArlonConfig":
        """Check cross-field rules and registry keys; raise ConfigError naming the field."""
        # Imported here because the registries live in the modules that define their choices,
        # and those modules import this one.
        from arlon.injection.fusion import FUSIONS
        from arlon.injection.noise import NOISE_STRATEGIES
        from arlon.injection.placement import parse_layers
        from arlon.models.ar_transformer import AR_POSITIONS
        from arlon.models.text_encoders import TEXT_ENCODERS
        from arlon.models.video_vae import VIDEO_VAES

        for path, registry in (
            ("vae.kind", VIDEO_VAES),
            ("text.kind", TEXT_ENCODERS),
            ("injection.fusion", FUSIONS),
            ("noise.strategy", NOISE_STRATEGIES),
            ("ar.position", AR_POSITIONS),
        ):
            value = get_field(self, path)
            if value not in registry:
                raise ConfigError(f"{path}: {registry.unknown_key_message(value)}")
        if self.injection.condition_vq not in ("dit", "ar"):
            raise ConfigError(f"injection.condition_vq: must be 'dit' or 'ar', got {self.injection.condition_vq!r}")
        check_ranges(self)  # first: the rules below divide by some of these fields
        parse_layers(self.injection.layers, self.backbone.depth)  # raises ConfigError

        bb = self.backbone
        if bb.hidden_size % bb.num_heads or bb.head_dim % 2 or bb.hidden_size % 4:
            raise ConfigError(
                f"backbone: hidden_size {bb.hidden_size} must be divisible by num_heads ({bb.num_heads}) and by 4, "
                "and the head dim must be even (RoPE)"
            )
        if bb.in_channels != self.vae.latent_channels:
            raise ConfigError(
                f"backbone.in_channels ({bb.in_channels}) must equal vae.latent_channels ({self.vae.latent_channels})"
            )
        if 0 < self.ar.padded_vocab_size < self.ar.codebook_size + 2:
            raise ConfigError(
                f"ar.padded_vocab_size ({self.ar.padded_vocab_size}) must be 0 or at least ar.codebook_size + 2 "
                f"({self.ar.codebook_size + 2}: the codes, <FRAME> and <EOS>)"
            )
        if self.ar.codebook_size != self.ar_vq.codebook_size:
            raise ConfigError(
                f"ar.codebook_size ({self.ar.codebook_size}) must equal ar_vq.codebook_size ({self.ar_vq.codebook_size})"
            )
        if self.text.dim != self.ar.text_dim or self.text.dim != bb.caption_channels:
            raise ConfigError(
                f"text.dim ({self.text.dim}) must equal ar.text_dim ({self.ar.text_dim}) "
                f"and backbone.caption_channels ({bb.caption_channels})"
            )
        if self.text.max_length > bb.model_max_length:
            raise ConfigError(
                f"text.max_length ({self.text.max_length}) exceeds backbone.model_max_length ({bb.model_max_length})"
            )
        for name in ("ar_vq", "dit_vq"):
            vq: LatentVQConfig = getattr(self, name)
            if vq.in_channels != self.vae.latent_channels:
                raise ConfigError(f"{name}.in_channels ({vq.in_channels}) must equal vae.latent_channels")
        return self

    @property
    def ar_frame_grid(self) -> tuple[int, int]:
        """(h, w): the AR codes of one frame, video size / vae.spatial_compression / ar_vq.compression."""
        return (
            self.video.height // self.vae.spatial_compression // self.ar_vq.compression[1],
            self.video.width // self.vae.spatial_compression // self.ar_vq.compression[2],
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ArlonConfig":
        return _from_dict(cls, data, "")

    def hash(self) -> str:
        """Stable short hash of the full configuration (cells and caches are keyed by it)."""
        return config_hash(self)


# ----------------------------------------------------------------------------------------------
# Numeric ranges
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The values a numeric field accepts: low <= value <= high (strict where `*_open`), finite.
    A tuple field applies it to each element; an optional field (None) is always accepted."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
PROBABILITY = Range(0, 1)
DECAY = Range(0, 1, high_open=True)  # an average that must still move: 1 would freeze it


def check_range(name: str, value: object, allowed: Range) -> None:
    """ConfigError naming `name` unless `value` (a number, a tuple of numbers, or None) is in `allowed`."""
    for item in value if isinstance(value, tuple) else (value,):
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not allowed.contains(item):
            raise ConfigError(f"{name} = {value!r} is out of range: it must be {allowed}")


# The range of every numeric field of the model configs (tests/arlon/test_config.py checks that no
# field is missing). `ArlonConfig.validate` checks them all; grid files check each value on its line.
FIELD_RANGES: dict[type, dict[str, Range]] = {
    VideoConfig: {"num_frames": AT_LEAST_ONE, "height": AT_LEAST_ONE, "width": AT_LEAST_ONE, "fps": AT_LEAST_ONE},
    VAEConfig: {
        "latent_channels": AT_LEAST_ONE, "spatial_channels": AT_LEAST_ONE, "spatial_norm_groups": AT_LEAST_ONE,
        "spatial_layers_per_block": AT_LEAST_ONE, "temporal_filters": AT_LEAST_ONE, "temporal_norm_groups": AT_LEAST_ONE,
        "micro_frame_size": AT_LEAST_ONE, "micro_batch_size": AT_LEAST_ONE, "tiny_channels": AT_LEAST_ONE,
        "spatial_compression": AT_LEAST_ONE, "temporal_compression": AT_LEAST_ONE, "kl_weight": NON_NEGATIVE,
    },
    TextEncoderConfig: {"max_length": AT_LEAST_ONE, "dim": AT_LEAST_ONE},
    LatentVQConfig: {
        "compression": AT_LEAST_ONE, "codebook_size": AT_LEAST_ONE, "code_dim": AT_LEAST_ONE, "in_channels": AT_LEAST_ONE,
        "hidden_channels": AT_LEAST_ONE, "num_res_blocks": NON_NEGATIVE, "num_heads": AT_LEAST_ONE,
        "commitment_weight": NON_NEGATIVE, "ema_decay": DECAY, "dead_code_threshold": NON_NEGATIVE,
    },
    ARConfig: {
        "n_layer": AT_LEAST_ONE, "n_head": AT_LEAST_ONE, "n_embd": AT_LEAST_ONE, "n_ffn": AT_LEAST_ONE,
        "dropout": DECAY, "codebook_size": AT_LEAST_ONE, "text_dim": AT_LEAST_ONE, "max_text_tokens": AT_LEAST_ONE,
        "max_video_tokens": AT_LEAST_ONE, "rope_base": Range(1, low_open=True), "padded_vocab_size": NON_NEGATIVE,
    },
    ARSamplingConfig: {"temperature": POSITIVE, "top_k": AT_LEAST_ONE, "top_p": Range(0, 1, low_open=True), "cfg_scale": NON_NEGATIVE},
    BackboneConfig: {
        "hidden_size": AT_LEAST_ONE, "depth": AT_LEAST_ONE, "num_heads": AT_LEAST_ONE, "patch_size": AT_LEAST_ONE,
        "in_channels": AT_LEAST_ONE, "mlp_ratio": POSITIVE, "caption_channels": AT_LEAST_ONE,
        "model_max_length": AT_LEAST_ONE, "class_dropout_prob": PROBABILITY, "input_sq_size": AT_LEAST_ONE,
    },
    InjectionConfig: {"adapter_mlp_ratio": POSITIVE},
    NoiseConfig: {"probability": PROBABILITY, "gaussian_scale": NON_NEGATIVE, "uncertainty_scale": NON_NEGATIVE},
    FlowConfig: {"num_timesteps": AT_LEAST_ONE, "transform_scale": POSITIVE, "num_sampling_steps": AT_LEAST_ONE, "cfg_scale": NON_NEGATIVE},
}


def field_range(config, path: str) -> Range | None:
    """The range of the numeric field at the dotted `path` of `config` (None for other fields)."""
    *groups, name = path.split(".")
    owner = get_field(config, ".".join(groups)) if groups else config
    return FIELD_RANGES.get(type(owner), {}).get(name)


def check_ranges(config, prefix: str = "") -> None:
    """Raise ConfigError for the first numeric field of `config` (and its sub-configs) out of range."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
        elif f.name in FIELD_RANGES.get(type(config), {}):
            check_range(f"{prefix}{f.name}", value, FIELD_RANGES[type(config)][f.name])


def config_hash(config) -> str:
    blob = json.dumps(dataclasses.asdict(config), sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def get_field(config, path: str):
    """`get_field(cfg, "injection.layers")` -> the value at a dotted path."""
    value = config
    for part in path.split("."):
        if not dataclasses.is_dataclass(value) or not hasattr(value, part):
            raise ConfigError(f"unknown config field {path!r}")
        value = getattr(value, part)
    return value


def replace_field(config, path: str, value):
    """Return a copy of `config` with the dotted `path` set to `value` (no type coercion)."""
    head, _, rest = path.partition(".")
    if not dataclasses.is_dataclass(config) or head not in {f.name for f in dataclasses.fields(config)}:
        raise ConfigError(f"unknown config field {path!r}")
    if rest:
        return dataclasses.replace(config, **{head: replace_field(getattr(config, head), rest, value)})
    return dataclasses.replace(config, **{head: value})


def _from_dict(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{prefix or 'config'}: unknown field(s) {sorted(unknown)} (known: {sorted(known)})")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = _from_dict(type(current), value, f"{prefix}{name}.")
        elif isinstance(current, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
