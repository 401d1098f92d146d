"""The work units of a grid run and the functions that carry them out. Every executor (in-process,
Ray) runs these same functions, so they write the same files to the same store.

- `TrainUnit`: one training stage (or the latent pools, "latents") for the cells that share it;
  `needs` lists the units that must finish first. Cells that differ only in sampling settings (the
  steps axis) or not at all in a stage share that stage's unit.
- `GenerateUnit`: one video, (cell, prompt, sample index). Its seed depends only on (prompt id,
  sample index, base seed) (`seed_for`), never on the worker or the order, and every video comes
  from its own pipeline call, so any executor with any number of workers makes the same videos.
- `ScoreUnit`: one (video, metric). A score is keyed by the video's content hash, the metric's
  name, backend and version (and the reference video's hash when the metric reads it), so a score
  is reused exactly when it would come out the same. Scoring looks in the per-video score cache
  shared by all runs first (`bench.metrics.cache`), then hands the rest of a job to the metric's
  backend (`bench.metrics.backends`: in-process functions, or VBench's official package).

A `GenerationJob` / `ScoringJob` groups the units of one cell, so that a worker loads the cell's
checkpoints once for all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from arlon.config import ArlonConfig
from arlon.data.video_io import write_video
from arlon.models.ar_transformer import ARTransformer
from arlon.models.latent_vq import LatentVQVAE
from arlon.pipelines.arlon import (
    ArlonPipeline,
    BaselinePipeline,
    code_grid,
    decode_latents,
    encode_prompts,
    generate_codes,
    latent_shape,
    make_generators,
)
from arlon.pipelines.components import ArlonComponents, build_components, load_checked
from arlon.pipelines.long_video import LongVideoPipeline, SegmentStore
from arlon.training.cache import TrainingSession, hash_json, link_or_copy
from arlon.training.common import TrainConfig
from arlon.training.data import DataConfig
from bench.grids import Cell
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.metrics.backends import MetricFailure, VideoToScore, make_backend
from bench.metrics.cache import ScoreCache, score_cache_key
from bench.metrics.registry import MetricSpec, MetricValue
from bench.prompts import BenchPrompt
from bench.store import RunStore, file_sha256

LATENTS = "latents"  # the unit that encodes the training and held-out clips with the video VAE
SEED_RULE = "int(sha256('<base_seed>/<prompt_id>/<k>')[:8], 16) % 2**31"

class Progress(Protocol):
    """The library's progress callback: where a long step is; `loss` comes with a training stage's steps."""

    def __call__(self, task: str, done: int, total: int, loss: float | None = None) -> None: ...


def seed_for(prompt_id: str, sample: int, base_seed: int) -> int:
    """The seed of video k of a prompt: a pure function of (prompt id, k, base seed) (SEED_RULE)."""
    digest = hashlib.sha256(f"{base_seed}/{prompt_id}/{sample}".encode()).hexdigest()
    return int(digest[:8], 16) % 2**31


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkContext:
    """Where a worker reads and writes: the run's store, the checkpoint cache, the torch device."""

    store_root: str
    cache_dir: str
    device: str | None = None  # None: CUDA if available, else CPU
    use_shipped: bool = True  # take the package's shipped checkpoints as cached (TrainingSession)

    @property
    def torch_device(self) -> str:
        return self.device or default_device()


@dataclass(frozen=True)
class TrainUnit:
    id: str
    stage: str  # a training stage, or LATENTS
    label: str  # "vae" when shared, "injector (layers=first:3)" for one cell
    config: ArlonConfig  # a config of one of the cells that share the unit (equal where the stage looks)
    recipes: tuple[tuple[str, TrainConfig], ...]
    data: DataConfig
    needs: tuple[str, ...]  # ids of units that must finish first


@dataclass(frozen=True)
class GenerateUnit:
    cell_id: str
    prompt_id: str
    text: str
    sample: int
    seed: int
    parts: tuple[tuple[str, int], ...] = ()  # a long video's (text, pixel frames) parts; () for a clip
    overlap: int | None = None  # a long video's overlap in latent frames (None: the pipeline's default)

    @property
    def name(self) -> str:
        """`<prompt-id>-<k>`: the video's file name in the store."""
        return f"{self.prompt_id}-{self.sample}"


@dataclass(frozen=True)
class GenerationJob:
    """The pending videos of one cell and the checkpoint folder its components load from."""

    cell: Cell
    checkpoint_dir: str | None  # None when the config trains nothing itself (released weights only)
    with_reference: bool  # also write the AR-decoded video (metrics that read reference_video)
    units: tuple[GenerateUnit, ...]


