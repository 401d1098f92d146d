from __future__ import annotations

import json

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.grids import GridError, find_grid, load_grid, parse_grid, shipped_grids, validate_grid
from bench.prompts import load_prompts

REFERENCE = Path(__file__).resolve().parents[2] / "reports" / "reference" / "table3_ablation.csv"
TOY_METRICS = [
    "toy_colour_fidelity", "toy_shape_accuracy", "toy_motion_accuracy", "toy_layout_iou",
    "toy_object_layout_iou", "toy_temporal_flicker", "toy_trajectory_error",
]


def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------
# Shipped grids
# ---------------------------------------------------------------------------------------------


PAPER_SCALE_GRIDS = {"table1", "table2", "table5"}  # the paper preset; tests/bench/test_long_runs.py has table1


def test_every_paper_axis_ships_as_a_grid():
    assert set(shipped_grids()) == {
        "layers", "fusion", "noise", "compression", "steps", "table3", "long", "data_size", *PAPER_SCALE_GRIDS
    }
    for name in set(shipped_grids()) - {"long"} - PAPER_SCALE_GRIDS:
        grid = load_grid(name)
        assert grid.preset == "tiny" and list(grid.metrics) == TOY_METRICS
        assert grid.prompts.kind == "toyworld" and grid.prompts.split == "heldout"


def test_paper_data_grids_name_what_they_need(monkeypatch, tmp_path):
    """table5: one cell per data set of the paper's Table 5, each training on its own CSV; table2: VBench's
    eleven dimensions of Table 2. Their prompts are VBench's own suite, read from the vbench package."""
    full_info = tmp_path / "lib" / "python3.11" / "site-packages" / "vbench" / "VBench_full_info.json"
    full_info.parent.mkdir(parents=True)
    dimensions = ["subject_consistency", "background_consistency", "motion_smoothness", "dynamic_degree",
                  "aesthetic_quality", "imaging_quality", "scene"]
    full_info.write_text(json.dumps([{"prompt_en": "a dog", "dimension": dimensions}, {"prompt_en": "a cat", "dimension": ["scene"]}]))
    monkeypatch.setenv("ARLON_VBENCH_ENV", str(tmp_path))
    table5 = load_grid("table5")
    assert table5.preset == "paper" and [c.label for c in table5.cells] == ["openvid_1m", "openvid_hq", "openvid_hq_mixkit"]
    assert [c.data.source for c in table5.cells] == ["data/openvid_1m.csv", "data/openvid_hq.csv", "data/openvid_hq_mixkit.csv"]
    from bench.preflight import missing_training_data

    assert len(missing_training_data(table5.cells)) == 3 and "cell openvid_hq" in missing_training_data(table5.cells)[1]
    table2 = load_grid("table2")
    assert len(table2.metrics) == 11 and table2.samples_per_prompt == 5
    assert [p.text for p in load_prompts(table2.prompts)] == ["a dog", "a cat"]
    assert [p.text for p in load_prompts(table5.prompts)] == ["a dog"]  # only the prompts of its six dimensions


def test_data_size_grid_varies_only_the_injectors_clips():
    grid = load_grid("data_size")
    injectors = [dict(c.recipes)["injector"].num_clips for c in grid.cells if not c.is_baseline]
    assert injectors == [512, 2048, 8192]
    layers_first14 = next(c for c in load_grid("layers").cells if c.label == "layers=first:14")
    assert grid.cells[1].id == layers_first14.id  # 2048 clips = the data as shipped: the shipped injector
    assert not any(c.is_baseline for c in grid.cells)  # so each cell is compared with the first, 512 clips


def test_shipped_grids_are_package_data():
    """bench/ablations links to the repository's ablations/, so an installed package finds them."""
    import bench

    packaged = Path(bench.__file__).parent / "ablations"
    repository = Path(__file__).resolve().parents[2] / "ablations"
    assert packaged.resolve() == repository.resolve()
    assert {p.stem for p in repository.glob("*.yaml") if not p.name.startswith("_")} == set(shipped_grids())


def test_layers_grid_cells():
    grid = load_grid("layers")
    assert [c.label for c in grid.cells] == ["baseline", "layers=first:3", "layers=first:8", "layers=first:14", "layers=last:14"]
    assert [c.is_baseline for c in grid.cells] == [True, False, False, False, False]
    assert [c.config.injection.layers for c in grid.cells[1:]] == ["first:3", "first:8", "first:14", "last:14"]
    assert {c.config.noise.strategy for c in grid.cells} == {"none"}
    assert len({c.id for c in grid.cells}) == 5


