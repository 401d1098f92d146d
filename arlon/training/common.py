"""What every training recipe shares: the training config, the learning-rate schedule, EMA, the
optimiser, resumable training state and the one generic loop.

The loop is nanoGPT's `train.py` made resumable the torchtitan way: `learning_rate(step, cfg)` is a
pure function of the step (linear warmup, then cosine decay), and `TrainState` gathers everything a
run needs to continue bit for bit (model, EMA, optimiser, step, RNG states), like torchtitan's
`Trainer.state_dict`. The data order is a pure function of the step too (`arlon/training/data.py`),
so no data-loader state is saved.

Open-Sora v1.2's DiT recipe (`scripts/train.py`, `configs/opensora-v1-2/train/`; summed up in
docs/opensora-v1.2-notes.md, 'Training recipe'): AdamW (its HybridAdam in AdamW mode), grad clip 1.0,
warmup, EMA of the DiT weights with decay 0.99, bf16. We use EMA on the DiT side only (the tiny
backbone and the injector), where Open-Sora does, and bf16 autocast only on CUDA (CPU runs fp32).

One process on the CPU or one GPU, or several under torchrun (`arlon/training/distributed.py`): the
loop wraps the model in DDP, splits each rank's share of the global batch into micro-batches
(`micro_batch_size`, gradient accumulation), and only rank 0 writes training states. Nothing here
keeps global state (the loop runs inside `torch.random.fork_rng`, so the caller's RNG is untouched).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from arlon.checkpoints.io import atomic_write_json, load_safetensors, read_json, save_safetensors, set_aside
from arlon.config import AT_LEAST_ONE, DECAY, NON_NEGATIVE, POSITIVE, PROBABILITY, Range, check_range
from arlon.errors import ArlonError, ConfigError, CorruptFileError
from arlon.global_batch import BatchRows, global_batch_rows
from arlon.training.data import Batch, Stream
from arlon.training.distributed import SINGLE, Distributed


class TrainingError(ArlonError):
    """Training cannot go on (the loss diverged); the message says which setting to change."""


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How one stage is trained. Defaults per stage and preset: `arlon.training.stages.default_train_config`."""

    steps: int | None = None  # optimiser steps; None where the paper gives no number (must be set)
    batch_size: int = 8  # the global batch of one optimiser step, over every rank and micro-batch
    # Gradient accumulation: each rank runs its share of the batch in micro-batches of this many
    # samples (0 = the whole share at once). Changes memory, not what is trained.
    micro_batch_size: int = 0
    # Injector stage: recompute the frozen STDiT3's blocks in the backward instead of keeping their
    # activations (`STDiT3.grad_checkpointing`). Changes memory and time, not what is trained.
    activation_checkpointing: bool = False
    # Stages on a latent pool (and the VAE): train on this many clips of the data instead of its
    # data.num_train_clips (0); the training-set size axis (ablations/data_size.yaml, paper Table 5).
    num_clips: int = 0
    lr: float = 1e-3  # peak learning rate, reached at the end of the warmup
    warmup_steps: int = 0  # linear warmup from lr / warmup_steps to lr
    min_lr_ratio: float = 0.1  # the cosine decay ends at lr * min_lr_ratio on the last step
    weight_decay: float = 0.0  # Open-Sora trains with 0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8  # Open-Sora's DiT uses 1e-15
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    ema_decay: float = 0.0  # 0 = no EMA; the DiT side uses Open-Sora's 0.99
    mixed_precision: bool = True  # bf16 autocast on CUDA; the CPU always trains in fp32
    checkpoint_every: int = 100  # steps between resumable training states
    seed: int = 0  # model init, data order and every random draw of the run
    caption_dropout: float = 0.0  # AR stage: captions replaced by "" with this probability (for CFG)
    clip_frames: int = 0  # VAE stage: train on random temporal crops of this many frames (0 = whole clips)
    # Stages after the VAE: read a stream of clips never seen before, encoded as they come, instead of
    # the fixed latent pool (on the toy world, which has as many clips as a run reads; a CSV's clips
    # stay a pool)
    fresh_clips: bool = False
    recipe: str = "custom"  # the named recipe this came from (`arlon.training.stages.RECIPES`), for manifests

    def validate(self, stage: str) -> "TrainConfig":
        """Every field in its range (`RECIPE_RANGES`), named as a grid writes it: train.<stage>.<field>."""
        if self.steps is None:
            raise ConfigError(
                f"train.steps is not set for stage {stage!r} (the paper reports no step count): train it with "
                f"--stage {stage} --steps N (a stage you asked for may need it first), or --set train.steps=N"
            )
        for name, allowed in RECIPE_RANGES.items():
            check_range(f"train.{stage}.{name}", getattr(self, name), allowed)
        return self


