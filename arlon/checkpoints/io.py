"""How this project writes and reads its files, and our own component checkpoints.

Writing: every file goes through `atomic_path`: it is written to a temporary file beside the target
and renamed onto it only once complete; when writing fails (a full disk, a read-only folder, an
interrupt) the temporary file is removed and the file it would have replaced is untouched. The
file ends with the mode a plain `open()` gives a new file (0o666 less the umask), because
`tempfile.mkstemp` (and safetensors' own writer) make it 0600 and a shared `runs/` folder or a
team's cache would then be unreadable to colleagues. A replaced file takes the new mode too, so
files written 0600 by older versions heal when rewritten. A write that fails is a `WriteError`
naming the file (not its temporary name) and what to do.

Output paths a user gives are checked before any work starts (`output_file`, `check_output_dir`):
a folder where a file goes, a file where a folder goes, a dangling symbolic link or a file in the
middle of the path is one `OutputPathError`. Missing folders are created.

Reading: a truncated or empty weights file, a manifest that is not JSON, or weights whose hash is
not the one their manifest records is a `CorruptFileError` naming the file; `move_aside` is how a
cache puts such a file out of the way before computing it again.

A checkpoint directory holds, per component, `<name>.safetensors` and `<name>.json`. The JSON
records the component's config (so the module can be rebuilt from the file alone, like nanoGPT's
`model_args`), the training step, the data seed, any metrics and the weights' sha256
(`tensors_sha256`).

Open-Sora's own checkpoints (STDiT3, VAE) are read by `arlon/checkpoints/opensora.py`.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from arlon.errors import CheckpointMismatchError, CorruptFileError, MissingWeightsError, OutputPathError, WriteError

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# Output paths

_NOT_WRITABLE = "make the folder writable or write somewhere else"
_FULL = "free some disk space (or write somewhere else) and run the command again"
WRITE_HINTS = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EACCES: _NOT_WRITABLE,
    errno.EPERM: _NOT_WRITABLE,
    errno.EROFS: "write somewhere else",
}


def write_error(path: str | os.PathLike, err: OSError | Exception) -> WriteError:
    """One line for a failed write of `path`: the system's reason and what to do about it."""
    code = getattr(err, "errno", None)
    if code is None:  # safetensors reports I/O failures as text: "... (os error 28)"
        found = re.search(r"os error (\d+)", str(err))
        code = int(found.group(1)) if found else None
    reason = os.strerror(code) if code else " ".join(str(err).split())
    hint = WRITE_HINTS.get(code)
    return WriteError(f"cannot write {path}: {reason}" + (f"; {hint}" if hint else ""))


def _label(path: Path, what: str | None) -> str:
    return f"{what} {path}" if what else str(path)


def _check_parents(folder: Path, label: str) -> None:
    """The nearest existing ancestor of `folder` (itself included) must be a folder we can create in."""
    for ancestor in (folder, *folder.parents):
        if ancestor.is_symlink() and not ancestor.exists():
            raise OutputPathError(
                f"{label}: {ancestor} is a symbolic link to {os.path.realpath(ancestor)}, which does not exist; "
                "create that folder or remove the link"
            )
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputPathError(f"{label}: {ancestor} is a file, not a folder; give a path through folders")
            return


def output_file(path: str | os.PathLike, what: str | None = None, example: str = "") -> Path:
    """The file to write for the output path `path` (a symbolic link is followed, as open() follows it),
    or an OutputPathError saying why `path` cannot be a file; `what` names the option in messages and
    `example` is a file name to suggest when `path` is a folder."""
    path = Path(path).expanduser()
    label = _label(path, what)
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.exists() and not target.parent.is_dir():
            raise OutputPathError(
                f"{label} is a symbolic link to {target}, whose folder does not exist; create it or remove the link"
            )
        path = target
    if path.is_dir():
        suggestion = f", e.g. {path / example}" if example else ""
        raise OutputPathError(f"{label} is a folder; give a file path{suggestion}")
    _check_parents(path.parent, label)
    return path


def check_output_dir(path: str | os.PathLike, what: str | None = None) -> Path:
    """`path` if it is a folder or can be created as one, else an OutputPathError saying why."""
    path = Path(path).expanduser()
    label = _label(path, what)
    if path.is_symlink() and not path.exists():
        raise OutputPathError(
            f"{label} is a symbolic link to {os.path.realpath(path)}, which does not exist; create that folder "
            "or remove the link"
        )
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{label} is a file, not a folder; give a folder path")
    _check_parents(path, label)
    return path


def ensure_dir(path: str | os.PathLike, what: str | None = None) -> Path:
    """`check_output_dir`, then create the folder (and its parents) if missing."""
    path = check_output_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err) from None
    return path


def _new_file(folder: Path, prefix: str, suffix: str) -> tuple[Path, int]:
    """Create an empty file with a fresh name in `folder` as open() creates one: (path, its mode), the
    mode being 0o666 less the umask (and whatever a default ACL of the folder adds)."""
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            return candidate, stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A new temporary file beside `path` for the block to write; renamed onto `path` when the block
    succeeds, removed when it fails. An OSError while writing becomes a WriteError naming `path`."""
    target = output_file(path)
    ensure_dir(target.parent)
    try:
        tmp, mode = _new_file(target.parent, f".{target.name}.", suffix)
    except OSError as err:
        raise write_error(path, err) from None
    try:
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:  # a writer that made its own file (safetensors: 0600)
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(obj):
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def move_aside(path: str | os.PathLike) -> Path | None:
    """Rename a damaged file to `<name>.corrupt-<time>` beside it (kept to look at, never read again);
    None when it is gone already (another process moved it)."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        target = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
        if os.path.lexists(target):
            continue
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        return target
    raise FileExistsError(errno.EEXIST, "no free name to move a damaged file to", str(path))


