from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from arlon.errors import ConfigError
from arlon.pipelines.components import build_components
from arlon.presets import paper
from arlon.training.cache import TrainingSession, cache_root, ensure_trained, state_dict_sha256
from arlon.training.stages import stage_dependencies, stages_for


def test_cache_root_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ARLON_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("ARLON_CACHE_DIR")
    assert cache_root().parts[-2:] == (".cache", "arlon-bench")
    assert cache_root(tmp_path / "x") == tmp_path / "x"


def test_second_call_reuses_the_checkpoint_and_trains_zero_steps(mini_cfg, mini_data, mini_recipes, cache_dir):
    recipes = mini_recipes(mini_cfg)
    first = ensure_trained("dit_vq", mini_cfg, data=mini_data, train=recipes, device="cpu")
    assert not first.cached and first.steps_run == 2
    weights = first.directory / "dit_vq.safetensors"
    written = weights.stat().st_mtime_ns

    second = ensure_trained("dit_vq", mini_cfg, data=mini_data, train=recipes, device="cpu")
    assert second.cached and second.steps_run == 0
    assert second.key == first.key and weights.stat().st_mtime_ns == written

    manifest = json.loads((first.directory / "dit_vq.json").read_text())
    assert manifest["step"] == 2 and manifest["data_seed"] == mini_data.seed
    assert manifest["config"]["dit_vq"]["compression"] == list(mini_cfg.dit_vq.compression)
    assert set(manifest["upstream"]) == {"vae"} and "loss_final" in manifest["metrics"]
    assert not (first.directory / "resume").exists() or not any((first.directory / "resume").iterdir())


def test_a_changed_config_gets_a_new_key_and_keeps_the_upstream(mini_cfg, mini_data, mini_recipes, cache_dir):
    recipes = mini_recipes(mini_cfg)
    session = TrainingSession(mini_cfg, data=mini_data, train=recipes, device="cpu")
    base = session.ensure("dit_vq")
    vae_key = session.trained["vae"].key

    changed_cfg = dataclasses.replace(mini_cfg, dit_vq=dataclasses.replace(mini_cfg.dit_vq, commitment_weight=0.5))
    changed = TrainingSession(changed_cfg, data=mini_data, train=recipes, device="cpu")
    assert changed.ensure("dit_vq").key != base.key
    assert changed.trained["vae"].cached and changed.trained["vae"].key == vae_key

    more_steps = {**recipes, "dit_vq": dataclasses.replace(recipes["dit_vq"], steps=3)}
    assert TrainingSession(mini_cfg, data=mini_data, train=more_steps, device="cpu").ensure("dit_vq").key != base.key
    other_data = dataclasses.replace(mini_data, seed=5)
    retrained = TrainingSession(mini_cfg, data=other_data, train=recipes, device="cpu").ensure("dit_vq")
    assert retrained.key != base.key and retrained.manifest["upstream"]["vae"] != base.manifest["upstream"]["vae"]


def test_all_stages_give_a_directory_build_components_loads(mini_cfg, mini_data, mini_recipes, cache_dir):
    session = TrainingSession(mini_cfg, data=mini_data, train=mini_recipes(mini_cfg, steps=1), device="cpu")
    directory = session.checkpoint_dir()
    assert sorted(session.trained) == sorted(stages_for(mini_cfg))
    components = build_components(mini_cfg, checkpoint_dir=directory)
    assert state_dict_sha256(components.injector) == session.trained["injector"].manifest["sha256"]
    assert session.trained["injector"].manifest["weights"] == "ema"
    # The VAE carries the latent normalisation measured after its training.
    assert not torch.equal(components.vae.scale, torch.ones_like(components.vae.scale))


def interrupted_ar_vq(mini_cfg, mini_data, mini_recipes) -> dict:
    """Train ar_vq for 4 steps with a resume state every 2, interrupted at step 3; the recipes used."""
    recipes = mini_recipes(mini_cfg, steps=4)
    recipes["ar_vq"] = dataclasses.replace(recipes["ar_vq"], checkpoint_every=2)

    def interrupt(task, done, total, loss):
        if task == "ar_vq" and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TrainingSession(mini_cfg, data=mini_data, train=recipes, device="cpu", progress=interrupt).ensure("ar_vq")
    return recipes