@dataclass(frozen=True)
class ScoreUnit:
    cell_id: str
    video: str  # `<prompt-id>-<k>`
    prompt_id: str
    sample: int
    metric: str
    key: str  # score_key(...): equal keys give equal scores
    backend: str  # the scoring backend that computes it (the metric's own, or one of its other_backends)


@dataclass(frozen=True)
class ScoringJob:
    """The pending scores of one cell by one metric backend (a backend that loads models, such as
    VBench's, loads them once per job)."""

    cell_id: str
    backend: str
    units: tuple[ScoreUnit, ...]
    prompts: tuple[BenchPrompt, ...]  # the prompts of these units (scenes for the toy-world metrics)


@dataclass(frozen=True)
class UnitFailure:
    phase: str  # train, generate, score
    unit: str  # which unit, in words
    error: str  # one line: "<ExceptionType>: message"
    details: str = ""  # the traceback, kept in failures.json

    def to_dict(self) -> dict:
        return {"phase": self.phase, "unit": self.unit, "error": self.error, "details": self.details}


def failure(phase: str, unit: str, err: BaseException) -> UnitFailure:
    message = " ".join(str(err).split()) or type(err).__name__
    return UnitFailure(phase, unit, f"{type(err).__name__}: {message}", traceback.format_exc())


def score_key(video_record: dict, metric: str, prompt_id: str, backend: str | None = None) -> str:
    """What a score depends on: the video's bytes, the metric's definition and the backend computing it
    (default: the metric's own), the reference, the prompt."""
    spec = METRICS.get(metric)
    reference = video_record.get("reference_sha256") if "reference_video" in spec.inputs else None
    return hash_json(
        {
            "video": video_record["sha256"],
            "reference": reference,
            "metric": spec.name,
            "backend": check_backend(spec, backend),
            "version": spec.version,
            "prompt": prompt_id,
        }
    )


def check_backend(spec: MetricSpec, backend: str | None) -> str:
    """`backend`, or the metric's own when None; an error when that backend does not compute the metric."""
    if backend is None:
        return spec.backend
    if backend not in spec.backends:
        raise BenchError(f"{spec.name} is not computed by the {backend} backend (it is by: {', '.join(spec.backends)})")
    return backend


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def run_train_unit(unit: TrainUnit, context: WorkContext, progress: Progress | None = None) -> bool:
    """Train the unit's stage (or encode the latent pools) unless the cache has it; True when cached."""

    def report(name: str, done: int, total: int, loss: float | None) -> None:
        if progress is not None:
            progress(f"train {unit.label}" if name == unit.stage else f"train {name}", done, total, loss)

    session = TrainingSession(
        unit.config, data=unit.data, train=dict(unit.recipes), cache_dir=context.cache_dir,
        device=context.torch_device, progress=report, use_shipped=context.use_shipped,
    )
    if unit.stage == LATENTS:
        splits = ("train", "heldout")
        cached = all((session.root / "latents" / hash_json(session.pool_spec(s)) / "pool.json").is_file() for s in splits)
        for split in splits:
            session.pool(split)
        return cached
    return session.ensure(unit.stage).cached


def cell_stages(cell: Cell, with_reference: bool) -> tuple[str, ...]:
    """The trained stages a cell's videos load: all of them for ARLON; the VAE and backbone for the
    baseline, plus the AR side when a metric compares with the AR-decoded video."""
    trained = [stage for stage, _ in cell.recipes]
    if not cell.is_baseline:
        return tuple(trained)
    wanted = {"vae", "backbone"} | ({"ar_vq", "ar"} if with_reference else set())
    return tuple(stage for stage in trained if stage in wanted)


