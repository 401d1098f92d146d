"""Trained checkpoints cached by what determines them, so every command reuses them instead of retraining.

A stage's cache key is the hash of: the stage name and recipe version, the sub-configs that shape it
(`stage_configs`), its TrainConfig, the data it reads (clip spec, or the latent pool's spec), and the
weight hashes of the upstream checkpoints it trains on. Change any of them and the key changes; keep
them and `ensure_trained` returns the cached checkpoint after training 0 steps.

Layout under the cache root (env ARLON_CACHE_DIR, else ~/.cache/arlon-bench):

    stages/<stage>/<key>/<stage>.safetensors + <stage>.json     the component and its manifest
    stages/<stage>/<key>/resume/state-<step>.*                   resumable state while it trains
    latents/<key>/latents.safetensors + pool.json                 clips encoded by the video VAE
    checkpoints/<preset>-<key>/                                  one directory per config holding every
                                                                 component, for build_components

A stage whose key matches a checkpoint shipped in the package (`arlon/weights/`) is taken from there.

The manifest (written last, so its presence marks a complete checkpoint) records the component's
config, the training config, the step, the data spec and seed, the metrics, the upstream hashes and
the weights' own hash. An interrupted stage resumes from its newest state when run again.

The cache heals: a cached checkpoint or latent pool that cannot be read (a truncated file, a manifest
that is not JSON, weights whose hash is not the manifest's) is moved aside as `<name>.corrupt-<time>`,
named in one warning, and computed again. A damaged shipped checkpoint is not the cache's to replace:
it is one CorruptFileError naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from arlon.checkpoints.io import (
    atomic_write_json,
    check_output_dir,
    ensure_dir,
    load_component,
    load_safetensors,
    read_component,
    read_json,
    save_component,
    save_safetensors,
    set_aside,
    tensors_sha256,
)
from arlon.config import ArlonConfig
from arlon.errors import ConfigError, CorruptFileError
from arlon.models.ar_transformer import ARTransformer
from arlon.models.latent_vq import LatentVQVAE
from arlon.models.stdit3 import STDiT3
from arlon.models.text_encoders import TextEncoder, build_text_encoder
from arlon.models.video_vae import OpenSoraVAE, build_video_vae
from arlon.training.ar import train_ar
from arlon.training.backbone import train_backbone
from arlon.training.common import Checkpointer, RunContext, StageOutput, TrainConfig, TrainProgress, seeded
from arlon.training.distributed import SINGLE, Distributed, device_for
from arlon.training.shards import (
    SHARD_SIZE,
    PreparedShards,
    ShardedLatents,
    as_json,
    frame_buckets,
    prepare_shards,
    read_index,
    shards_spec,
)
from arlon.training.data import (
    STREAM_CLIPS,
    ClipPool,
    ClipSource,
    DataConfig,
    Stream,
    StreamedLatents,
    ToyWorldClips,
    TrainingData,
    build_clip_source,
    encode_pool,
    is_prepared,
    length_source,
)
from arlon.training.injection import train_injector
from arlon.training.stages import (
    RECIPE_VERSIONS,
    check_trained_here,
    condition_vq_stage,
    default_train_config,
    is_trained_here,
    stage_configs,
    stage_dependencies,
    stages_for,
)
from arlon.training.vae import train_vae
from arlon.training.vq import train_latent_vq
from arlon.weights import bundled_stage, variant_dir

ENCODE_BATCH = 16
# What every cached manifest holds and the code reads; one without them is damaged.
MANIFEST_FIELDS = ("key", "sha256", "metrics", "step")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $ARLON_CACHE_DIR, else ~/.cache/arlon-bench."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("ARLON_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "arlon-bench"


def hash_json(blob: object) -> str:
    text = json.dumps(blob, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_dict_sha256(module: nn.Module) -> str:
    """Hash of every entry of the module's state_dict (names, dtypes, shapes and bytes)."""
    return tensors_sha256(module.state_dict())