def test_interrupted_stage_resumes_when_run_again(mini_cfg, mini_data, mini_recipes, cache_dir):
    recipes = interrupted_ar_vq(mini_cfg, mini_data, mini_recipes)
    resumed = TrainingSession(mini_cfg, data=mini_data, train=recipes, device="cpu").ensure("ar_vq")
    assert not resumed.cached and resumed.steps_run == 1 and resumed.manifest["step"] == 4


def test_stage_dependencies_follow_the_config(mini_cfg):
    assert stage_dependencies("injector", mini_cfg) == ("backbone", "dit_vq")
    ar_condition = dataclasses.replace(mini_cfg, injection=dataclasses.replace(mini_cfg.injection, condition_vq="ar"))
    assert stage_dependencies("injector", ar_condition) == ("backbone", "ar_vq")
    opensora = dataclasses.replace(paper(), backbone=dataclasses.replace(paper().backbone, pretrained="stdit3/"))
    assert stages_for(opensora) == ["ar_vq", "dit_vq", "ar", "injector"]
    assert stage_dependencies("ar_vq", opensora) == () and stage_dependencies("injector", opensora) == ("dit_vq",)


def test_stages_the_config_does_not_train_are_errors(cache_dir):
    session = TrainingSession(paper(), device="cpu")
    with pytest.raises(ConfigError, match="stage 'vae' is not trained"):
        session.ensure("vae")
    with pytest.raises(ConfigError, match="did you mean 'backbone'"):
        session.ensure("backbon")
    with pytest.raises(ConfigError, match="train.steps is not set"):
        session.ensure("ar_vq")
    with pytest.raises(ConfigError, match="no training recipe for stage 'backbone'"):
        session.ensure("backbone")


def test_sampling_settings_do_not_change_what_the_injector_trains(mini_cfg):
    from arlon.training.stages import stage_configs

    fewer_steps = dataclasses.replace(mini_cfg, flow=dataclasses.replace(mini_cfg.flow, num_sampling_steps=3, cfg_scale=1.5))
    assert stage_configs("injector", fewer_steps) == stage_configs("injector", mini_cfg)
    shifted = dataclasses.replace(mini_cfg, flow=dataclasses.replace(mini_cfg.flow, use_timestep_transform=True))
    assert stage_configs("injector", shifted) != stage_configs("injector", mini_cfg)


def test_a_checkpoint_trained_for_another_config_is_refused(mini_cfg, mini_data, mini_recipes, cache_dir):
    from arlon.errors import CheckpointMismatchError

    directory = TrainingSession(mini_cfg, data=mini_data, train=mini_recipes(mini_cfg, steps=1), device="cpu").checkpoint_dir()
    # Same shapes, other placement: only the manifest can tell them apart.
    other_layers = dataclasses.replace(mini_cfg, injection=dataclasses.replace(mini_cfg.injection, layers="last:1"))
    with pytest.raises(CheckpointMismatchError, match=r"injection.layers='first:1' \(config: 'last:1'\)"):
        build_components(other_layers, checkpoint_dir=directory)
    other_noise = dataclasses.replace(mini_cfg, noise=dataclasses.replace(mini_cfg.noise, strategy="gaussian"))
    with pytest.raises(CheckpointMismatchError, match="noise.strategy"):
        build_components(other_noise, checkpoint_dir=directory)
    # Sampling settings and the video length are not part of what the weights were trained for.
    longer = dataclasses.replace(
        mini_cfg,
        flow=dataclasses.replace(mini_cfg.flow, num_sampling_steps=2),
        video=dataclasses.replace(mini_cfg.video, num_frames=8),
    )
    build_components(longer, checkpoint_dir=directory)