# The range of every numeric recipe field. steps >= 1: a stage trained for 0 steps would hand its
# untrained initial weights on as if trained, which nothing may do silently.
RECIPE_RANGES: dict[str, Range] = {
    "steps": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
    "micro_batch_size": NON_NEGATIVE,  # 0 = no accumulation
    "num_clips": NON_NEGATIVE,  # 0 = data.num_train_clips
    "lr": POSITIVE,
    "warmup_steps": NON_NEGATIVE,
    "min_lr_ratio": PROBABILITY,
    "weight_decay": NON_NEGATIVE,
    "beta1": DECAY,
    "beta2": DECAY,
    "eps": POSITIVE,
    "grad_clip": NON_NEGATIVE,  # 0 disables clipping
    "ema_decay": DECAY,  # 0 disables the EMA
    "checkpoint_every": AT_LEAST_ONE,
    "seed": NON_NEGATIVE,
    "caption_dropout": PROBABILITY,
    "clip_frames": NON_NEGATIVE,  # 0 = whole clips
}


# ----------------------------------------------------------------------------------------------
# Schedule, optimiser, EMA
# ----------------------------------------------------------------------------------------------


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The learning rate of optimiser step `step` (0-based), a pure function of the step.

    1. warmup: linear, lr * (step + 1) / warmup_steps for the first warmup_steps steps;
    2. decay: cosine from lr down to lr * min_lr_ratio, reached at the last step (steps - 1);
    3. past the last step (never used by the loop): stays at the floor.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    min_lr = cfg.lr * cfg.min_lr_ratio
    decay_steps = cfg.steps - 1 - cfg.warmup_steps
    if decay_steps <= 0:
        return cfg.lr
    progress = min((step - cfg.warmup_steps) / decay_steps, 1.0)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `params`; the learning rate is set by the loop at every step."""
    if not params:
        raise ConfigError("nothing to train: the model has no parameters with requires_grad")
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


class EMA:
    """Exponential moving average of a module's trainable parameters, kept in fp32.

    shadow = decay * shadow + (1 - decay) * param after every optimiser step (Open-Sora's
    `update_ema`). Frozen parameters and buffers are not averaged: `copy_to` leaves them as they are.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {
            name: param.detach().float().clone() for name, param in module.named_parameters() if param.requires_grad
        }

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for name, param in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(self.decay).add_(param.detach().float(), alpha=1 - self.decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite the module's averaged parameters with their EMA values."""
        for name, param in module.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name].to(param.dtype))

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ConfigError("EMA state does not match the model's trainable parameters; delete the resume state")
        for name, value in state.items():
            self.shadow[name].copy_(value)