def train_key_fields(train: TrainConfig, data: DataConfig) -> dict:
    """The TrainConfig fields that change the weights. How often states are saved does not, nor how each
    step's global batch is cut into micro-batches (to rounding: arlon/global_batch.py), nor whether the
    backbone's activations are recomputed. `num_clips` counts unless it names the data's own size
    (`stage_clip_count`), which keeps the keys made before the field existed."""
    fields = dataclasses.asdict(train)
    fields.pop("checkpoint_every")
    fields.pop("micro_batch_size")
    fields.pop("activation_checkpointing")
    if stage_clip_count(train, data) is None:
        fields.pop("num_clips")
    return fields


def stage_clip_count(train: TrainConfig, data: DataConfig) -> int | None:
    """The training clips a stage reads when its recipe asks for another number than the data's own
    (`train.num_clips`); None when it reads data.num_train_clips (num_clips 0 or equal to it)."""
    return train.num_clips if train.num_clips not in (0, data.num_train_clips) else None


@dataclasses.dataclass
class TrainedStage:
    stage: str
    key: str
    directory: Path  # holds <stage>.safetensors and <stage>.json
    manifest: dict
    steps_run: int  # optimiser steps run now (0 when the checkpoint came from the cache)
    cached: bool  # True when found complete in the cache

    @property
    def metrics(self) -> dict[str, float]:
        return self.manifest["metrics"]