def gather_checkpoints(cell: Cell, stages: Sequence[str], cache_dir: str) -> tuple[str | None, dict]:
    """(folder holding the cell's trained components, {stage: where it comes from}) from the cache.

    The folder holds hard links into the cache (`TrainingSession.checkpoint_dir`'s layout); every
    stage must already be trained (the train phase ran), so this only reads manifests.
    """
    if not stages:
        return None, {}
    session = TrainingSession(cell.config, data=cell.data, train=dict(cell.recipes), cache_dir=cache_dir, device="cpu")
    done = [session.ensure(stage) for stage in stages]
    if [d.stage for d in done] == [stage for stage, _ in cell.recipes]:
        directory = session.checkpoint_dir()
    else:
        directory = session.root / "checkpoints" / f"{cell.config.name}-{hash_json([d.key for d in done])}"
        directory.mkdir(parents=True, exist_ok=True)
        for stage in done:
            for suffix in (".safetensors", ".json"):
                link_or_copy(stage.directory / f"{stage.stage}{suffix}", directory / f"{stage.stage}{suffix}")
    references = {
        d.stage: {
            "key": d.key,
            "sha256": d.manifest["sha256"],
            "source": str(d.directory),
            "shipped": not Path(d.directory).resolve().is_relative_to(session.root.resolve()),
            "metrics": d.manifest.get("metrics", {}),
        }
        for d in done
    }
    return str(directory), {"directory": str(directory), "stages": references}


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def load_cell_components(job: GenerationJob, device: str) -> ArlonComponents:
    """The cell's components, loaded once for all its videos."""
    cell = job.cell
    components = build_components(
        cell.config, checkpoint_dir=job.checkpoint_dir, baseline_only=cell.is_baseline, device=device
    )
    if cell.is_baseline and job.with_reference:
        # The baseline draws no AR codes; its reference is what the AR model plans for the same
        # prompt and seed (the codes an ARLON cell sharing this AR model would inject).
        components.ar_vq = LatentVQVAE(cell.config.ar_vq)
        components.ar = ARTransformer(cell.config.ar, cell.config.ar_frame_grid)
        for name in ("ar_vq", "ar"):
            manifest = load_checked(job.checkpoint_dir, name, getattr(components, name), cell.config)
        if manifest.get("trained_grid") is not None:  # the AR's: long videos draw their plan within it
            components.ar_trained_grid = tuple(int(n) for n in manifest["trained_grid"])
        components.to(device).eval()
    return components


# AR codes drawn in this process, by (AR model identity, prompt, seed): every cell of a grid that
# shares the AR model (all ARLON cells of the layers grid, and the baseline's reference) draws the
# same codes for a prompt and seed, and drawing them was half of an ARLON video's time on CPU.
_CODES_DRAWN: dict[str, torch.Tensor] = {}
_CODES_DRAWN_LIMIT = 4096


def ar_codes_key(job: GenerationJob, components: ArlonComponents, text: str, seed: int) -> str | None:
    """What the AR codes of (text, seed) depend on, or None when the AR weights cannot be identified."""
    if job.checkpoint_dir is None:
        return None
    shas = {}
    for name in ("ar", "ar_vq"):
        manifest = Path(job.checkpoint_dir) / f"{name}.json"
        if not manifest.is_file():
            return None
        shas[name] = json.loads(manifest.read_text()).get("sha256")
    cfg = components.config
    return hash_json(
        {
            "weights": shas,
            "configs": [dataclasses.asdict(c) for c in (cfg.ar, cfg.ar_vq, cfg.ar_sampling, cfg.text, cfg.video)],
            "device": str(components.device),
            "text": text,
            "seed": seed,
        }
    )


def _remember_codes(key: str | None, codes: torch.Tensor) -> None:
    if key is not None and len(_CODES_DRAWN) < _CODES_DRAWN_LIMIT:
        _CODES_DRAWN[key] = codes


@torch.no_grad()
def reference_codes(components: ArlonComponents, text: str, seed: int) -> torch.Tensor:
    """The AR codes ArlonPipeline would draw for (text, seed): same generator, same first draw."""
    video = components.config.video
    _, sample_gen = make_generators(seed, components.device)
    prompt = encode_prompts(components, [text])
    size = latent_shape(components, video.num_frames, video.height, video.width)
    return generate_codes(components, prompt, code_grid(components, size[1:]), sample_gen)


def write_generated_video(store: RunStore, unit: GenerateUnit, frames: np.ndarray, fps: int) -> dict:
    """Write the mp4 of uint8 frames (T, H, W, 3); return the start of its record (what it is, its hashes)."""
    video_path = write_video(store.video_path(unit.cell_id, unit.name), frames, fps=fps)
    return {
        "video": unit.name,
        "prompt_id": unit.prompt_id,
        "prompt": unit.text,
        "sample": unit.sample,
        "seed": unit.seed,
        "fps": fps,
        "shape": list(frames.shape),
        "sha256": file_sha256(video_path),
        "frames_sha256": hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest(),
    }