# ----------------------------------------------------------------------------------------------
# Resumable state
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped.

    Tensors (model, EMA, optimiser moments, RNG states) go to safetensors; the rest (step, optimiser
    hyper-parameters, loss history) to JSON.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    generator: torch.Generator  # CPU; the stage's explicit draws (timesteps, noise, masks, crops)
    device: torch.device
    step: int = 0
    losses: list[float] = field(default_factory=list)

    def tensors(self) -> dict[str, Tensor]:
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            out.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        for index, entries in self.optimizer.state_dict()["state"].items():
            out.update({f"optimizer.{index}.{k}": v for k, v in entries.items() if isinstance(v, Tensor)})
        out["rng.cpu"] = torch.get_rng_state()
        out["rng.generator"] = self.generator.get_state()
        if self.device.type == "cuda":
            out["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return out

    def meta(self) -> dict:
        groups = self.optimizer.state_dict()["param_groups"]
        return {"step": self.step, "losses": self.losses, "param_groups": groups}

    def load(self, tensors: dict[str, Tensor], meta: dict) -> None:
        self.model.load_state_dict(_with_prefix(tensors, "model."), strict=True)
        if self.ema is not None:
            self.ema.load_state_dict(_with_prefix(tensors, "ema."))
        state: dict[int, dict[str, Tensor]] = {}
        for key, value in _with_prefix(tensors, "optimizer.").items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        torch.set_rng_state(tensors["rng.cpu"])
        self.generator.set_state(tensors["rng.generator"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.step = int(meta["step"])
        self.losses = [float(x) for x in meta["losses"]]


def _with_prefix(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class Checkpointer:
    """Resumable training states in one directory: `state-<step>.safetensors` + `state-<step>.json`.

    The JSON is written after the tensors, so a state counts only once its JSON exists; older
    states are deleted after a newer one is complete. Each file is written atomically. A state that
    cannot be read back (damaged files, other entries than the model's) is moved aside with one
    warning and the next older one is used, else the stage starts over: it is only a cache.
    """

    PATTERN = re.compile(r"state-(\d+)\.json$")

    def __init__(self, directory: str | os.PathLike, keep: int = 1):
        self.directory = Path(directory)
        self.keep = keep

    def steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (self.PATTERN.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, state: TrainState) -> Path:
        stem = self.directory / f"state-{state.step:08d}"
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.tensors().items()}
        save_safetensors(tensors, stem.with_suffix(".safetensors"))
        atomic_write_json(stem.with_suffix(".json"), state.meta())
        for old in self.steps()[: -self.keep]:
            self._remove(old)
        return stem.with_suffix(".json")

    def restore(self, state: TrainState) -> bool:
        """Load the newest complete, readable state into `state`; False when there is none."""
        for step in reversed(self.steps()):
            stem = self.directory / f"state-{step:08d}"
            try:
                tensors, meta = self._read(stem, state)
            except CorruptFileError as err:
                files = [stem.with_suffix(".json"), stem.with_suffix(".safetensors")]
                set_aside(files, str(err), "training resumes from an older state or the start")
                continue
            state.load(tensors, meta)
            return True
        return False

    @staticmethod
    def _read(stem: Path, state: TrainState) -> tuple[dict[str, Tensor], dict]:
        """The tensors and JSON of a saved state, checked to fit `state` before anything is loaded into it."""
        meta = read_json(stem.with_suffix(".json"))
        fields = {"step": int, "losses": list, "param_groups": list}
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), kind) for k, kind in fields.items()):
            raise CorruptFileError(f"{stem}.json: not a training state (expected step, losses, param_groups)")
        path = stem.with_suffix(".safetensors")
        if not path.is_file():
            raise CorruptFileError(f"{path}: missing beside its training state")
        # Loaded on the CPU: RNG states must be CPU tensors, and load_state_dict copies the rest to the model's device.
        tensors = load_safetensors(path)
        model, expected = _with_prefix(tensors, "model."), state.model.state_dict()
        wanted = {"rng.cpu", "rng.generator"} | {f"ema.{k}" for k in (state.ema.state_dict() if state.ema else {})}
        reshaped = set(model) != set(expected) or any(model[k].shape != expected[k].shape for k in expected)
        if reshaped or wanted - set(tensors):
            raise CorruptFileError(f"{path}: not a training state of this model (its entries differ from the model's)")
        return tensors, meta

    def clear(self) -> None:
        for step in self.steps():
            self._remove(step)

    def _remove(self, step: int) -> None:
        stem = self.directory / f"state-{step:08d}"
        for suffix in (".json", ".safetensors"):
            stem.with_suffix(suffix).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# The generic loop