def set_aside(files: list[Path], problem: str, then: str) -> None:
    """Move a damaged cache entry's `files` aside (`move_aside`) and say so in one warning line.

    Only for caches: what was computed once can be computed again. When the files cannot be moved
    (a read-only cache), the problem is a CorruptFileError naming them instead.
    """
    try:
        moved = [str(m) for m in (move_aside(f) for f in files if os.path.lexists(f)) if m is not None]
    except OSError as err:
        raise CorruptFileError(f"{problem}; it could not be moved aside ({err.strerror}): delete it") from None
    logger.warning("warning: %s; moved aside to %s, %s", problem, ", ".join(moved) or "(gone already)", then)


# ---------------------------------------------------------------------------------------------------
# Reading

def _hinted(problem: str, hint: str) -> str:
    return f"{problem}; {hint}" if hint else problem


def read_json(path: str | os.PathLike, hint: str = "") -> Any:
    """The JSON document in `path`; CorruptFileError naming the file when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f" at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8 text"
        raise CorruptFileError(_hinted(f"{path}: not valid JSON ({reason}{where})", hint)) from None


def save_safetensors(tensors: Mapping[str, Tensor], path: str | os.PathLike) -> Path:
    """Write contiguous CPU tensors as a safetensors file, atomically (see `atomic_path`)."""
    with atomic_path(path, ".safetensors") as tmp:
        try:
            save_file(dict(tensors), str(tmp))
        except SafetensorError as err:
            if "I/O error" not in str(err):
                raise
            raise write_error(path, err) from None
    return Path(path)


def load_safetensors(path: str | os.PathLike, hint: str = "") -> dict[str, Tensor]:
    """Every tensor of a safetensors file, on the CPU; CorruptFileError naming the file when it is
    truncated, empty or not safetensors at all."""
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as err:
        raise CorruptFileError(_hinted(f"{path}: damaged or incomplete safetensors file ({err})", hint)) from None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in blocks (the checksums of CSVs, shards and videos)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(state: Mapping[str, Tensor]) -> str:
    """Hash of every entry (names, dtypes, shapes and bytes), in name order: the `sha256` of a manifest."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Component checkpoints

REDO_HINT = "train it again with `arlon-bench train` (or restore the file)"


def save_component(directory: str | os.PathLike, name: str, module: torch.nn.Module, manifest: dict) -> Path:
    """Write `<directory>/<name>.safetensors` (contiguous CPU tensors) and `<name>.json`, the manifest last:
    its presence marks a complete checkpoint."""
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_safetensors(state, directory / f"{name}.safetensors")
    atomic_write_json(directory / f"{name}.json", manifest)
    return directory / f"{name}.safetensors"


def read_manifest(directory: str | os.PathLike, name: str, hint: str = REDO_HINT) -> dict:
    path = Path(directory) / f"{name}.json"
    if not path.is_file():
        raise MissingWeightsError(f"{path}: checkpoint manifest not found")
    manifest = read_json(path, hint)
    if not isinstance(manifest, dict):
        raise CorruptFileError(_hinted(f"{path}: not a checkpoint manifest (expected a JSON object)", hint))
    return manifest


def read_component(directory: str | os.PathLike, name: str, hint: str = REDO_HINT) -> tuple[dict, dict[str, Tensor]]:
    """(manifest, weights) of `<directory>/<name>`, the weights checked against the manifest's sha256
    when it records one; CorruptFileError naming the damaged file otherwise."""
    path = Path(directory) / f"{name}.safetensors"
    if not path.is_file():
        raise MissingWeightsError(
            f"{path}: checkpoint not found; train it with `arlon-bench train` or point --checkpoint at a directory "
            f"holding {name}.safetensors"
        )
    manifest = read_manifest(directory, name, hint)
    state = load_safetensors(path, hint)
    recorded = manifest.get("sha256")
    if recorded is not None and tensors_sha256(state) != recorded:
        raise CorruptFileError(_hinted(f"{path}: the weights do not match the sha256 its manifest {name}.json records", hint))
    return manifest, state


def load_component(directory: str | os.PathLike, name: str, module: torch.nn.Module, hint: str = REDO_HINT) -> dict:
    """Load `<directory>/<name>.safetensors` into `module` strictly; return its manifest."""
    manifest, state = read_component(directory, name, hint)
    check_state_dict(module.state_dict(), state, source=str(Path(directory) / f"{name}.safetensors"))
    module.load_state_dict(state, strict=True)
    return manifest


def check_checkpoint_dir(directory: str | os.PathLike, what: str = "--checkpoint") -> Path:
    """`directory` if it is a folder, else one MissingWeightsError saying what it is instead."""
    path = Path(directory).expanduser()
    if path.is_dir():
        return path
    if path.is_symlink():
        problem = f"is a symbolic link to {os.path.realpath(path)}, which does not exist"
    elif path.exists():
        problem = "is a file, not a folder"
    else:
        problem = "does not exist"
    raise MissingWeightsError(
        f"{what} {path} {problem}; give the folder written by `arlon-bench train --all --out DIR`"
    )


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