def generate_video(components: ArlonComponents, job: GenerationJob, unit: GenerateUnit, store: RunStore) -> dict:
    """Generate one video (and its reference), write them, then its record; return the record."""
    if unit.parts:
        return generate_long_video(components, job, unit, store)
    started = time.perf_counter()
    if job.cell.is_baseline:
        output = BaselinePipeline(components)([unit.text], seed=unit.seed)
        codes = None
        if job.with_reference:
            key = ar_codes_key(job, components, unit.text, unit.seed)
            codes = _CODES_DRAWN.get(key) if key is not None else None
            if codes is None:
                codes = reference_codes(components, unit.text, unit.seed)
                _remember_codes(key, codes)
    else:
        key = ar_codes_key(job, components, unit.text, unit.seed)
        drawn = _CODES_DRAWN.get(key) if key is not None else None
        # Given the same codes, the pipeline makes the very same video (its noise has its own generator).
        output = ArlonPipeline(components)([unit.text], seed=unit.seed, codes=drawn)
        codes = output.codes
        _remember_codes(key, codes)
    frames = output.frames[0]  # (T, H, W, 3)
    record = write_generated_video(store, unit, frames, output.fps)
    if job.with_reference and codes is not None:
        reference = decode_latents(components, components.ar_vq.decode(codes), frames.shape[0])[0]
        reference_path = write_video(store.reference_path(unit.cell_id, unit.name), reference, fps=output.fps)
        record["reference_sha256"] = file_sha256(reference_path)
    record["wall_s"] = round(time.perf_counter() - started, 3)
    store.write_video_record(unit.cell_id, unit.name, record)
    return record


def generate_long_video(components: ArlonComponents, job: GenerationJob, unit: GenerateUnit, store: RunStore) -> dict:
    """Generate one long video segment by segment (`arlon.pipelines.long_video`), keeping finished
    segments in the store's unfinished folder so that a killed run recomputes only the segment in
    flight; write the video (and its reference, the AR plan decoded segment by segment: for the
    baseline, the plan ARLON would inject for the same prompt and seed), then its record, then drop
    the folder."""
    started = time.perf_counter()
    segments = SegmentStore(store.unfinished_path(unit.cell_id, unit.name))
    pipeline = LongVideoPipeline(components, use_injection=not job.cell.is_baseline)
    output = pipeline(list(unit.parts), seed=unit.seed, overlap=unit.overlap, store=segments)
    frames = output.frames[0]  # (T, H, W, 3)
    reference_sha256 = None
    if job.with_reference:
        codes = output.codes if output.codes is not None else pipeline.ar_codes(output.layout, unit.seed)
        reference = pipeline.reference_frames(output.layout, codes)[0]
        reference_path = write_video(store.reference_path(unit.cell_id, unit.name), reference, fps=output.fps)
        reference_sha256 = file_sha256(reference_path)
    record = write_generated_video(store, unit, frames, output.fps)
    record.update({
        "parts": [[text, frames_] for text, frames_ in unit.parts],
        "overlap_latent_frames": output.plan.overlap,
        "segments": [list(segment) for segment in output.segments],
        "segments_resumed": len(output.plan.starts) - output.segments_computed,
    })
    if reference_sha256 is not None:
        record["reference_sha256"] = reference_sha256
    record["wall_s"] = round(time.perf_counter() - started, 3)
    store.write_video_record(unit.cell_id, unit.name, record)
    segments.clear()
    return record


def run_generation_job(
    job: GenerationJob, context: WorkContext, on_video: Callable[[GenerateUnit], None] | None = None
) -> list[UnitFailure]:
    """Generate every video of the job (one model load); failures are collected, not raised."""
    store = RunStore(context.store_root)
    try:
        components = load_cell_components(job, context.torch_device)
    except Exception as err:  # a unit's failure is collected and reported; the sweep goes on
        broken = failure("generate", f"{job.cell.label}: load checkpoints", err)
        return [UnitFailure("generate", f"{job.cell.label}: {u.name}", broken.error, broken.details) for u in job.units]
    failures = []
    for unit in job.units:
        try:
            generate_video(components, job, unit, store)
        except Exception as err:
            failures.append(failure("generate", f"{job.cell.label}: {unit.name}", err))
        if on_video is not None:
            on_video(unit)
    return failures


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def score_record(unit: ScoreUnit, value: MetricValue | float | None, cached: bool = False) -> dict:
    """The store's record of one (video, metric) score; `weight` and `details` when the metric gives them."""
    spec = METRICS.get(unit.metric)
    result = value if isinstance(value, MetricValue) else MetricValue(value)
    record = {
        "video": unit.video,
        "prompt_id": unit.prompt_id,
        "sample": unit.sample,
        "metric": unit.metric,
        "backend": unit.backend,
        "version": spec.version,
        "value": result.value,
        "key": unit.key,
    }
    if result.weight is not None:
        record["weight"] = result.weight
    if result.details:
        record["details"] = result.details
    if cached:
        record["cached"] = True
    return record


