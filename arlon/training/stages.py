"""The training stages, what each depends on, what determines its weights, and its default recipe.

    vae ─┬─> ar_vq ──> ar
         ├─> dit_vq ─┐
         └─> backbone ┴─> injector      (the injector uses ar_vq instead when injection.condition_vq = "ar")

- "vae": the tiny video VAE (only when vae.kind = "tiny"; the paper loads Open-Sora v1.2's);
- "ar_vq" / "dit_vq": the latent VQ-VAEs at the AR ratio (r, o, o) and the coarser DiT ratio (r, 2o, 2o);
- "ar": the AR transformer over ar_vq codes;
- "backbone": the base STDiT3 (only when backbone.pretrained is unset: the tiny preset's stand-in for
  the frozen Open-Sora v1.2);
- "injector": the semantic injection modules on the frozen backbone.

Each stage writes one component, named like the stage, that `build_components` loads.
"""

from __future__ import annotations

import dataclasses
import difflib

from arlon.config import ArlonConfig
from arlon.errors import ConfigError
from arlon.training.common import TrainConfig

STAGES: tuple[str, ...] = ("vae", "ar_vq", "dit_vq", "ar", "backbone", "injector")

STAGE_DESCRIPTIONS = {
    "vae": "tiny video VAE (pixels <-> DiT latents)",
    "ar_vq": "latent VQ-VAE at the AR ratio (r, o, o)",
    "dit_vq": "latent VQ-VAE at the coarser DiT ratio (r, 2o, 2o)",
    "ar": "AR transformer over ar_vq codes",
    "backbone": "base STDiT3 (stand-in for the frozen Open-Sora v1.2)",
    "injector": "semantic injection modules on the frozen backbone",
}

# Bump a stage's version when its recipe changes what it trains, so cached checkpoints are not reused.
# injector 2: noise.strategy "uncertainty" became eq. 7 as written; an injector cached under recipe 1 with
# that name was trained with what is now "uncertainty_mean_preserving" (docs/noise-strategies.md).
RECIPE_VERSIONS = {"vae": 1, "ar_vq": 1, "dit_vq": 1, "ar": 1, "backbone": 1, "injector": 2, "latents": 1}


