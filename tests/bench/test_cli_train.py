from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from bench.cli.app import app, main

runner = CliRunner()
SMALL = ["--set", "data.num_train_clips=8", "--set", "data.num_heldout_clips=2", "--set", "video.num_frames=4",
         "--set", "video.height=16", "--set", "video.width=16", "--set", "train.batch_size=4"]


def test_train_vae_writes_a_manifest_then_reuses_it(tmp_path):
    env = {"ARLON_CACHE_DIR": str(tmp_path)}
    result = runner.invoke(app, ["train", "--stage", "vae", "--steps", "2", *SMALL], env=env)
    assert result.exit_code == 0, result.output
    assert "vae: trained 2 steps" in result.output
    manifests = list((tmp_path / "stages" / "vae").glob("*/vae.json"))
    assert len(manifests) == 1 and (manifests[0].parent / "vae.safetensors").is_file()
    manifest = json.loads(manifests[0].read_text())
    assert manifest["step"] == 2 and manifest["train"]["batch_size"] == 4 and manifest["config"]["video"]["num_frames"] == 4
    assert "heldout_psnr_db" in manifest["metrics"]

    again = runner.invoke(app, ["train", "--stage", "vae", "--steps", "2", *SMALL], env=env)
    assert again.exit_code == 0 and "vae: cached" in again.output