@pytest.mark.parametrize(
    "name, field, values",
    [
        ("fusion", "injection.fusion", ["adaptive_norm", "controlnet", "mlp_adapter"]),
        ("noise", "noise.strategy", ["none", "gaussian", "uncertainty", "uncertainty_mean_preserving"]),
        ("compression", "injection.condition_vq", ["ar", "dit"]),
    ],
)
def test_single_axis_grids(name, field, values):
    from arlon.config import get_field

    grid = load_grid(name)
    assert [get_field(c.config, field) for c in grid.cells] == values
    assert not any(c.is_baseline for c in grid.cells)


def test_steps_grid_crosses_arlon_and_baseline_with_step_counts():
    grid = load_grid("steps")
    cells = {(c.is_baseline, c.config.flow.num_sampling_steps) for c in grid.cells}
    assert cells == {(b, s) for b in (False, True) for s in (3, 5, 10, 20, 30)}
    assert len(grid.cells) == 10


def test_table3_grid_is_exactly_the_nine_rows_of_the_paper():
    with REFERENCE.open() as f:
        rows = list(csv.DictReader(f))
    grid = load_grid("table3")
    assert [c.label for c in grid.cells] == [r["row"] for r in rows]
    for cell, row in zip(grid.cells, rows):
        assert cell.is_baseline == (row["fusion"] == "none")
        if cell.is_baseline:
            continue
        cfg = cell.config
        assert cfg.injection.fusion == row["fusion"]
        assert cfg.injection.layers == f"first:{row['layers']}"
        # 4x8x8 is the AR model's own ratio; the other rows condition the DiT on the coarser one.
        assert cfg.injection.condition_vq == {"4x8x8": "ar", "4x16x16": "dit"}[row["dit_compression"]]
        noise = "gaussian" if row["gaussian_noise"] == "true" else "uncertainty" if row["uncertainty_sampling"] == "true" else "none"
        assert cfg.noise.strategy == noise


def test_cells_shared_between_grids_have_the_same_id():
    """A cell is its configuration: first:14 without noise is the same cell in four grids."""
    ids = {
        load_grid("layers").cells[3].id,
        load_grid("fusion").cells[0].id,
        load_grid("noise").cells[0].id,
        load_grid("compression").cells[1].id,
        load_grid("table3").cells[6].id,
    }
    assert len(ids) == 1


def test_unknown_grid_name_suggests_the_close_one():
    with pytest.raises(BenchError, match=r"unknown grid 'layer'; did you mean 'layers'\?"):
        find_grid("layer")
    with pytest.raises(BenchError, match="grid file 'missing.yaml' not found"):
        find_grid("missing.yaml")


# ---------------------------------------------------------------------------------------------
# Cell identity
# ---------------------------------------------------------------------------------------------

BASE = """\
preset: tiny
prompts: {kind: toyworld, n: 2}
metrics: [toy_colour_fidelity]
"""


def test_cell_id_ignores_label_order_and_spelling(tmp_path):
    a = load_grid(write(tmp_path, BASE + "axes:\n  injection.layers: [first:3, first:8]\n", "a.yaml"))
    b = load_grid(write(tmp_path, BASE + textwrap.dedent("""\
        rows:
          - {name: eight, injection: {layers: first:8}}
          - {name: three, injection.layers: "first:3"}
        """), "b.yaml"))
    assert [c.id for c in a.cells] == [c.id for c in reversed(b.cells)]
    assert [c.label for c in b.cells] == ["eight", "three"]


def test_cell_id_changes_with_config_recipe_data_and_baseline(tmp_path):
    base = load_grid(write(tmp_path, BASE, "base.yaml")).cells[0].id
    variants = [
        "base: {flow.cfg_scale: 5.0}\n",
        "train: {injector: {steps: 7}}\n",
        "data: {num_train_clips: 512}\n",
        "rows: [{baseline: true}]\n",
    ]
    ids = [load_grid(write(tmp_path, BASE + v, f"v{i}.yaml")).cells[0].id for i, v in enumerate(variants)]
    assert len({base, *ids}) == 5


def test_cell_id_is_stable_across_processes(tmp_path):
    path = write(tmp_path, BASE + "axes:\n  noise.strategy: [none, gaussian]\n")
    here = [c.id for c in load_grid(path).cells]
    code = f"from bench.grids import load_grid; print(' '.join(c.id for c in load_grid({str(path)!r}).cells))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": "", "OMP_NUM_THREADS": "1"}, cwd=Path(__file__).parents[2])
    assert other.stdout.split() == here