DEFAULT_RECIPE = "full"  # the recipe of the shipped tiny weights, and of injectors trained on demand
AR_FULL_STEPS = 2400
BACKBONE_FULL_STEPS = 3600
# 120 steps (the quick recipe's) left the condition almost unused: held-out flow loss 0.287 with it, 0.302
# without, and ARLON given the true clips' own AR codes kept 22% of the objects' motions (baseline 21%).
# 600 steps: 0.256 and 74%; 1500 steps: 0.249 and 73% (32 held-out prompts), so 600.
INJECTOR_FULL_STEPS = 600


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        close = difflib.get_close_matches(stage, STAGES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown training stage {stage!r}{hint} (choices: {', '.join(STAGES)})")
    return stage


def is_trained_here(stage: str, cfg: ArlonConfig) -> bool:
    """False for the parts the config loads from Open-Sora's released weights instead."""
    if stage == "vae":
        return cfg.vae.kind == "tiny"
    if stage == "backbone":
        return cfg.backbone.pretrained is None
    return True


def check_trained_here(stage: str, cfg: ArlonConfig) -> str:
    """`stage`, or one clear ConfigError when this config loads that stage's released weights instead."""
    if not is_trained_here(check_stage(stage), cfg):
        what = "vae.kind is not 'tiny'" if stage == "vae" else "backbone.pretrained is set"
        raise ConfigError(f"stage {stage!r} is not trained for preset {cfg.name!r}: {what}, so its weights load pretrained")
    return stage


def stages_for(cfg: ArlonConfig) -> list[str]:
    """The stages `--all` runs for this config, in dependency order."""
    return [stage for stage in STAGES if is_trained_here(stage, cfg)]


def condition_vq_stage(cfg: ArlonConfig) -> str:
    """The latent VQ-VAE whose reconstruction is the injector's training condition F (section 2.3)."""
    return "dit_vq" if cfg.injection.condition_vq == "dit" else "ar_vq"


def stage_dependencies(stage: str, cfg: ArlonConfig) -> tuple[str, ...]:
    """The stages whose checkpoints `stage` trains on (only those this config trains itself)."""
    needs = {
        "vae": (),
        "ar_vq": ("vae",),
        "dit_vq": ("vae",),
        "ar": ("ar_vq",),
        "backbone": ("vae",),
        "injector": ("backbone", condition_vq_stage(cfg)),
    }[check_stage(stage)]
    return tuple(need for need in needs if is_trained_here(need, cfg))


def stage_configs(stage: str, cfg: ArlonConfig) -> dict:
    """The sub-configs that determine a stage's weights (beyond its data and upstream checkpoints)."""
    groups = {
        "vae": ("vae", "video"),
        "ar_vq": ("ar_vq",),
        "dit_vq": ("dit_vq",),
        "ar": ("ar", "text"),
        "backbone": ("backbone", "text", "flow", "video"),
        "injector": ("injection", "noise", "flow", "text", "video"),
    }[check_stage(stage)]
    configs = {name: dataclasses.asdict(getattr(cfg, name)) for name in groups}
    for (group, name), default in FIELDS_ADDED_LATER.items():
        if group in configs and configs[group].get(name) == default:
            del configs[group][name]  # keys made before the field existed stay valid
    if "flow" in configs:
        # Sampling steps and the guidance scale only matter at inference: the "steps" ablation
        # axis must reuse the injector trained for the other settings.
        configs["flow"] = {name: configs["flow"][name] for name in TRAINING_FLOW_FIELDS}
    return configs


# Config fields added after checkpoints were cached and shipped, with their defaults: left out of a
# stage's key at the default, so that adding an option keeps every existing checkpoint's key.
FIELDS_ADDED_LATER: dict[tuple[str, str], object] = {("ar", "padded_vocab_size"): 0, ("ar", "tie_embeddings"): False}

# The FlowConfig fields that change training (the timestep distribution); the rest are sampling settings.
TRAINING_FLOW_FIELDS = ("num_timesteps", "use_timestep_transform", "transform_scale")


def default_train_config(stage: str, cfg: ArlonConfig, recipe: str = DEFAULT_RECIPE) -> TrainConfig:
    """The `recipe` ("full" or "quick") of `stage` for the preset `cfg.name` ("tiny" or "paper")."""
    check_stage(stage)
    recipes = RECIPES.get(cfg.name)
    if recipes is None:
        raise ConfigError(f"no default training recipe for preset {cfg.name!r} (known: {', '.join(RECIPES)})")
    if recipe not in recipes:
        raise ConfigError(f"preset {cfg.name!r} has no recipe {recipe!r} (choices: {', '.join(recipes)})")
    table = recipes[recipe]
    if stage not in table:
        raise ConfigError(
            f"preset {cfg.name!r} has no training recipe for stage {stage!r}: it loads Open-Sora v1.2's weights; "
            "set vae.pretrained / backbone.pretrained to them"
        )
    return table[stage]


# Tiny preset, "quick" recipe: `train --all` in under 20 minutes on two CPU cores, with two worker
# processes (per-stage wall times in each manifest), every stage on the fixed pool of 2048 clips. 1500 VAE
# steps reach 29 dB held-out PSNR on the toy world. The AR chain (vae, ar_vq, AR) is the critical path: with
# 1200 ar_vq and 1200 AR steps it took 1382 s of the 23 min 26 s the whole recipe took on world version 3
# (vae 250 s, ar_vq 482 s, ar 650 s; the backbone chain 1001 s), so both are 900 now: 18 min 21 s cold from
# a clean clone, AR held-out loss 2.37 (2.35 with 1200 steps). (ar_vq at 1200 kept colour and motion through the
# round trip in 97% of held-out videos, at 600 in 94%.)
# 800 backbone steps instead of 400: held-out flow loss 0.607 -> 0.482, and on 64 held-out prompts
# `toy_layout_iou` with the AR video 0.156 -> 0.236 (ARLON), 0.097 -> 0.155 (baseline). The DiT side
# follows Open-Sora: AdamW, grad clip 1, warmup, EMA 0.99 (Open-Sora v1.2 `scripts/train.py`), with a
# higher learning rate than Open-Sora's fine-tuning because the tiny backbone trains from scratch.
_TINY_QUICK = {
    "vae": TrainConfig(steps=1500, batch_size=8, lr=3e-3, warmup_steps=50, clip_frames=8, checkpoint_every=200),
    "ar_vq": TrainConfig(steps=900, batch_size=32, lr=1e-3, warmup_steps=30, checkpoint_every=200),
    "dit_vq": TrainConfig(steps=300, batch_size=32, lr=1e-3, warmup_steps=30, checkpoint_every=200),
    "ar": TrainConfig(steps=900, batch_size=16, lr=2e-3, warmup_steps=50, caption_dropout=0.1, checkpoint_every=200),
    "backbone": TrainConfig(steps=800, batch_size=8, lr=2e-3, warmup_steps=50, ema_decay=0.99, checkpoint_every=100),
    "injector": TrainConfig(steps=120, batch_size=8, lr=3e-3, warmup_steps=20, ema_decay=0.99, checkpoint_every=40),
}
_TINY_QUICK = {stage: dataclasses.replace(recipe, recipe="quick") for stage, recipe in _TINY_QUICK.items()}

# Tiny preset, "full" recipe: the shipped weights (arlon/weights/tiny). The AR model and the backbone
# read fresh clips (`fresh_clips`) for longer, so that more training cannot overfit a fixed pool; the
# injector trains five times longer.
# Measured wall times per stage are in the shipped manifests; the README gives the whole recipe's.
_TINY_FULL = {
    **_TINY_QUICK,
    # The shipped AR-ratio VQ-VAE: 1200 steps (the quick recipe's was the same until it was cut to 900 for time).
    "ar_vq": TrainConfig(steps=1200, batch_size=32, lr=1e-3, warmup_steps=30, checkpoint_every=200),
    "ar": TrainConfig(
        steps=AR_FULL_STEPS, batch_size=32, lr=2e-3, warmup_steps=50, caption_dropout=0.1, checkpoint_every=100,
        fresh_clips=True,
    ),
    "backbone": TrainConfig(
        steps=BACKBONE_FULL_STEPS, batch_size=8, lr=2e-3, warmup_steps=50, ema_decay=0.99, checkpoint_every=100,
        fresh_clips=True,
    ),
    "injector": TrainConfig(
        steps=INJECTOR_FULL_STEPS, batch_size=8, lr=3e-3, warmup_steps=20, ema_decay=0.99, checkpoint_every=100
    ),
}
_TINY_FULL = {stage: dataclasses.replace(recipe, recipe="full") for stage, recipe in _TINY_FULL.items()}

# Paper preset: each field from the paper where it gives one, else from the named source
# (docs/paper-preset.md, "Training recipes", has the table). The paper gives no step counts, so `steps`
# stays unset and training refuses to start until it is given. batch_size is the global batch: Table 4
# measures training with 2 clips of 68 frames at 512x512 on one GPU, so 2 here; on N GPUs pass
# train.batch_size=2N (torchrun splits it, arlon/training/distributed.py). AdamW with weight decay 0 is Adam.
_PAPER = {
    # The latent VQ-VAEs follow VideoGPT (Yan et al. 2021, section 2.1): its VQ-VAE trains with Adam at
    # 3e-4, betas (0.9, 0.999), cosine annealing to 0 and no warmup (VideoGPT `vqvae.py`,
    # `VQVAE.configure_optimizers`). Batch 8 latent clips: not given anywhere; a 31.5M-parameter VQ-VAE on
    # 512x512x68 latents (4x17x64x64) fits 8 on one GPU.
    "ar_vq": TrainConfig(batch_size=8, lr=3e-4, min_lr_ratio=0.0, warmup_steps=0),
    "dit_vq": TrainConfig(batch_size=8, lr=3e-4, min_lr_ratio=0.0, warmup_steps=0),
    # A 192M GPT-style decoder, d_model 1024 like GPT-3 Medium: lr 3e-4 (GPT-3 Medium's, Brown et al. 2020
    # Table 2.1, and VideoGPT's prior, `VideoGPT.configure_optimizers`), 2000 warmup steps and cosine decay
    # to 10% (nanoGPT's GPT-2 recipe, `train.py`), grad clip 1.0, caption dropout 0.1 for classifier-free
    # guidance (the rate Open-Sora trains its DiT's null caption with). Dropout 0.1 is the model's (section 4.1).
    "ar": TrainConfig(batch_size=2, lr=3e-4, warmup_steps=2000, min_lr_ratio=0.1, grad_clip=1.0, caption_dropout=0.1),
    # "We use the Adam optimizer with a learning rate of 2e-5 for fine-tuning" (section 4.1); a constant lr
    # after 1000 warmup steps, eps 1e-15, clipping at 1.0 and EMA 0.99 from Open-Sora v1.2's DiT training
    # (`scripts/train.py`, configs/opensora-v1-2/train/stage3.py). Uncertainty sampling p = 0.1 is noise.probability.
    "injector": TrainConfig(
        batch_size=2, lr=2e-5, min_lr_ratio=1.0, eps=1e-15, grad_clip=1.0, warmup_steps=1000, ema_decay=0.99
    ),
}
_PAPER = {stage: dataclasses.replace(recipe, recipe="full") for stage, recipe in _PAPER.items()}

# preset -> recipe name -> stage -> TrainConfig
RECIPES: dict[str, dict[str, dict[str, TrainConfig]]] = {
    "tiny": {"full": _TINY_FULL, "quick": _TINY_QUICK},
    "paper": {"full": _PAPER},
}