def _main(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """Run the real entry point (its error boundary included) in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["arlon-bench", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_user_errors_are_one_line_exit_2(capsys, monkeypatch):
    code, err = _main(capsys, monkeypatch, "train", "--stage", "vea")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: unknown training stage 'vea'; did you mean 'vae'? (choices: vae, ar_vq, dit_vq, ar, backbone, injector)"
    ]
    code, err = _main(capsys, monkeypatch, "train")
    assert code == 2 and "give --stage NAME" in err
    code, err = _main(capsys, monkeypatch, "train", "--stage", "vae", "--set", "train.stepz=3")
    assert code == 2 and "unknown config field 'train.stepz'" in err


def test_recipe_overrides_change_only_the_stages_asked_for():
    from arlon.presets import tiny
    from arlon.training import default_train_config
    from bench.cli.train import stage_recipes

    cfg = tiny()
    recipes = stage_recipes(cfg, ["backbone"], ["train.steps=7", "train.lr=3e-3"])
    assert set(recipes) == {"backbone"}  # the VAE it depends on keeps its default recipe and cache key
    assert recipes["backbone"].steps == 7 and recipes["backbone"].lr == 0.003
    assert recipes["backbone"].batch_size == default_train_config("backbone", cfg).batch_size


@pytest.mark.slow
def test_train_all_with_two_worker_processes_then_everything_is_cached(tmp_path):
    env = {"ARLON_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    args = ["train", "--all", "--steps", "2", *SMALL, "--executor", "processes", "--workers", "2", "--out", str(tmp_path / "ckpt")]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    for stage in ("vae", "ar_vq", "dit_vq", "ar", "backbone", "injector"):
        assert f"{stage}: trained 2 steps (recipe full) in" in result.output
        assert (tmp_path / "ckpt" / f"{stage}.safetensors").is_file()
    assert "train injector" in result.output and "loss " in result.output  # the workers' step bars, with the loss

    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    cached = [line.split(":")[0] for line in again.output.splitlines() if ": cached, 2 steps (recipe full), loss" in line]
    assert cached == ["vae", "ar_vq", "dit_vq", "ar", "backbone", "injector"]


def test_a_stage_that_fails_in_a_worker_is_one_line_and_exit_1(tmp_path):
    env = {"ARLON_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    unreadable = tmp_path / "clips.csv"  # a CSV (so the CLI lets it through) without a video path column
    unreadable.write_text("name,caption\nx,a red circle\n")
    result = runner.invoke(app, ["train", "--stage", "vae", "--steps", "2", *SMALL, "--data", str(unreadable), "--executor", "processes"], env=env)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: vae: ") and str(unreadable) in errors[0]
    assert "Traceback" not in result.output


def test_no_shipped_trains_a_stage_the_package_ships(tmp_path, monkeypatch):
    """The cache takes a shipped checkpoint with the same key as its own; use_shipped=False trains it."""
    from arlon.presets import tiny
    from arlon.training import TrainingSession
    from arlon.weights import bundled_checkpoint_dir

    shipped = TrainingSession(tiny(), cache_dir=tmp_path).ensure("vae")
    assert shipped.cached and shipped.directory == bundled_checkpoint_dir("tiny")

    class WouldTrain(Exception):
        pass

    def train(self, stage, *args):
        raise WouldTrain(stage)

    monkeypatch.setattr(TrainingSession, "_train", train)
    with pytest.raises(WouldTrain, match="vae"):
        TrainingSession(tiny(), cache_dir=tmp_path, use_shipped=False).ensure("vae")


def test_named_recipes_pick_their_settings_and_manifests_name_them(tmp_path, capsys, monkeypatch):
    """`--recipe quick` trains the quick recipe's settings (the AR on the fixed pool), the default
    `full` recipe streams fresh clips to the AR, each manifest says which; an unknown one is one line."""
    from arlon.presets import tiny
    from arlon.training import default_train_config

    full, quick = default_train_config("ar", tiny()), default_train_config("ar", tiny(), "quick")
    assert (full.recipe, quick.recipe) == ("full", "quick")
    assert full.fresh_clips and not quick.fresh_clips and full.steps > quick.steps
    assert default_train_config("vae", tiny(), "quick").recipe == "quick"

    env = {"ARLON_CACHE_DIR": str(tmp_path)}
    result = runner.invoke(app, ["train", "--stage", "vae", "--recipe", "quick", "--steps", "1", *SMALL], env=env)
    assert result.exit_code == 0, result.output
    assert "vae: trained 1 steps (recipe quick)" in result.output
    manifest = json.loads(next((tmp_path / "stages" / "vae").glob("*/vae.json")).read_text())
    assert manifest["train"]["recipe"] == "quick" and manifest["train"]["fresh_clips"] is False

    code, err = _main(capsys, monkeypatch, "train", "--all", "--recipe", "slow")
    assert code == 2 and err.strip().splitlines() == ["error: preset 'tiny' has no recipe 'slow' (choices: full, quick)"]


def test_fresh_clips_stream_the_toy_world_and_leave_a_csv_a_pool(tmp_path):
    import dataclasses

    from arlon.presets import tiny
    from arlon.training import DataConfig, TrainingSession, default_train_config

    recipe = default_train_config("ar", tiny())
    toy = TrainingSession(tiny(), cache_dir=tmp_path, device="cpu")
    assert toy.streams(recipe) and not toy.streams(dataclasses.replace(recipe, fresh_clips=False))
    csv = TrainingSession(tiny(), data=DataConfig(source=str(tmp_path / "clips.csv")), cache_dir=tmp_path, device="cpu")
    assert not csv.streams(recipe)


def test_grid_cells_injectors_train_in_the_same_plan_and_ship_as_variants(tmp_path, monkeypatch):
    """`injector_cells` train beside the config's own stages, sharing its backbone; gathered under
    `variants/`, the shipped-checkpoint lookup finds each by its cache key."""
    import dataclasses

    from arlon import weights
    from arlon.presets import tiny
    from arlon.training import DataConfig, TrainingSession, default_train_config, stages_for
    from bench.grids import Cell
    from bench.overrides import apply_overrides
    from bench.runner import train_stages

    cfg = apply_overrides(tiny(), ["video.num_frames=4", "video.height=16", "video.width=16"])
    data = DataConfig(num_train_clips=8, num_heldout_clips=2)
    recipes = {s: dataclasses.replace(default_train_config(s, cfg), steps=2, batch_size=4) for s in stages_for(cfg)}
    other = apply_overrides(cfg, ["injection.layers=first:3"])
    cell = Cell("layers=first:3", other, False, tuple(recipes.items()), data)
    cached, failures = train_stages(cfg, ["injector"], recipes, data, cache_dir=tmp_path / "cache", injector_cells=[cell])
    assert not failures
    assert {"vae", "dit_vq", "backbone", "injector", "injector (layers=first:3)"} <= set(cached)
    assert "injector (layers=first:3)" in cached and list(cached).count("backbone") == 1  # one backbone for both

    monkeypatch.setenv("ARLON_CACHE_DIR", str(tmp_path / "cache"))
    own = TrainingSession(cfg, data=data, train=recipes)
    variant = TrainingSession(other, data=data, train=recipes)
    shipped = own.checkpoint_dir(tmp_path / "shipped")
    where = variant.gather_variant("injector", shipped)
    key = variant.ensure("injector").key
    assert where == shipped / "variants" / f"injector-{key}" and key != own.ensure("injector").key
    monkeypatch.setitem(weights.BUNDLED_DIRS, "tiny", shipped)
    assert weights.bundled_stage("tiny", "injector", key)[0] == where
    assert weights.bundled_stage("tiny", "injector", own.ensure("injector").key)[0] == shipped
    assert weights.bundled_stage("tiny", "injector", "0" * 16) is None


def test_the_main_grids_injectors_ship_with_the_tiny_preset(tmp_path):
    """The README's main command trains nothing cold: every injector of its grid is a shipped variant.

    If this fails, the layers grid or the injector recipe changed: retrain with
    `ARLON_CACHE_DIR=$(mktemp -d) arlon-bench train --preset tiny --all --out arlon/weights/tiny`.
    """
    from arlon.training import TrainingSession
    from arlon.weights import bundled_checkpoint_dir
    from bench.cli.train import main_grid_injector_cells

    cells = main_grid_injector_cells("tiny")
    assert [cell.label for cell in cells] == ["layers=first:3", "layers=first:8", "layers=first:14", "layers=last:14"]
    assert main_grid_injector_cells("paper") == []
    for cell in cells:
        done = TrainingSession(cell.config, data=cell.data, train=dict(cell.recipes), cache_dir=tmp_path / "empty").ensure("injector")
        assert done.cached and done.directory.parent == bundled_checkpoint_dir("tiny") / "variants", cell.label
    assert not (tmp_path / "empty").exists()


def test_prepare_writes_shards_at_every_bucket_length_and_resumes(tmp_path):
    """`arlon-bench prepare` with the shipped tiny VAE: toy clips of 8, 12 and 16 frames, then the same again."""
    env = {"ARLON_CACHE_DIR": str(tmp_path / "cache")}
    args = ["prepare", "--out", str(tmp_path / "shards"), "--clips", "24", "--min-frames", "8", "--max-frames", "16",
            "--shard-size", "8", "--set", "data.num_heldout_clips=4"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "24 clips in 3 shards (3 encoded now), 0 skipped; lengths 8, 12, 16 frames" in result.output
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["spec"]["buckets"] == [8, 12, 16] and len(index["shards"]) == 3
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0 and "(0 encoded now)" in again.output


def test_prepare_user_errors_are_one_line(capsys, monkeypatch, tmp_path):
    code, err = _main(capsys, monkeypatch, "prepare", "--out", str(tmp_path), "--dtype", "float8")
    assert code == 2 and err.strip() == "error: --dtype 'float8': choose float32 or bfloat16"
    code, err = _main(capsys, monkeypatch, "prepare", "--out", str(tmp_path), "--min-frames", "30", "--max-frames", "20")
    assert code == 2 and "data.min_frames (30) must be at least 1 and at most data.max_frames (20)" in err
    code, err = _main(capsys, monkeypatch, "train", "--stage", "injector", "--data", str(tmp_path / "nothing.csv"))
    assert code == 2 and err.strip().startswith(f"error: --data '{tmp_path / 'nothing.csv'}': no such file; give 'toyworld'")
