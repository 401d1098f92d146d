"""Saving and loading our own component checkpoints: safetensors weights plus a JSON manifest.

A checkpoint directory holds, per component, `<name>.safetensors` and `<name>.json`. The JSON
records the component's config (so the module can be rebuilt from the file alone, like nanoGPT's
`model_args`), the training step, the data seed and any metrics. Files are written atomically.

Open-Sora's own checkpoints (STDiT3, VAE) are read by `arlon/checkpoints/opensora.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor
from safetensors.torch import load_file, save_file

from arlon.errors import CheckpointMismatchError, MissingWeightsError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_component(directory: str | os.PathLike, name: str, module: torch.nn.Module, manifest: dict) -> Path:
    """Write `<directory>/<name>.safetensors` (contiguous CPU tensors) and `<name>.json`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, directory / f"{name}.safetensors")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_json(directory / f"{name}.json", manifest)
    return directory / f"{name}.safetensors"


def read_manifest(directory: str | os.PathLike, name: str) -> dict:
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        raise MissingWeightsError(f"{path}: checkpoint manifest not found")
    return json.loads(path.read_text())


def load_component(directory: str | os.PathLike, name: str, module: torch.nn.Module) -> dict:
    """Load `<directory>/<name>.safetensors` into `module` strictly; return its manifest."""
    path = Path(directory) / f"{name}.safetensors"
    if not path.is_file():
        raise MissingWeightsError(
            f"{path}: checkpoint not found; train it with `arlon-bench train` or point --checkpoint at a directory "
            f"holding {name}.safetensors"
        )
    state = load_file(str(path))
    check_state_dict(module.state_dict(), state, source=str(path))
    module.load_state_dict(state, strict=True)
    return read_manifest(directory, name)


def check_state_dict(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], source: str, shown: int = 5) -> None:
    """Raise CheckpointMismatchError if `state` lacks, adds or reshapes any entry of `expected`."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [
        f"{key} {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", reshaped)):
        if items:
            more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:shown])}{more}")
    if problems:
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not match the model config; " + "; ".join(problems)
            + ". Check that the config sizes match the checkpoint."
        )