# ----------------------------------------------------------------------------------------------

# (model, batch, generator) -> scalar loss, the mean over the batch. `model` is the trained module as
# the loop runs it (in DDP on several ranks): the loss must call it, not the module it wraps. Runs
# under autocast; the model is in train mode.
LossFn = Callable[[nn.Module, Batch, torch.Generator], Tensor]
# (task, done, total, loss or None): one call per optimiser step; task names the stage.
TrainProgress = Callable[[str, int, int, float | None], None]


@dataclass
class TrainResult:
    losses: list[float]  # the loss of every step, resumed ones included
    steps_run: int  # optimiser steps run by this call (0 when the state was already complete)
    ema: EMA | None

    def loss_metrics(self, window: int = 20) -> dict[str, float]:
        """Mean loss over the first and the last `window` steps (both nan when no step ran)."""
        first, last = self.losses[:window], self.losses[-window:]
        return {
            "loss_first": sum(first) / len(first) if first else float("nan"),
            "loss_final": sum(last) / len(last) if last else float("nan"),
        }


@dataclass
class RunContext:
    """Where and how a stage runs: the device, its resume directory and the progress callback."""

    device: torch.device
    checkpointer: Checkpointer | None = None
    progress: TrainProgress | None = None
    dist: Distributed = SINGLE  # this process's rank and the world size (torchrun)


@dataclass
class StageOutput:
    """What a stage function returns: the module to save (EMA weights where EMA is used) and its metrics."""

    module: nn.Module
    metrics: dict[str, float]
    result: TrainResult
    record: dict = field(default_factory=dict)  # extra manifest entries (the AR's trained_grid)