# ---------------------------------------------------------------------------------------------
# Grid features: include, --set, recipes, baseline axis
# ---------------------------------------------------------------------------------------------


def test_include_merges_and_the_including_file_wins(tmp_path):
    write(tmp_path, "preset: tiny\nprompts: {kind: toyworld, n: 5}\nseed: 3\nmetrics: [toy_colour_fidelity]\n", "_common.yaml")
    grid = load_grid(write(tmp_path, "include: _common.yaml\nprompts: {n: 2}\nbase: {injection.layers: first:8}\n"))
    assert grid.prompts.n == 2 and grid.prompts.kind == "toyworld" and grid.seed == 3
    assert grid.cells[0].config.injection.layers == "first:8"
    assert "include" not in grid.document and grid.document["name"] == "grid"


def test_set_overrides_the_base_but_axes_win(tmp_path):
    path = write(tmp_path, BASE + "axes:\n  injection.layers: [first:3, first:8]\n")
    grid = load_grid(path, ["flow.num_sampling_steps=4", "prompts.n=3", "seed=9", "train.injector.steps=5"])
    assert {c.config.flow.num_sampling_steps for c in grid.cells} == {4}
    assert grid.prompts.n == 3 and grid.seed == 9
    assert all(c.recipe("injector").steps == 5 for c in grid.cells)
    assert all(c.recipe("vae").steps != 5 for c in grid.cells)  # shared stages keep their recipes
    with pytest.raises(GridError, match=r"--set injection.layers=first:1: injection.layers is an axis of this grid"):
        load_grid(path, ["injection.layers=first:1"])


def test_train_all_applies_to_every_stage_before_stage_specific_fields(tmp_path):
    grid = load_grid(write(tmp_path, BASE + "train: {injector: {steps: 9}, all: {steps: 2, batch_size: 4}}\n"))
    recipes = dict(grid.cells[0].recipes)
    assert set(recipes) == {"vae", "ar_vq", "dit_vq", "ar", "backbone", "injector"}
    assert recipes["injector"].steps == 9 and recipes["vae"].steps == 2
    assert {r.batch_size for r in recipes.values()} == {4}


def test_parse_grid_from_a_mapping():
    grid = parse_grid({"preset": "tiny", "prompts": {"n": 1}, "axes": {"baseline": [False, True]}}, source="nb")
    assert [c.label for c in grid.cells] == ["arlon", "baseline"] and grid.name == "nb"


# ---------------------------------------------------------------------------------------------
# Validation: every error, with its location
# ---------------------------------------------------------------------------------------------


def test_validation_reports_every_error_with_file_and_line(tmp_path):
    path = write(tmp_path, """\
        preset: tiny
        promts: {kind: toyworld}
        base:
          injection.fusion: adaptive-norm
          video.num_frames: many
        axes:
          injection.layerz: [first:3]
        rows:
          - {name: r1, noise.strategy: uncertain}
        samples_per_prompt: 0
        metrics: [toy_colour_fidelity, toy_colour_fidelty]
        """)
    issues = [str(i) for i in validate_grid(path)]
    f = str(path)
    expected = [
        f"{f}:2: promts: unknown grid key 'promts'; did you mean 'prompts'?",
        f"{f}:10: samples_per_prompt: must be at least 1, got 0",
        f"{f}:11: metrics[1]: unknown metric 'toy_colour_fidelty'; did you mean 'toy_colour_fidelity'?",
        f"{f}:5: base.video.num_frames: expected an integer, got 'many'",
        f"{f}:7: axes.injection.layerz[0]: unknown field 'injection.layerz'; did you mean 'injection.layers'?",
        f"{f}:4: base.injection.fusion: injection.fusion: unknown fusion 'adaptive-norm'; did you mean 'adaptive_norm'?",
    ]
    for line in expected:
        assert any(issue.startswith(line) for issue in issues), (line, issues)
    with pytest.raises(GridError, match=r"\(\+\d+ more problems; see `arlon-bench validate FILE`\)"):
        load_grid(path)