def test_shipped_checkpoints_with_the_same_key_are_not_retrained(mini_cfg, mini_data, mini_recipes, cache_dir, tmp_path, monkeypatch):
    from arlon import weights

    recipes = mini_recipes(mini_cfg, steps=1)
    shipped = tmp_path / "shipped"
    TrainingSession(mini_cfg, data=mini_data, train=recipes, device="cpu", cache_dir=tmp_path / "factory").checkpoint_dir(shipped)
    monkeypatch.setitem(weights.BUNDLED_DIRS, mini_cfg.name, shipped)

    session = TrainingSession(mini_cfg, data=mini_data, train=recipes, device="cpu")  # empty cache
    vae = session.ensure("vae")
    assert vae.cached and vae.steps_run == 0 and vae.directory == shipped
    # A different injector config trains only the injector, on the shipped upstream stages.
    cell = dataclasses.replace(mini_cfg, injection=dataclasses.replace(mini_cfg.injection, layers="last:1"))
    cell_session = TrainingSession(cell, data=mini_data, train=recipes, device="cpu")
    injector = cell_session.ensure("injector")
    assert not injector.cached and injector.directory.is_relative_to(cache_dir)
    assert all(cell_session.trained[name].directory == shipped for name in ("backbone", "dit_vq", "vae"))
    # Without a checkpoint directory, build_components loads the shipped ones.
    components = build_components(mini_cfg)
    assert state_dict_sha256(components.ar) == json.loads((shipped / "ar.json").read_text())["sha256"]


def _warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_damaged_cache_entries_are_named_moved_aside_and_computed_again(mini_cfg, mini_data, mini_recipes, cache_dir, caplog):
    recipes = mini_recipes(mini_cfg)
    first = ensure_trained("dit_vq", mini_cfg, data=mini_data, train=recipes, device="cpu")
    manifest, weights = first.directory / "dit_vq.json", first.directory / "dit_vq.safetensors"

    def damage_manifest():
        manifest.write_text(manifest.read_text()[:-30])

    def damage_weights():  # a valid file with one weight changed: only the manifest's hash can tell
        state = load_file(str(weights))
        state[sorted(state)[0]] += 1
        save_file(state, str(weights))

    for damage, damaged in ((damage_manifest, manifest), (damage_weights, weights)):
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = ensure_trained("dit_vq", mini_cfg, data=mini_data, train=recipes, device="cpu")
        assert not again.cached and again.steps_run == 2 and again.manifest["sha256"] == first.manifest["sha256"]
        (warning,) = _warnings(caplog)
        assert warning.startswith(f"warning: {damaged}: ") and warning.endswith("training dit_vq again")
        assert list(first.directory.glob(f"{damaged.name}.corrupt-*"))

    # The encoded latents are a cache too.
    pool = next((cache_dir / "latents").glob("*/latents.safetensors"))
    pool.write_bytes(b"")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        session = TrainingSession(mini_cfg, data=mini_data, train=recipes, device="cpu")
        latents = {split: session.pool(split).x.shape for split in ("train", "heldout")}
    assert latents["train"][0] == mini_data.num_train_clips and latents["heldout"][0] == mini_data.num_heldout_clips
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"warning: {pool}: damaged or incomplete safetensors file") and "encoding the clips again" in warning


def test_a_damaged_resume_state_is_moved_aside_and_the_stage_starts_over(mini_cfg, mini_data, mini_recipes, cache_dir, caplog):
    recipes = interrupted_ar_vq(mini_cfg, mini_data, mini_recipes)
    (state,) = cache_dir.glob("stages/ar_vq/*/resume/state-*.json")
    state.write_text("{")
    with caplog.at_level(logging.WARNING):
        resumed = TrainingSession(mini_cfg, data=mini_data, train=recipes, device="cpu").ensure("ar_vq")
    assert resumed.steps_run == 4 and resumed.manifest["step"] == 4  # from the start, not from step 3
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"warning: {state}: not valid JSON") and "resumes from an older state or the start" in warning
