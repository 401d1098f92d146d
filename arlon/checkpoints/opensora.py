"""Loading Open-Sora v1.2 checkpoints in their real file layouts (upstream: `opensora/utils/ckpt_utils.py`).

Sources are resolved offline: a local directory, a single .safetensors / .bin / .pt / .pth file, or a
Hugging Face id (e.g. `hpcai-tech/OpenSora-STDiT-v3`) already in the local HF cache. Open-Sora training
checkpoints may nest the weights under "ema", "model" or "state_dict"; those are unwrapped.

Sections: shared file resolution and reading, then the STDiT3 part. This module imports no models, so
the models can import it.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from arlon.checkpoints.io import check_state_dict, load_safetensors, read_json
from arlon.errors import CheckpointMismatchError, CorruptFileError, MissingWeightsError

# ---------------------------------------------------------------------------------------------------
# Shared: resolving and reading weight files

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
NESTED_STATE_KEYS = ("ema", "model", "state_dict", "module")  # Open-Sora's find_model prefers "ema"


def resolve_weights_source(
    path_or_id: str | Path,
    filenames: tuple[str, ...],
    *,
    download_hint: str,
    cache_dir: str | Path | None = None,
) -> list[Path]:
    """The weight file(s) of a local file, a local directory or a cached Hugging Face repo id.

    In a directory, the first of `filenames` that exists wins (else its "model/" subfolder is searched);
    a name ending in ".index.json" stands for the shards it lists. Raises MissingWeightsError naming
    what was tried and `download_hint`.
    """
    path = Path(path_or_id).expanduser()
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise MissingWeightsError(f"{path}: not a weights file (expected one of {', '.join(WEIGHT_SUFFIXES)})")
        return [path]
    if path.is_dir():
        return _weights_in_directory(path, filenames, download_hint)
    snapshot = _cached_hf_snapshot(str(path_or_id), cache_dir)
    if snapshot is None:
        raise MissingWeightsError(
            f"{path_or_id}: no such file or directory, and not a Hugging Face repo in the local cache; {download_hint}"
        )
    return _weights_in_directory(snapshot, filenames, download_hint)


def _weights_in_directory(directory: Path, filenames: tuple[str, ...], download_hint: str) -> list[Path]:
    for name in filenames:
        candidate = directory / name
        if not candidate.is_file():
            continue
        if name.endswith(".index.json"):
            index = read_json(candidate, download_hint)
            weight_map = index.get("weight_map") if isinstance(index, dict) else None
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise CorruptFileError(f"{candidate}: not a shard index (no weight_map of file names); {download_hint}")
            return [directory / shard for shard in dict.fromkeys(weight_map.values())]
        return [candidate]
    if (directory / "model").is_dir():  # an Open-Sora training checkpoint: <step>/model/ holds the shards
        return _weights_in_directory(directory / "model", filenames, download_hint)
    raise MissingWeightsError(f"{directory}: none of {', '.join(filenames)} found; {download_hint}")


def _cached_hf_snapshot(repo_id: str, cache_dir: str | Path | None) -> Path | None:
    """The local snapshot folder of a repo id in the HF cache, without touching the network."""
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        return None
    # Imported here: huggingface_hub is only needed for ids, and importing it is slow.
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError):
        return None


def read_state_dict(files: list[Path]) -> dict[str, Tensor]:
    """Read and merge weight files on CPU; unwrap Open-Sora's {"ema"|"model"|"state_dict": weights}.
    A truncated or damaged file is a CorruptFileError naming it."""
    state: dict[str, Tensor] = {}
    for file in files:
        if not file.is_file():
            raise MissingWeightsError(f"{file}: weight shard listed in the index is missing")
        if file.suffix == ".safetensors":
            part = load_safetensors(file, "download it again")
        else:
            try:
                part = torch.load(file, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as err:
                # weights_only refuses arbitrary objects; a truncated file fails in the zip or pickle reader
                reason = " ".join(str(err).split()) or type(err).__name__
                raise CorruptFileError(
                    f"{file}: cannot read as a tensor checkpoint ({reason}); download it again"
                ) from None
            part = _unwrap_nested(part, file)
        state.update(part)
    return state


def _unwrap_nested(obj: object, file: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping) and not _is_flat_state_dict(obj):
        nested = next((key for key in NESTED_STATE_KEYS if isinstance(obj.get(key), Mapping)), None)
        if nested is None:
            break
        obj = obj[nested]
    if not isinstance(obj, Mapping) or not _is_flat_state_dict(obj):
        raise CheckpointMismatchError(
            f"{file}: no state dict found (expected tensors at the top level or under one of {NESTED_STATE_KEYS})"
        )
    return dict(obj)


def _is_flat_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(value, Tensor) for value in obj.values())


# ---------------------------------------------------------------------------------------------------
# STDiT3 (hpcai-tech/OpenSora-STDiT-v3)

STDIT3_HF_ID = "hpcai-tech/OpenSora-STDiT-v3"
STDIT3_FILENAMES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "ema.pt",
    "model.pt",
    "model.pth",
)
# Open-Sora's reparameter() drops these: older checkpoints stored fixed sin-cos tables that STDiT3
# recomputes on the fly.
STDIT3_DROPPED_KEY_PREFIXES = ("pos_embed", "pos_embed_temporal")
STDIT3_NULL_CAPTION_KEY = "y_embedder.y_embedding"
STDIT3_DOWNLOAD_HINT = (
    f"download it with `huggingface-cli download {STDIT3_HF_ID}` and set backbone.pretrained "
    "to that id or to the local folder"
)


def load_stdit3_state_dict(
    path_or_id: str | Path,
    model_max_length: int | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> dict[str, Tensor]:
    """STDiT3 weights with Open-Sora key names from a directory, a weights file or a cached HF id.

    Like Open-Sora's reparameter: pos_embed / pos_embed_temporal entries are dropped, and when
    `model_max_length` is given the null caption `y_embedder.y_embedding` is truncated to it or padded by
    repeating its last row. A "module." prefix (DDP) is removed.
    """
    files = resolve_weights_source(
        path_or_id, STDIT3_FILENAMES, download_hint=STDIT3_DOWNLOAD_HINT, cache_dir=cache_dir
    )
    state = read_state_dict(files)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    state = {
        key: value
        for key, value in state.items()
        if not any(key == prefix or key.startswith(prefix + ".") for prefix in STDIT3_DROPPED_KEY_PREFIXES)
    }
    if model_max_length is not None and STDIT3_NULL_CAPTION_KEY in state:
        state[STDIT3_NULL_CAPTION_KEY] = fit_null_caption(state[STDIT3_NULL_CAPTION_KEY], model_max_length)
    return state


def fit_null_caption(y_embedding: Tensor, length: int) -> Tensor:
    """(L, C) -> (length, C): truncate, or pad by repeating the last row (Open-Sora's reparameter)."""
    if y_embedding.shape[0] >= length:
        return y_embedding[:length].clone()
    padding = y_embedding[-1:].repeat(length - y_embedding.shape[0], 1)
    return torch.cat([y_embedding, padding], dim=0)


# ---------------------------------------------------------------------------------------------------
# Video VAE (hpcai-tech/OpenSora-VAE-v1.2): 517 entries, `scale`/`shift` buffers, `spatial_vae.module.*`
# (the SDXL AutoencoderKL) and `temporal_vae.*`, as `VideoAutoencoderPipeline` names them (`opensora/models/vae/vae.py`)

VAE_HF_ID = "hpcai-tech/OpenSora-VAE-v1.2"
VAE_FILENAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "model.pt", "model.pth")
VAE_DOWNLOAD_HINT = (
    f"download it with `huggingface-cli download {VAE_HF_ID}` and set vae.pretrained to that id, to the local "
    "folder or to its model.safetensors"
)


def load_opensora_vae_state_dict(path_or_id: str | Path, *, cache_dir: str | Path | None = None) -> dict[str, Tensor]:
    """OpenSora-VAE-v1.2 weights with Open-Sora key names from a directory, a weights file or a cached HF id.

    A DDP "module." prefix on every key is removed (the `spatial_vae.module.` infix is part of the real names).
    """
    files = resolve_weights_source(path_or_id, VAE_FILENAMES, download_hint=VAE_DOWNLOAD_HINT, cache_dir=cache_dir)
    state = read_state_dict(files)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state