def test_validation_of_registry_keys_prompts_and_duplicates(tmp_path):
    path = write(tmp_path, """\
        preset: tinyy
        """)
    assert [str(i) for i in validate_grid(path)] == [
        f"{path}:1: preset: unknown preset 'tinyy'; did you mean 'tiny'? (choices: paper, tiny)"
    ]
    path = write(tmp_path, """\
        preset: tiny
        prompts: {kind: csv, path: nowhere.csv}
        metrics: [toy_layout_iou]
        rows:
          - {name: a, injection.layers: first:8}
          - {name: b, injection.layers: first:8}
        """, "b.yaml")
    issues = [str(i) for i in validate_grid(path)]
    assert any(i.startswith(f"{path}:2: prompts: prompts.path") and "no such file" in i for i in issues), issues
    assert any(i.startswith(f"{path}:3: metrics[0]: toy_layout_iou judges toy-world scenes") for i in issues), issues
    assert any(i.startswith(f"{path}:6: rows[1]: cell 'b' has the same configuration as cell 'a'") for i in issues), issues


def test_yaml_syntax_and_include_errors_are_located(tmp_path):
    path = write(tmp_path, "preset: tiny\nbase: [unclosed\n")
    (issue,) = validate_grid(path)
    assert issue.source == str(path) and issue.line == 3 and "invalid YAML" in issue.message
    path = write(tmp_path, "include: missing.yaml\n", "inc.yaml")
    assert [str(i) for i in validate_grid(path)] == [f"{path}:1: include: missing.yaml: no such file beside inc.yaml"]


def test_errors_in_an_included_file_point_into_that_file(tmp_path):
    common = write(tmp_path, "preset: tiny\nbase:\n  noise.strategy: loud\n", "_common.yaml")
    path = write(tmp_path, "include: _common.yaml\n")
    issues = [str(i) for i in validate_grid(path)]
    assert any(i.startswith(f"{common}:3: base.noise.strategy: noise.strategy: unknown noise strategy") for i in issues), issues


def test_bad_set_options_are_reported_as_such(tmp_path):
    path = write(tmp_path, BASE)
    issues = [str(i) for i in validate_grid(path, ["video.num_frames=x", "noequals", "rows=3"])]
    assert "--set video.num_frames=x: expected an integer, got 'x'" in issues
    assert any(i.startswith("--set noequals: expected KEY=VALUE") for i in issues)
    assert any(i.startswith("--set rows=3: 'rows' is set in the grid file itself") for i in issues)


# ---------------------------------------------------------------------------------------------
# Inputs that must be refused, each at its line
# ---------------------------------------------------------------------------------------------


def test_values_out_of_range_are_refused_at_the_line_that_sets_them(tmp_path):
    path = write(tmp_path, """\
        preset: tiny
        train:
          injector: {steps: 0}
          all: {beta2: 1.0}
        data: {num_heldout_clips: 0, seed: -2}
        base:
          noise.probability: 2
          ar_sampling: {top_k: 0}
        axes:
          flow.num_sampling_steps: [0, 5]
        rows:
          - {name: r, video.fps: 0}
        prompts: {kind: toyworld, n: 2, seed: -1}
        seed: -5
        metrics: [toy_colour_fidelity]
        """)
    issues = [str(i) for i in validate_grid(path, ["train.vae.lr=0"])]
    f = str(path)
    expected = [
        "--set train.vae.lr=0: 0.0 is out of range: it must be greater than 0",
        f"{f}:3: train.injector.steps: 0 is out of range: it must be at least 1",
        f"{f}:4: train.all.beta2: 1.0 is out of range: it must be in [0, 1)",
        f"{f}:5: data.num_heldout_clips: 0 is out of range: it must be at least 1",
        f"{f}:5: data.seed: -2 is out of range: it must be at least 0",
        f"{f}:7: base.noise.probability: 2.0 is out of range: it must be in [0, 1]",
        f"{f}:8: base.ar_sampling.top_k: 0 is out of range: it must be at least 1",
        f"{f}:10: axes.flow.num_sampling_steps[0]: 0 is out of range: it must be at least 1",
        f"{f}:12: rows[0].video.fps: 0 is out of range: it must be at least 1",
        f"{f}:13: prompts.seed: -1 is out of range: it must be at least 0",
        f"{f}:14: seed: -5 is out of range: it must be at least 0",
    ]
    assert issues == expected


def test_a_grid_that_defines_nothing_is_refused_and_missing_parts_are_warned(tmp_path):
    for text in ("", "# nothing yet\n", "name: draft\ndescription: to do\n"):
        path = write(tmp_path, text, "empty.yaml")
        (issue,) = validate_grid(path)
        assert str(issue).startswith(f"{path}:1: the grid defines nothing to run: add metrics, prompts and rows or axes")
    grid = load_grid(write(tmp_path, "preset: tiny\n", "bare.yaml"))
    assert [w.message.split(":")[0] for w in grid.warnings] == ["no rows or axes", "no metrics", "no prompts block"]
    assert [c.label for c in grid.cells] == ["base"] and grid.metrics == ()
    assert load_grid(write(tmp_path, BASE + "rows: [{name: a}]\n", "full.yaml")).warnings == ()
    # table2 and table5 read VBench's prompt file from the VBench environment: a warning where it is not set up.
    for name in shipped_grids():
        warnings = load_grid(name).warnings
        assert all("vbench:VBench_full_info.json" in w.message for w in warnings) if name in ("table2", "table5") else warnings == ()