def _cache_keys(
    units: Sequence[ScoreUnit], prompt: BenchPrompt, video_record: dict, models: dict[str, str | None]
) -> dict[str, str]:
    """{metric: score-cache key} of one video's units; `models`: {metric: the backend's weights fingerprint}."""
    return {
        unit.metric: score_cache_key(
            METRICS.get(unit.metric), video_record["sha256"], backend=unit.backend, prompt_id=prompt.id, prompt_text=prompt.text,
            auxiliary=prompt.auxiliary or None, reference_sha256=video_record.get("reference_sha256"),
            models=models[unit.metric],
        )
        for unit in units
    }


def _segments(record: dict | None) -> tuple[tuple[int, int], ...] | None:
    """A long video's DiT segments from its record (None for a clip)."""
    if not record or not record.get("segments"):
        return None
    return tuple((int(a), int(b)) for a, b in record["segments"])


def run_scoring_job(
    job: ScoringJob,
    context: WorkContext,
    commit: Callable[[str, list[dict]], None],
    on_video: Callable[[int], None] | None = None,
    cache: ScoreCache | None = None,
) -> list[UnitFailure]:
    """Score every unit of the job: first from the per-video score cache (`bench.metrics.cache`),
    then the rest with the job's backend (`bench.metrics.backends`). `commit(cell_id, records)`
    after each video, then `on_video(number of units of that video)`."""
    store = RunStore(context.store_root)
    cache = ScoreCache() if cache is None else cache
    prompts = {p.id: p for p in job.prompts}
    by_video: dict[str, list[ScoreUnit]] = {}
    for unit in job.units:
        by_video.setdefault(unit.video, []).append(unit)
    failures: list[UnitFailure] = []
    try:
        backend = make_backend(job.backend)
        models = {metric: backend.fingerprint(metric) for metric in dict.fromkeys(u.metric for u in job.units)}
    except Exception as err:
        return [failure("score", f"{job.backend} backend ({len(by_video)} video(s))", err)]
    pending: dict[str, list[ScoreUnit]] = {}  # video -> units the cache does not hold
    keys: dict[str, dict[str, str]] = {}
    for video, units in by_video.items():
        record = store.video_record(job.cell_id, video)
        if record is None:
            failures.extend(failure("score", f"{video} {u.metric}", BenchError("the video has no record")) for u in units)
            continue
        keys[video] = _cache_keys(units, prompts[units[0].prompt_id], record, models)
        hits = [(u, cache.get(keys[video][u.metric])) for u in units]
        found = [score_record(u, value, cached=True) for u, value in hits if value is not None]
        if found:
            commit(job.cell_id, found)
        missing = [u for u, value in hits if value is None]
        if missing:
            pending[video] = missing
        elif on_video is not None:
            on_video(len(units))
    if not pending:
        return failures
    metrics = list(dict.fromkeys(u.metric for units in pending.values() for u in units))
    items = [
        VideoToScore(
            video, store.video_path(job.cell_id, video), prompts[units[0].prompt_id],
            store.reference_path(job.cell_id, video), _segments(store.video_record(job.cell_id, video)),
        )
        for video, units in pending.items()
    ]
    try:
        for result in backend.score(items, metrics):
            if isinstance(result, MetricFailure):
                failures.append(UnitFailure("score", f"{result.metric} ({len(result.videos)} video(s))", result.error))
                continue
            units = pending.get(result.video, [])
            records = []
            for unit in units:
                if unit.metric in result.values:
                    value = result.values[unit.metric]
                    records.append(score_record(unit, value))
                    cache.put(keys[result.video][unit.metric], value, unit.metric)
                elif unit.metric in result.errors:
                    failures.append(UnitFailure("score", f"{unit.video} {unit.metric}", result.errors[unit.metric]))
            commit(job.cell_id, records)
            if on_video is not None:
                on_video(len(by_video[result.video]))
    except Exception as err:  # the backend itself broke: every pending unit of the job fails with it
        failures.append(failure("score", f"{job.backend} backend ({len(pending)} video(s))", err))
    return failures


def collect_scoring_job(job: ScoringJob, context: WorkContext) -> tuple[list[dict], list[UnitFailure]]:
    """`run_scoring_job` returning its records (for workers that cannot write the shared score files)."""
    records: list[dict] = []
    failures = run_scoring_job(job, context, lambda cell_id, batch: records.extend(batch))
    return records, failures