def autocast_context(device: torch.device, cfg: TrainConfig) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when mixed precision is on; nothing on the CPU (fp32 training)."""
    if device.type == "cuda" and cfg.mixed_precision:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_training(
    task: str,
    model: nn.Module,
    loss_fn: LossFn,
    data: Stream,
    cfg: TrainConfig,
    run: RunContext,
) -> TrainResult:
    """Optimise `model`'s trainable parameters for cfg.steps steps of `loss_fn` over `data`.

    Resumes from the newest state of `run.checkpointer` if there is one (saved on any world size),
    saves a state every cfg.checkpoint_every steps and on KeyboardInterrupt (rank 0), and leaves the
    final weights (not the EMA) in `model`; the EMA comes back in the result. `data` yields this
    rank's share of each global batch. The caller's RNG state is left untouched.
    """
    cfg.validate(task)
    device, checkpointer, progress, ranks = run.device, run.checkpointer, run.progress, run.dist
    batch_pieces(cfg, ranks)  # refuses a batch that does not split, before anything runs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    generator = torch.Generator().manual_seed(cfg.seed)  # CPU: the same draws on any device and rank
    state = TrainState(model, optimizer, ema, generator, device)
    cuda_devices = [device] if device.type == "cuda" else []

    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(cfg.seed)  # the model's own draws (caption dropout, code restarts), equal on every rank
        if checkpointer is not None:
            checkpointer.restore(state)
        first_step = state.step
        model.train()
        trained = ranks.wrap(model, device)
        batches = data.batches(start_step=first_step)
        try:
            for step in range(first_step, cfg.steps):
                loss = _train_step(state, trained, loss_fn, next(batches), step, params, cfg, run)
                state.losses.append(loss)
                state.step = step + 1
                if not math.isfinite(loss):
                    raise TrainingError(f"{task}: the loss is {loss} at step {step}; lower train.lr or raise train.warmup_steps")
                if progress is not None and ranks.is_main:
                    progress(task, step + 1, cfg.steps, loss)
                if checkpointer is not None and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
                    _save(checkpointer, state, ranks)
        except KeyboardInterrupt:
            if checkpointer is not None and state.step > first_step and ranks.is_main:
                checkpointer.save(state)  # the interrupted run resumes from here
            raise
    if progress is not None and ranks.is_main and first_step == cfg.steps:  # nothing left to run: show the stage as done
        progress(task, cfg.steps, cfg.steps, state.losses[-1] if state.losses else None)
    return TrainResult(losses=state.losses, steps_run=state.step - first_step, ema=ema)


def batch_pieces(cfg: TrainConfig, ranks: Distributed, rows: BatchRows | None = None) -> list[BatchRows]:
    """The micro-batches this rank runs in one step, as rows of its global batch: of cfg.batch_size, or
    `rows` where the data says which (a length bucket's smaller last batch, cut into micro-batches of at
    most micro_batch_size)."""
    if rows is not None:
        micro = cfg.micro_batch_size or rows.size
        return [BatchRows(start, min(start + micro, rows.stop), rows.total) for start in range(rows.start, rows.stop, micro)]
    if cfg.batch_size % ranks.world_size:
        raise ConfigError(
            f"train.batch_size ({cfg.batch_size}) is the global batch: it must divide evenly over the "
            f"{ranks.world_size} ranks (a multiple of {ranks.world_size})"
        )
    share = cfg.batch_size // ranks.world_size
    micro = cfg.micro_batch_size or share
    if share % micro:
        raise ConfigError(
            f"train.micro_batch_size ({micro}) must divide each rank's share of the batch ({share} = "
            f"batch_size {cfg.batch_size} / {ranks.world_size} ranks)"
        )
    first = ranks.rank * share
    return [BatchRows(start, start + micro, cfg.batch_size) for start in range(first, first + share, micro)]


def _save(checkpointer: Checkpointer, state: TrainState, ranks: Distributed) -> None:
    """Rank 0 writes the state; every rank goes on once it is complete."""
    if ranks.is_main:
        checkpointer.save(state)
    ranks.barrier()


def _train_step(
    state: TrainState,
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    step: int,
    params: list[nn.Parameter],
    cfg: TrainConfig,
    run: RunContext,
) -> float:
    """One optimiser step: lr for this step, forward and backward of each micro-batch under autocast
    (gradients summed, all-reduced by DDP after the last), clip, update, EMA. Returns the global batch's loss.

    Every micro-batch starts from the RNG states the step started with and draws for the whole global
    batch (arlon/global_batch.py), so the split changes nothing but rounding.
    """
    device, ranks = run.device, run.dist
    for group in state.optimizer.param_groups:
        group["lr"] = learning_rate(step, cfg)
    pieces = batch_pieces(cfg, ranks, batch.rows)
    start_states = _rng_states(state.generator, device) if len(pieces) > 1 else None
    offset, weighted_loss = pieces[0].start, 0.0
    for index, rows in enumerate(pieces):
        if index > 0:
            _set_rng_states(state.generator, device, start_states)
        micro = batch.select(rows.start - offset, rows.stop - offset)
        # The loss is a mean over the micro-batch: weighted by its share of the global batch, and by the
        # world size that DDP's gradient average divides by, the gradients add up to the global batch's.
        share = rows.size * ranks.world_size / rows.total
        last = index == len(pieces) - 1
        sync = contextlib.nullcontext() if last or not ranks.is_distributed else model.no_sync()
        with sync, global_batch_rows(rows), autocast_context(device, cfg):
            loss = loss_fn(model, micro.to(device), state.generator)
            scaled = loss if share == 1 else loss * share
        scaled.backward()
        weighted_loss += float(loss.detach()) * rows.size / rows.total
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    if state.ema is not None:
        state.ema.update(state.model)
    return ranks.mean(weighted_loss * ranks.world_size) if ranks.is_distributed else weighted_loss


def _rng_states(generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return generator.get_state(), torch.get_rng_state(), cuda


def _set_rng_states(generator: torch.Generator, device: torch.device, states) -> None:
    generator_state, cpu_state, cuda_state = states
    generator.set_state(generator_state)
    torch.set_rng_state(cpu_state)
    if cuda_state is not None:
        torch.cuda.set_rng_state(cuda_state, device)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """A block whose global RNG draws (module init) come from `seed`; the caller's RNG state is restored after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
