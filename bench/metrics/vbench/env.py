"""The isolated Python environment that runs the official VBench package.

VBench 0.1.5 pins transformers 4.33.2, numpy<2 and timm<=1.0.12, which clash with this project's
own dependencies, so it gets its own virtual environment, reached only through a subprocess and a
JSON contract (`worker.py`). `create_environment` builds it with `python -m venv` and pip:

    vbench==0.1.5   setuptools<81   torch==<this interpreter's torch>   torchvision==<its pair>

setuptools below 81 still ships `pkg_resources`, which openai-clip (and so pyiqa) imports; reusing
this machine's torch version means pip takes the wheel it already has (a local wheel folder or
pip's cache) and VBench's numbers come from the same torch as ours. `--torch VERSION` picks another
one: torchvision's compiled ops must match the torch build, and PyPI's torchvision wheels are built
against PyPI's (CUDA) torch, so on a machine whose torch is a CPU-only build (`+cpu`) without a CPU
torchvision in reach, give the environment a PyPI torch instead (`--torch 2.14.1`, or `--torch latest`).

Location: `--dir`, else `$ARLON_VBENCH_ENV`, else `~/.cache/arlon-bench/vbench-env`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from arlon.errors import ConfigError
from bench.errors import BenchError

ENV_VARIABLE = "ARLON_VBENCH_ENV"
DEFAULT_ENV_DIR = Path("~/.cache/arlon-bench/vbench-env")
VBENCH_VERSION = "0.1.5"
SETUPTOOLS_PIN = "setuptools<81"
# torch minor version -> the torchvision release built against it.
TORCHVISION_FOR_TORCH = {
    "2.5": "0.20", "2.6": "0.21", "2.7": "0.22", "2.8": "0.23", "2.9": "0.24",
    "2.10": "0.25", "2.11": "0.26", "2.12": "0.27", "2.13": "0.28", "2.14": "0.29",
}
WORKER = Path(__file__).with_name("worker.py")
SETUP_HINT = "run `arlon-bench vbench setup` (or point ARLON_VBENCH_ENV at an environment with vbench==0.1.5)"


def environment_dir(directory: str | os.PathLike | None = None) -> Path:
    return Path(directory or os.environ.get(ENV_VARIABLE) or DEFAULT_ENV_DIR).expanduser()


def environment_python(directory: str | os.PathLike | None = None) -> Path:
    """The environment's interpreter; BenchError with the fix when there is none."""
    root = environment_dir(directory)
    python = root / "bin" / "python"
    if not python.exists():
        raise BenchError(f"no VBench environment at {root}: {SETUP_HINT}")
    return python


def torch_requirements(torch_version: str | None = None) -> list[str]:
    """`torch==X.Y.Z` of this interpreter (local build tag dropped) and its torchvision; "latest":
    the newest pair pip finds (for a machine whose own torch has no torchvision build in reach)."""
    if torch_version == "latest":
        return ["torch", "torchvision"]
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    public = torch_version.split("+")[0]
    minor = ".".join(public.split(".")[:2])
    vision = TORCHVISION_FOR_TORCH.get(minor)
    if vision is None:
        raise ConfigError(
            f"no known torchvision release for torch {public}; known: {', '.join(TORCHVISION_FOR_TORCH)}"
        )
    return [f"torch=={public}", f"torchvision~={vision}.0"]


def install_requirements(torch_version: str | None = None) -> list[str]:
    return [f"vbench=={VBENCH_VERSION}", SETUPTOOLS_PIN, *torch_requirements(torch_version)]


def install_command(env_python: str, torch_version: str | None = None) -> list[str]:
    return [env_python, "-m", "pip", "install", *install_requirements(torch_version)]


@dataclass(frozen=True)
class SetupStep:
    what: str
    command: list[str]


def setup_steps(
    directory: str | os.PathLike | None = None, torch_version: str | None = None, python: str | None = None
) -> list[SetupStep]:
    """The commands `create_environment` runs, in order (shown by `vbench setup --dry-run`)."""
    root = environment_dir(directory)
    env_python = str(root / "bin" / "python")
    return [
        SetupStep("create the virtual environment", [python or sys.executable, "-m", "venv", str(root)]),
        SetupStep("upgrade pip", [env_python, "-m", "pip", "install", "--upgrade", "pip"]),
        SetupStep("install VBench and its pins", install_command(env_python, torch_version)),
        SetupStep("check that VBench imports", [env_python, str(WORKER), "--check"]),
    ]


def create_environment(
    directory: str | os.PathLike | None = None, torch_version: str | None = None, echo=print
) -> Path:
    """Run `setup_steps`; stops at the first failing step with its output. Returns the interpreter."""
    for step in setup_steps(directory, torch_version):
        echo(f"{step.what}: {' '.join(step.command)}")
        completed = subprocess.run(step.command, capture_output=True, text=True)
        if completed.returncode != 0:
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
            raise BenchError(f"VBench setup failed at '{step.what}' (exit {completed.returncode}):\n{tail}")
    return environment_python(directory)


def environment_report(directory: str | os.PathLike | None = None) -> dict:
    """{python, vbench, torch, ...} as the environment reports them (`worker.py --check`)."""
    python = environment_python(directory)
    completed = subprocess.run([str(python), str(WORKER), "--check"], capture_output=True, text=True)
    if completed.returncode != 0:
        tail = " ".join((completed.stdout + completed.stderr).split()[-40:])
        raise BenchError(f"the VBench environment at {environment_dir(directory)} is broken: {tail}; {SETUP_HINT}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