class TrainingSession:
    """Trains, or finds in the cache, the stages of one config; each stage at most once per session.

    `train` maps stage names to TrainConfigs that replace the preset's recipe (`default_train_config`).
    Upstream stages are ensured first, so `ensure("injector")` trains whatever it needs.
    `use_shipped=False` ignores the package's shipped checkpoints (`arlon/weights/`), so that every
    stage missing from the cache trains here: how the shipped weights are re-created and checked.
    Under torchrun (`dist`), every rank makes the same calls; only rank 0 writes to the cache.
    `random_init=True` builds the released parts (Open-Sora's VAE, STDiT3) with seeded random weights.
    """

    def __init__(
        self,
        cfg: ArlonConfig,
        *,
        data: DataConfig = DataConfig(),
        train: Mapping[str, TrainConfig] | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        progress: TrainProgress | None = None,
        use_shipped: bool = True,
        dist: Distributed = SINGLE,
        random_init: bool = False,
    ):
        self.cfg = cfg.validate()
        # Released weights (Open-Sora's VAE and STDiT3) replaced by seeded random ones: smoke runs of the
        # paper preset's training path without them. Part of every key, so nothing trained on random
        # weights is ever found by a run on the real ones.
        self.random_init = random_init
        self.dist = dist  # under torchrun: every rank trains, rank 0 writes (arlon/training/distributed.py)
        self.use_shipped = use_shipped
        self.data = data
        self.train_overrides = dict(train or {})
        self.root = check_output_dir(cache_root(cache_dir), "the training cache (ARLON_CACHE_DIR)")
        self.device = device_for(dist, torch.device(device) if device is not None else None)
        self.progress = progress
        self._text_encoder: TextEncoder | None = None
        self.trained: dict[str, TrainedStage] = {}
        self._clips: dict[object, ClipSource] = {}  # (split, size), or "stream"
        self._pools: dict[tuple[str, int | None], ClipPool] = {}
        self._runners: dict[str, Callable[[TrainConfig, RunContext], StageOutput]] = {
            "vae": self._run_vae,
            "ar_vq": self._run_ar_vq,
            "dit_vq": self._run_dit_vq,
            "ar": self._run_ar,
            "backbone": self._run_backbone,
            "injector": self._run_injector,
        }

    # -- public ---------------------------------------------------------------------------------

    def train_config(self, stage: str) -> TrainConfig:
        return self.train_overrides.get(stage) or default_train_config(stage, self.cfg)

    def ensure(self, stage: str) -> TrainedStage:
        """The checkpoint of `stage` for this config: from the cache, or trained now (resuming if interrupted)."""
        check_trained_here(stage, self.cfg)
        if stage in self.trained:
            return self.trained[stage]
        upstream = {need: self.ensure(need) for need in self.dependencies(stage)}
        train = self.train_config(stage).validate(stage)
        key = self.stage_key(stage, train, upstream)
        directory = self.root / "stages" / stage / key
        manifest = self._cached_manifest(stage, key, directory)
        if manifest is None and self.use_shipped:
            shipped = bundled_stage(self.cfg.name, stage, key)
            if shipped is not None:
                directory, manifest = shipped  # the package's own checkpoint of exactly this stage
        if manifest is not None:
            if self.progress is not None:
                self.progress(stage, train.steps, train.steps, manifest["metrics"].get("loss_final"))
            done = TrainedStage(stage, key, directory, manifest, steps_run=0, cached=True)
        else:
            done = self._train(stage, train, key, directory, upstream)
        self.trained[stage] = done
        return done

    def dependencies(self, stage: str) -> tuple[str, ...]:
        """`stage_dependencies`, less the video VAE when the data is prepared shards: the VAE that encoded
        them is named by the shards' own spec (part of every key), and nothing reads pixels any more."""
        needs = stage_dependencies(stage, self.cfg)
        return tuple(need for need in needs if need != "vae") if self.shards_folder is not None else needs

    def _cached_manifest(self, stage: str, key: str, directory: Path) -> dict | None:
        """The manifest of the complete, intact checkpoint of `stage` in the cache folder `directory`,
        else None; a damaged one is moved aside (one warning) so that the stage trains again."""
        files = [directory / f"{stage}.json", directory / f"{stage}.safetensors"]
        if not files[0].is_file():
            return None
        try:
            if not files[1].is_file():
                raise CorruptFileError(f"{files[1]}: missing beside its manifest")
            manifest, _ = read_component(directory, stage, hint="")  # the warning says what happens next
            missing = [name for name in MANIFEST_FIELDS if name not in manifest]
            if missing or manifest["key"] != key:
                problem = f"lacks {', '.join(missing)}" if missing else f"records key {manifest['key']!r}, not {key!r}"
                raise CorruptFileError(f"{files[0]}: not this stage's manifest (it {problem})")
        except CorruptFileError as err:
            set_aside(files, str(err), f"training {stage} again")
            return None
        return manifest

    def stage_key(self, stage: str, train: TrainConfig, upstream: Mapping[str, TrainedStage]) -> str:
        """Hash of everything that determines the stage's weights (see the module docstring)."""
        blob = {
            "stage": stage,
            "recipe": RECIPE_VERSIONS[stage],
            "configs": stage_configs(stage, self.cfg),
            "train": train_key_fields(train, self.data),
            "data": self.data_spec(stage, train),
            "upstream": {name: done.manifest["sha256"] for name, done in upstream.items()},
        }
        if self.random_init:
            blob["random_init"] = True
        return hash_json(blob)

    def ensure_all(self) -> list[TrainedStage]:
        return [self.ensure(stage) for stage in stages_for(self.cfg)]

    def checkpoint_dir(self, out: str | os.PathLike | None = None) -> Path:
        """A directory holding every trained component of this config, for `build_components(checkpoint_dir=...)`.

        Trains what is missing. Files are hard links into the cache where possible (copies otherwise).
        """
        done = self.ensure_all()
        if out is None:
            out = self.root / "checkpoints" / f"{self.cfg.name}-{hash_json([d.key for d in done])}"
        out = ensure_dir(out)
        for stage in done:
            for suffix in (".safetensors", ".json"):
                link_or_copy(stage.directory / f"{stage.stage}{suffix}", out / f"{stage.stage}{suffix}")
        return out

    def gather_variant(self, stage: str, root: str | os.PathLike) -> Path:
        """Put this config's checkpoint of `stage` under `root/variants/` (`arlon.weights.variant_dir`):
        how a directory of one config's components also holds the stage for another config."""
        done = self.ensure(stage)
        out = ensure_dir(variant_dir(Path(root), stage, done.key))
        for suffix in (".safetensors", ".json"):
            link_or_copy(done.directory / f"{stage}{suffix}", out / f"{stage}{suffix}")
        return out

    @property
    def text_encoder(self) -> TextEncoder:
        """Built on first use: the stages before the AR model never need T5."""
        if self._text_encoder is None:
            self._text_encoder = build_text_encoder(self.cfg.text).to(self.device).eval()
        return self._text_encoder

    # -- data -----------------------------------------------------------------------------------

    @property
    def shards_folder(self) -> Path | None:
        """The prepared folder `data.source` names (arlon/training/shards.py), else None."""
        return Path(self.data.source) if is_prepared(self.data.source) else None

    def frame_buckets(self, min_frames: int, max_frames: int) -> tuple[int, ...]:
        """The clip lengths in [min_frames, max_frames] whose latents both VQ-VAEs split (`frame_buckets`)."""
        cfg = self.cfg
        with torch.device("meta"):
            vae = build_video_vae(cfg.vae)
        multiple = math.lcm(cfg.ar_vq.compression[0], cfg.dit_vq.compression[0])
        return frame_buckets(lambda n: vae.latent_size(n, cfg.video.height, cfg.video.width)[0], multiple, min_frames, max_frames)

    def prepare_shards(
        self,
        out: str | os.PathLike,
        *,
        min_frames: int,
        max_frames: int,
        shard_size: int = SHARD_SIZE,
        dtype: torch.dtype = torch.float32,
        num_clips: int | None = None,
    ) -> PreparedShards:
        """Encode the training clips of `data` into shards under `out`, at every length bucket in
        [min_frames, max_frames], and the held-out clips at video.num_frames (`prepare_shards`).
        `num_clips`: how many training clips (default: every training row of a CSV; the toy world's
        data.num_train_clips).
        Train on them with DataConfig(source=out). Resumable; under torchrun the ranks share the shards."""
        out = check_output_dir(out, "--out")
        buckets = self.frame_buckets(min_frames, max_frames)
        vae = self.load("vae").to(self.device).eval()
        source = length_source(self.data, self.cfg.video, buckets, num_clips)
        spec = {"clips": source.spec, "vae": self.vae_identity(), "seed": self.data.seed}

        def report(task: str, done: int, total: int) -> None:
            if self.progress is not None:
                self.progress(task, done, total, None)

        prepared = prepare_shards(
            source, vae.encode, out, buckets, spec, shard_size=shard_size, dtype=dtype, device=self.device,
            ranks=self.dist, progress=report,
        )
        heldout = self.pool("heldout")
        if self.dist.is_main:
            save_safetensors({"latents": heldout.x.contiguous()}, out / "heldout" / "latents.safetensors")
            atomic_write_json(out / "heldout" / "pool.json", {"captions": heldout.captions, "spec": heldout.spec})
        self.dist.barrier()
        return prepared

    def clips(self, split: str, size: int | None = None) -> ClipSource:
        """The `split` clips of the data; `size` training clips instead of data.num_train_clips (`train_size`)."""
        if (split, size) not in self._clips:
            data = dataclasses.replace(self.data, num_train_clips=size) if size else self.data
            self._clips[(split, size)] = build_clip_source(data, self.cfg.video, split)
        return self._clips[(split, size)]

    def train_size(self, train: TrainConfig) -> int | None:
        """The training clips a stage reads when its recipe says how many (`stage_clip_count`), else None."""
        return stage_clip_count(train, self.data)

    def data_spec(self, stage: str, train: TrainConfig) -> dict:
        """What a stage reads: pixel clips for the VAE, the latent pool, a fresh clip stream or prepared shards for the others."""
        if self.shards_folder is not None:
            if stage == "vae":
                raise ConfigError(f"--data {self.data.source}: prepared shards hold latents; the video VAE trains on a CSV of videos")
            return {"shards": shards_spec(read_index(self.shards_folder)), "seed": self.data.seed}
        if stage == "vae":
            return {"clips": self.clips("train", self.train_size(train)).spec, "seed": self.data.seed}
        if self.streams(train):
            return {**self.pool_spec("train"), "clips": self.stream_source().spec, "stream": True}
        return self.pool_spec("train", self.train_size(train))

    def streams(self, train: TrainConfig) -> bool:
        """Whether a stage reads fresh clips: `train.fresh_clips` on the toy world, which has as many as a run
        reads. A CSV of videos holds a fixed set of clips, which the stage reads as its latent pool."""
        return train.fresh_clips and self.data.source == "toyworld"

    def stream_source(self) -> ClipSource:
        """The clips of streaming stages: the toy world's training split, as long as any run reads."""
        if "stream" not in self._clips:
            self._clips["stream"] = ToyWorldClips(self.cfg.video, self.data.seed, "train", STREAM_CLIPS)
        return self._clips["stream"]

    def vae_identity(self) -> dict:
        if self.shards_folder is not None and is_trained_here("vae", self.cfg):
            # A VAE trained here is known by its weights, which the shards' index recorded when prepare
            # encoded them (its training clips are not at hand: the data is the prepared folder).
            return read_index(self.shards_folder)["spec"]["vae"]
        if is_trained_here("vae", self.cfg):
            return {"sha256": self.ensure("vae").manifest["sha256"]}
        identity = {"config": dataclasses.asdict(self.cfg.vae)}
        return {**identity, "random_init": True} if self.random_init else identity

    def pool_spec(self, split: str, size: int | None = None) -> dict:
        return {
            "version": RECIPE_VERSIONS["latents"],
            "clips": self.clips(split, size).spec,
            "seed": self.data.seed,
            "vae": self.vae_identity(),
        }

    def sharded(self, train: TrainConfig) -> ShardedLatents:
        """The stream of the prepared folder, for this rank; refused when another VAE encoded it."""
        stream = ShardedLatents(self.shards_folder, train.batch_size, train.seed, self.dist.rank, self.dist.world_size)
        if stream.index["spec"].get("vae") != as_json(self.vae_identity()):
            raise ConfigError(
                f"--data {self.data.source}: these shards were encoded by another video VAE than this config's; "
                "prepare them again with this preset"
            )
        return stream

    def pool(self, split: str, size: int | None = None) -> ClipPool:
        """The latents of the `split` clips (`size` training clips: `clips`), encoded once by the video VAE
        and cached on disk (the held-out clips of a prepared folder are read from it)."""
        if (split, size) in self._pools:
            return self._pools[(split, size)]
        if self.shards_folder is not None:
            if split != "heldout":
                raise ConfigError(f"--data {self.data.source}: prepared shards stream their training clips; no stage holds them as a pool")
            pool = self._cached_pool(self.shards_folder / "heldout")
            if pool is None:
                raise ConfigError(f"{self.shards_folder / 'heldout'}: no held-out clips; run prepare again")
            self._pools[(split, size)] = pool
            return pool
        spec = self.pool_spec(split, size)
        directory = self.root / "latents" / hash_json(spec)
        pool = self._cached_pool(directory) if self.dist.is_main else None
        if not self.dist.is_main:
            self.dist.barrier()  # rank 0 finds or encodes the pool
            pool = self._cached_pool(directory)
            if pool is None:
                raise CorruptFileError(f"{directory}: rank 0 wrote no readable latent pool there")
        elif pool is None:
            vae = self.load("vae").to(self.device).eval()

            def report(done: int, total: int) -> None:
                if self.progress is not None:
                    self.progress(f"latents ({split})", done, total, None)

            pool = encode_pool(vae.encode, self.clips(split, size), ENCODE_BATCH, self.device, spec, report)
            save_safetensors({"latents": pool.x.contiguous()}, directory / "latents.safetensors")
            # pool.json last: its presence marks a complete pool.
            atomic_write_json(directory / "pool.json", {"captions": pool.captions, "spec": spec})
        if self.dist.is_main:
            self.dist.barrier()
        self._pools[(split, size)] = pool
        return pool

    @staticmethod
    def _cached_pool(directory: Path) -> ClipPool | None:
        """The complete, intact latent pool in `directory`, else None; a damaged one is moved aside (one warning)."""
        files = [directory / "pool.json", directory / "latents.safetensors"]
        if not files[0].is_file():
            return None
        try:
            meta = read_json(files[0])
            if not isinstance(meta, dict) or not isinstance(meta.get("captions"), list) or "spec" not in meta:
                raise CorruptFileError(f"{files[0]}: not a latent pool's description (expected captions and spec)")
            latents = load_safetensors(files[1]).get("latents") if files[1].is_file() else None
            if latents is None or latents.shape[0] != len(meta["captions"]):
                found = "no latents" if latents is None else f"{latents.shape[0]} latents"
                raise CorruptFileError(f"{files[1]}: {found} for {len(meta['captions'])} captions")
        except CorruptFileError as err:
            set_aside(files, str(err), "encoding the clips again")
            return None
        return ClipPool(latents, meta["captions"], meta["spec"])

    def pool_data(self, train: TrainConfig) -> Stream:
        """The batches a stage after the VAE reads: the latent pool, fresh clips (`train.fresh_clips`) or prepared shards."""
        if self.shards_folder is not None:
            return self.sharded(train)
        if self.streams(train):
            vae = self.load("vae").to(self.device).eval()
            # Each seed reads its own stretch of the stream.
            offset = train.seed * (STREAM_CLIPS >> 8)
            return StreamedLatents(
                self.stream_source(), vae.encode, train.batch_size, self.device, offset, self.dist.rank, self.dist.world_size
            )
        return TrainingData(
            self.pool("train", self.train_size(train)), train.batch_size, train.seed, self.dist.rank, self.dist.world_size
        )

    # -- components -----------------------------------------------------------------------------

    def load(self, stage: str) -> nn.Module:
        """A fresh copy of a component this session depends on (trained here, or Open-Sora's released weights)."""
        cfg = self.cfg
        if stage in ("vae", "backbone") and not is_trained_here(stage, cfg) and self.random_init:
            with seeded(0, torch.device("cpu")):
                return (build_video_vae(cfg.vae) if stage == "vae" else STDiT3(cfg.backbone)).eval()
        if stage == "vae" and not is_trained_here("vae", cfg):
            return OpenSoraVAE.from_pretrained(cfg.vae)
        if stage == "backbone" and not is_trained_here("backbone", cfg):
            return STDiT3.from_pretrained(cfg.backbone)
        builders: dict[str, Callable[[], nn.Module]] = {
            "vae": lambda: build_video_vae(cfg.vae),
            "ar_vq": lambda: LatentVQVAE(cfg.ar_vq),
            "dit_vq": lambda: LatentVQVAE(cfg.dit_vq),
            "ar": lambda: ARTransformer(cfg.ar, cfg.ar_frame_grid),
            "backbone": lambda: STDiT3(cfg.backbone),
        }
        module = builders[stage]()
        load_component(self.ensure(stage).directory, stage, module)
        return module.eval()

    # -- training -------------------------------------------------------------------------------

    def _train(
        self, stage: str, train: TrainConfig, key: str, directory: Path, upstream: dict[str, TrainedStage]
    ) -> TrainedStage:
        self.dist.check_stage(stage)
        checkpointer = Checkpointer(directory / "resume")
        run = RunContext(self.device, checkpointer, self.progress if self.dist.is_main else None, self.dist)
        started = time.perf_counter()
        output = self._runners[stage](train, run)
        manifest = {
            "component": stage,
            "stage": stage,
            "key": key,
            "recipe_version": RECIPE_VERSIONS[stage],
            "preset": self.cfg.name,
            "config": stage_configs(stage, self.cfg),
            "train": dataclasses.asdict(train),
            "step": len(output.result.losses),
            "data": self.data_spec(stage, train),
            "data_seed": self.data.seed,
            "metrics": output.metrics,
            "upstream": {name: done.manifest["sha256"] for name, done in upstream.items()},
            "sha256": state_dict_sha256(output.module),
            "weights": "ema" if train.ema_decay > 0 else "final",
            "device": str(self.device),
            "world_size": self.dist.world_size,
            **({"random_init": True} if self.random_init else {}),
            "wall_s": round(time.perf_counter() - started, 2),
            "torch": torch.__version__,
            **output.record,
        }
        if self.dist.is_main:
            save_component(directory, stage, output.module, manifest)
            checkpointer.clear()
        self.dist.barrier()
        return TrainedStage(stage, key, directory, manifest, steps_run=output.result.steps_run, cached=False)

    def _run_vae(self, train: TrainConfig, run: RunContext) -> StageOutput:
        data = TrainingData(self.clips("train", self.train_size(train)), train.batch_size, train.seed)
        return train_vae(self.cfg.vae, data, self.clips("heldout"), train, run)

    def _run_ar_vq(self, train: TrainConfig, run: RunContext) -> StageOutput:
        return train_latent_vq("ar_vq", self.cfg.ar_vq, self.pool_data(train), self.pool("heldout"), train, run)

    def _run_dit_vq(self, train: TrainConfig, run: RunContext) -> StageOutput:
        return train_latent_vq("dit_vq", self.cfg.dit_vq, self.pool_data(train), self.pool("heldout"), train, run)

    def _run_ar(self, train: TrainConfig, run: RunContext) -> StageOutput:
        ar_vq = self.load("ar_vq").to(self.device)
        cfg = self.cfg
        return train_ar(
            cfg.ar, self.text_encoder, ar_vq, self.pool_data(train), self.pool("heldout"), train, run, cfg.ar_frame_grid,
            self.longest_code_grid(),
        )

    def longest_code_grid(self) -> tuple[int, int, int] | None:
        """The AR code grid of the longest clips of a prepared folder (None for fixed-length data)."""
        if self.shards_folder is None:
            return None
        cfg = self.cfg
        longest = max(read_index(self.shards_folder)["spec"]["buckets"])
        with torch.device("meta"):
            T, H, W = build_video_vae(cfg.vae).latent_size(longest, cfg.video.height, cfg.video.width)
        r, o_h, o_w = cfg.ar_vq.compression
        return T // r, H // o_h, W // o_w

    def _run_backbone(self, train: TrainConfig, run: RunContext) -> StageOutput:
        cfg = self.cfg
        return train_backbone(
            cfg.backbone, cfg.flow, cfg.video, self.text_encoder, self.pool_data(train), self.pool("heldout"), train, run
        )

    def _run_injector(self, train: TrainConfig, run: RunContext) -> StageOutput:
        cfg = self.cfg
        backbone = self.load("backbone")
        condition_vq = self.load(condition_vq_stage(cfg)).to(self.device)
        return train_injector(
            cfg.injection, cfg.noise, cfg.flow, cfg.video, backbone, condition_vq, self.text_encoder,
            self.pool_data(train), self.pool("heldout"), train, run,
        )


def ensure_trained(
    stage: str,
    cfg: ArlonConfig,
    *,
    data: DataConfig = DataConfig(),
    train: Mapping[str, TrainConfig] | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: TrainProgress | None = None,
) -> TrainedStage:
    """The checkpoint of `stage` for `cfg`, trained (with its dependencies) only if not cached yet."""
    session = TrainingSession(cfg, data=data, train=train, cache_dir=cache_dir, device=device, progress=progress)
    return session.ensure(stage)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (replacing it); copy when the file system cannot link."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)

