"""`arlon-bench vbench doctor`: which VBench dimensions can run here, and what to do for the others.

Per dimension: every file it reads, present or missing, at the path VBench reads it from, with the
address to download it from (VBench's `init_submodules`), so a user can prepare an offline GPU node by copying
the listed files into place. `unavailable_reason` gives the one line the backend records for a
dimension that cannot run: "unavailable: <reason>, fix: <how>".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.metrics.vbench.dimensions import DIMENSIONS, Dimension, WeightFile, torch_hub_dir, vbench_cache_dir
from bench.metrics.vbench.env import SETUP_HINT, environment_dir


@dataclass(frozen=True)
class FileStatus:
    what: str
    expected: Path
    found: Path | None
    source: str

    @property
    def present(self) -> bool:
        return self.found is not None

    def to_dict(self) -> dict:
        return {"what": self.what, "expected": str(self.expected), "found": str(self.found) if self.found else None,
                "present": self.present, "source": self.source}


@dataclass(frozen=True)
class DimensionStatus:
    dimension: str
    files: tuple[FileStatus, ...]
    module_missing: str | None = None  # a Python module the environment lacks (detectron2)

    @property
    def available(self) -> bool:
        return self.module_missing is None and all(f.present for f in self.files)

    def unavailable_reason(self) -> str | None:
        """"unavailable: <reason>, fix: <how>" or None when the dimension can run."""
        if self.available:
            return None
        missing = [f for f in self.files if not f.present]
        if missing:
            first = missing[0]
            more = f" (and {len(missing) - 1} more file(s))" if len(missing) > 1 else ""
            return (f"unavailable: {first.what} missing at {first.expected}{more}, "
                    f"fix: get it from {first.source} (see `arlon-bench vbench doctor`)")
        return (f"unavailable: the VBench environment has no {self.module_missing} module, "
                f"fix: install {self.module_missing} into it (not on PyPI; see its install guide)")

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "available": self.available, "reason": self.unavailable_reason(),
                "module_missing": self.module_missing, "files": [f.to_dict() for f in self.files]}


def _module_installed(module: str, env_dir: Path) -> bool:
    return any(env_dir.glob(f"lib/python*/site-packages/{module}")) or any(
        env_dir.glob(f"lib/python*/site-packages/{module}-*.dist-info")
    )


def file_status(weight: WeightFile) -> FileStatus:
    return FileStatus(weight.what, weight.location(), weight.found(), weight.source)


def dimension_status(dimension: Dimension, env_dir: Path | None = None) -> DimensionStatus:
    files = tuple(file_status(w) for w in dimension.weights)
    module_missing = None
    if dimension.needs_module is not None and not _module_installed(dimension.needs_module, env_dir or environment_dir()):
        module_missing = dimension.needs_module
    return DimensionStatus(dimension.name, files, module_missing)


def check_dimensions(names: list[str] | None = None, env_dir: str | os.PathLike | None = None) -> list[DimensionStatus]:
    chosen = list(DIMENSIONS) if names is None else names
    root = environment_dir(env_dir)
    return [dimension_status(DIMENSIONS[name], root) for name in chosen]


@dataclass(frozen=True)
class DoctorReport:
    environment: Path
    environment_ready: bool
    vbench_cache: Path
    torch_hub: Path
    dimensions: list[DimensionStatus]

    @property
    def ok(self) -> bool:
        return self.environment_ready and all(d.available for d in self.dimensions)

    def to_dict(self) -> dict:
        return {
            "environment": str(self.environment), "environment_ready": self.environment_ready,
            "environment_fix": None if self.environment_ready else SETUP_HINT,
            "vbench_cache": str(self.vbench_cache), "torch_hub": str(self.torch_hub), "ok": self.ok,
            "dimensions": [d.to_dict() for d in self.dimensions],
        }


def doctor(names: list[str] | None = None, env_dir: str | os.PathLike | None = None) -> DoctorReport:
    root = environment_dir(env_dir)
    return DoctorReport(
        root, (root / "bin" / "python").exists(), vbench_cache_dir(), torch_hub_dir(), check_dimensions(names, root)
    )
