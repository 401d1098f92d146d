"""Checkpoints shipped inside the package: the tiny preset's trained stages.

`arlon-bench train --preset tiny --all` trained them on two CPU cores; each `<stage>.json` manifest
records the recipe, the data seed, the held-out metrics and the stage's cache key. With them a fresh
install samples and runs ablations without training the shared stages: `build_components` loads
them when no checkpoint directory is given, and `TrainingSession` takes a shipped stage as cached
when its key matches (same config, recipe, data and upstream weights), so only what differs (an
ablation cell's injector) is trained.

Beside the preset's own stages, `variants/<stage>-<key>/` holds checkpoints of the same stage for
other configs: the injectors of the README's main command (`ablate --grid layers`), so that its cold
run trains nothing. `arlon-bench train --preset tiny --all` trains them too.

To re-create them: `arlon-bench train --preset tiny --all --no-shipped --out DIR` with an empty
cache (ARLON_CACHE_DIR pointing at a new directory), then compare DIR's manifests with these
(without --no-shipped the training cache takes these very files as its own).
"""

from __future__ import annotations

from pathlib import Path

from arlon.checkpoints.io import read_component, read_manifest

BUNDLED_DIRS = {"tiny": Path(__file__).parent / "tiny"}
VARIANTS_DIR = "variants"
# A damaged shipped file is the installation's, not a cache entry to recompute.
DAMAGED_HINT = (
    "the package's shipped checkpoint is damaged: reinstall arlon-bench (in a clone: `git checkout arlon/weights/`)"
)


def bundled_checkpoint_dir(preset: str) -> Path | None:
    """The directory of the preset's shipped checkpoints, or None when the package has none."""
    directory = BUNDLED_DIRS.get(preset)
    if directory is None or not any(directory.glob("*.safetensors")):
        return None
    return directory


def variant_dir(root: Path, stage: str, key: str) -> Path:
    """Where a directory of shipped checkpoints keeps the checkpoint of `stage` for another config."""
    return root / VARIANTS_DIR / f"{stage}-{key}"


def bundled_stage(preset: str, stage: str, key: str) -> tuple[Path, dict] | None:
    """(directory, manifest) of a shipped checkpoint of `stage` whose cache key is `key` (the preset's
    own, or a variant), if any; its weights are checked against the manifest's hash (CorruptFileError
    naming the file when damaged)."""
    root = bundled_checkpoint_dir(preset)
    if root is None:
        return None
    for directory in (root, variant_dir(root, stage, key)):
        if not (directory / f"{stage}.json").is_file() or not (directory / f"{stage}.safetensors").is_file():
            continue
        if read_manifest(directory, stage, DAMAGED_HINT).get("key") != key:
            continue
        manifest, _ = read_component(directory, stage, DAMAGED_HINT)
        return directory, manifest
    return None
