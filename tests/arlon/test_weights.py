"""The tiny preset's shipped checkpoints: found, loaded, and recognised by the training cache."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from arlon.pipelines.arlon import ArlonPipeline
from arlon.pipelines.components import TRAINED_COMPONENTS, build_components
from arlon.presets import tiny
from arlon.training.cache import TrainingSession, state_dict_sha256
from arlon.training.stages import stages_for
from arlon.weights import bundled_checkpoint_dir

SHIPPED = bundled_checkpoint_dir("tiny")
pytestmark = pytest.mark.skipif(SHIPPED is None, reason="this checkout ships no tiny checkpoints (arlon/weights/tiny/)")


def test_every_component_is_shipped_with_its_manifest():
    for name in TRAINED_COMPONENTS:
        manifest = json.loads((SHIPPED / f"{name}.json").read_text())
        assert manifest["preset"] == "tiny" and manifest["stage"] == name and manifest["step"] > 0
        assert "loss_final" in manifest["metrics"] and len(manifest["key"]) == 16
    assert json.loads((SHIPPED / "vae.json").read_text())["metrics"]["heldout_psnr_db"] > 28


def test_the_training_cache_recognises_the_shipped_stages(tmp_path):
    """Same config, recipe, data and upstream weights give the shipped keys: nothing is retrained.

    If this fails, a recipe or config of the tiny preset changed: retrain with
    `ARLON_CACHE_DIR=$(mktemp -d) arlon-bench train --preset tiny --all --out arlon/weights/tiny`.
    """
    session = TrainingSession(tiny(), cache_dir=tmp_path / "empty", device="cpu")
    for stage in stages_for(tiny()):
        done = session.ensure(stage)
        assert done.cached and done.steps_run == 0 and done.directory == SHIPPED, stage
    assert not (tmp_path / "empty").exists()  # nothing was trained or encoded


def test_sampling_without_a_checkpoint_uses_the_shipped_weights():
    components = build_components(tiny())
    shipped = json.loads((SHIPPED / "injector.json").read_text())["sha256"]
    assert state_dict_sha256(components.injector) == shipped
    out = ArlonPipeline(components)(["a red circle moves right"], seed=0, num_steps=2)
    assert out.frames.shape == (1, 16, 32, 32, 3) and out.frames.std() > 5  # not a blank video
    assert torch.isfinite(out.latents).all()


def test_a_damaged_shipped_checkpoint_is_one_error_naming_the_file(tmp_path, monkeypatch):
    """Not a cache entry to recompute: the training cache and build_components both refuse it, naming it."""
    from arlon import weights
    from arlon.errors import CorruptFileError

    shipped = shutil.copytree(SHIPPED, tmp_path / "shipped")
    monkeypatch.setitem(weights.BUNDLED_DIRS, "tiny", shipped)
    manifest = shipped / "dit_vq.json"
    manifest.write_text(manifest.read_text()[:-30])
    with pytest.raises(CorruptFileError, match=rf"^{manifest}: not valid JSON .*reinstall arlon-bench"):
        TrainingSession(tiny(), cache_dir=tmp_path / "cache", device="cpu").ensure("dit_vq")
    with pytest.raises(CorruptFileError, match=rf"^{manifest}: not valid JSON .*reinstall arlon-bench"):
        build_components(tiny())
    assert manifest.is_file() and not (tmp_path / "cache").exists()  # the package's file is left where it is

    shutil.copy(SHIPPED / "dit_vq.json", manifest)
    (shipped / "vae.safetensors").write_bytes((SHIPPED / "vae.safetensors").read_bytes()[:4096])
    with pytest.raises(CorruptFileError, match=rf"^{shipped / 'vae.safetensors'}: damaged or incomplete .*reinstall"):
        TrainingSession(tiny(), cache_dir=tmp_path / "cache", device="cpu").ensure("dit_vq")