def test_prompt_fields_the_kind_does_not_read_are_refused(tmp_path):
    path = write(tmp_path, """\
        preset: tiny
        prompts: {kind: toyworld, path: my_prompts.txt, colum: text}
        metrics: [toy_colour_fidelity]
        """)
    issues = [str(i) for i in validate_grid(path)]
    assert issues == [
        f"{path}:2: prompts.path: kind 'toyworld' does not read it (it reads split, n and seed); did you mean kind 'vbench', 'csv' or 'text'?",
        f"{path}:2: prompts.colum: unknown field; did you mean 'column'? (kind 'toyworld' reads split, n and seed)",
    ]
    issues = [str(i) for i in validate_grid(write(tmp_path, BASE), ["prompts.path=p.txt"])]
    assert issues == ["--set prompts.path=p.txt: kind 'toyworld' does not read it (it reads split, n and seed); did you mean kind 'vbench', 'csv' or 'text'?"]


TOY_CAPTIONS = """\
a red circle moves from left to right on a dark background
A large blue square bouncing back and forth over a striped background.

on a light background, a green cross grows and a orange diamond turns cyan, while the camera pans right
"""


def test_a_text_file_of_toy_captions_gets_the_toy_judges(tmp_path):
    (tmp_path / "toy.txt").write_text(TOY_CAPTIONS)
    grid = load_grid(write(tmp_path, "preset: tiny\nprompts: {kind: text, path: toy.txt}\nmetrics: [toy_colour_fidelity, toy_motion_accuracy]\nrows: [{name: a}]\n"))
    from bench.prompts import load_prompts

    prompts = load_prompts(grid.prompts)
    assert [len(p.scene.objects) for p in prompts] == [1, 1, 2] and grid.warnings == ()
    # A line that is not a toy caption: one line naming it, at its line in the prompt file.
    (tmp_path / "toy.txt").write_text(TOY_CAPTIONS + "a red circle and a blue square move right on a dark background\n")
    issues = [str(i) for i in validate_grid(tmp_path / "grid.yaml")]
    assert issues == [
        f"{tmp_path / 'toy.txt'}:5: 'a red circle and a blue square move right on a dark background' is not a toy-world caption: "
        "after 'a red circle' expected 'moves', 'moving', 'slides', 'sliding', ..., not 'and'; the 2 toy_* metrics judge "
        "toy-world captions only: rephrase the line or drop the toy metrics"
    ]
    # Without toy metrics the same file is a plain prompt file.
    assert load_grid(write(tmp_path, "preset: tiny\nprompts: {kind: text, path: toy.txt}\nmetrics: [temporal_flickering_formula]\nrows: [{name: a}]\n", "plain.yaml"))


def test_prompts_with_words_the_model_does_not_know(tmp_path):
    (tmp_path / "p.txt").write_text("a red bear walks on a dark background\n\na bear walks through a snowy forest\n")
    path = write(tmp_path, "preset: tiny\nprompts: {kind: text, path: p.txt}\nmetrics: [temporal_flickering_formula]\nrows: [{name: a}]\n")
    (refused,) = validate_grid(path)
    assert (refused.source, refused.line) == (str(tmp_path / "p.txt"), 3)
    assert refused.message.startswith("prompt 'a bear walks through a snowy forest': preset 'tiny' knows no word of it")
    (tmp_path / "p.txt").write_text("a red bear walks on a dark background\n")
    (warning,) = load_grid(path).warnings
    assert str(warning) == f"{tmp_path / 'p.txt'}:1: prompt 'a red bear walks on a dark background': preset 'tiny' does not know 'bear', 'walks', so the video ignores them"
    # The check is the model's, not the prompt kind's: toy prompts cut short by a shorter text length warn too.
    short = load_grid(write(tmp_path, BASE + "rows: [{name: a}]\nbase: {text.max_length: 6}\n", "short.yaml"))
    assert short.warnings and all("drops" in w.message for w in short.warnings)
    # A model trained on other captions has no word list here: nothing to say.
    assert load_grid(path, ["data.source=clips.csv"]).warnings == ()
