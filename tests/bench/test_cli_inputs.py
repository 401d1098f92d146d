"""Inputs the CLI must refuse in one line (exit code 2, nothing written) or warn about, end to end
through the real entry point."""

from __future__ import annotations

import textwrap

import pytest

from tests.bench.cli_runner import run_main

GRID = """\
preset: tiny
rows: [{name: arlon}]
prompts: {kind: toyworld, n: 1}
metrics: [toy_colour_fidelity]
"""


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_ablate_refuses_an_untrained_injector_before_any_work(capsys, monkeypatch, tmp_path):
    grid = tmp_path / "zero.yaml"
    grid.write_text(GRID + "train: {injector: {steps: 0}}\n")
    code, out, err = run_main(capsys, monkeypatch, "ablate", "--grid", str(grid), "--out", str(tmp_path / "run"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {grid}:5: train.injector.steps: 0 is out of range: it must be at least 1"]
    assert not (tmp_path / "run").exists()
    code, _, err = run_main(capsys, monkeypatch, "validate", "layers", "--set", "train.injector.steps=0")
    assert code == 2 and "error: --set train.injector.steps=0: 0 is out of range: it must be at least 1" in err


def test_validate_reports_empty_grids_ignored_prompt_fields_and_warnings(capsys, monkeypatch, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, out, err = run_main(capsys, monkeypatch, "validate", str(empty))
    assert code == 2 and "the grid defines nothing to run" in err and "ok" not in out
    code, _, err = run_main(capsys, monkeypatch, "ablate", "--grid", str(empty), "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()

    ignored = tmp_path / "ignored.yaml"
    ignored.write_text(GRID.replace("{kind: toyworld, n: 1}", "{kind: toyworld, path: my_prompts.txt}"))
    code, out, err = run_main(capsys, monkeypatch, "validate", str(ignored))
    assert code == 2 and _error_lines(err) == [
        f"error: {ignored}:3: prompts.path: kind 'toyworld' does not read it (it reads split, n and seed); "
        "did you mean kind 'vbench', 'csv' or 'text'?"
    ]

    bare = tmp_path / "bare.yaml"
    bare.write_text("preset: tiny\n")
    code, out, err = run_main(capsys, monkeypatch, "validate", str(bare))
    assert code == 0 and f"{bare}: ok, 1 cells: base" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert [w.split(": ")[2] for w in warnings] == ["no rows or axes", "no metrics", "no prompts block"]


def test_validate_names_prompt_file_lines_the_toy_judges_or_the_model_cannot_read(capsys, monkeypatch, tmp_path):
    prompts = tmp_path / "mine.txt"
    prompts.write_text(textwrap.dedent("""\
        a red circle moves from left to right on a dark background
        a bear walks through a snowy forest
        a red bear walks on a dark background
        """))
    grid = tmp_path / "mine.yaml"
    grid.write_text("preset: tiny\nrows: [{name: arlon}]\nprompts: {kind: text, path: mine.txt}\nmetrics: [toy_motion_accuracy]\n")
    code, out, err = run_main(capsys, monkeypatch, "validate", str(grid))
    errors = _error_lines(err)
    assert code == 2 and len(errors) == 2
    assert errors[0].startswith(f"error: {prompts}:2: prompt 'a bear walks through a snowy forest': preset 'tiny' knows no word")
    assert errors[1].startswith(f"error: {prompts}:3: 'a red bear walks on a dark background' is not a toy-world caption: "
                                "after 'a red' expected a shape")
    prompts.write_text("a red circle moves from left to right on a dark background\na red circle rises, which is nice, over a dark background\n")
    grid.write_text(grid.read_text().replace("toy_motion_accuracy", "temporal_flickering_formula"))
    code, out, err = run_main(capsys, monkeypatch, "validate", str(grid))
    assert code == 0 and "ok, 1 cells" in out
    assert f"warning: {prompts}:2: prompt 'a red circle rises, which is nice, over a dark background': preset 'tiny' does not know 'which', 'is', 'nice'" in err


def test_sample_refuses_prompts_and_options_it_cannot_honour(capsys, monkeypatch, tmp_path):
    out = tmp_path / "v.mp4"
    cases = [
        (["--prompt", "a bear walks through a snowy forest"], "error: prompt 'a bear walks through a snowy forest': preset 'tiny' knows no word"),
        (["--prompt", "  "], "error: --prompt is empty"),
        (["--prompt", "a red circle rises on a dark background", "--steps", "0"], "error: --steps = 0 is out of range: it must be at least 1"),
        (["--prompt", "a red circle rises on a dark background", "--cfg-scale", "-1"], "error: --cfg-scale = -1.0 is out of range"),
        (["--prompt", "a red circle rises on a dark background", "--frames", "0"], "error: --frames = 0 is out of range"),
        (["--prompt", "a", "--prompt", "b", "--prompt", "c", "--frames", "2"], "error: --frames 2 cannot hold 3 prompts"),
        (["--prompt", "a red circle rises on a dark background", "--reference-video", "missing.mp4"], "error: --reference-video missing.mp4: no such file"),
        (["--prompt", "a red circle rises on a dark background", "--set", "noise.probability=1.5"], "error: noise.probability = 1.5 is out of range"),
    ]
    for args, message in cases:
        code, _, err = run_main(capsys, monkeypatch, "sample", *args, "--out", str(out))
        assert code == 2 and err.strip().splitlines() == [err.strip()] and err.startswith(message), (args, err)
        assert not out.exists()


def test_sample_warns_about_the_words_the_tiny_preset_does_not_know(capsys, monkeypatch, tmp_path):
    out = tmp_path / "v.mp4"
    code, stdout, err = run_main(
        capsys, monkeypatch, "sample", "--prompt", "a red circle slowly moves right on a dark background", "--baseline", "--steps", "1", "--out", str(out)
    )
    assert code == 0 and out.is_file() and "wrote" in stdout
    assert "warning: prompt 'a red circle slowly moves right on a dark background': preset 'tiny' does not know 'slowly', so the video ignores them" in err


def test_grid_warnings_print_one_line_each_and_say_where_the_rest_are(tmp_path):
    from rich.console import Console

    from bench.cli.grids import print_grid_warnings
    from bench.grids import load_grid

    path = tmp_path / "short.yaml"
    path.write_text(GRID.replace("n: 1", "n: 7") + "base: {text.max_length: 6}\n")
    grid = load_grid(path)
    console = Console(record=True, width=300)
    print_grid_warnings(console, grid, limit=5)
    lines = console.export_text().splitlines()
    assert len(grid.warnings) == 7 and len(lines) == 6
    assert all(line.startswith("warning: ") and "drops" in line for line in lines[:5])
    assert lines[5] == f"warning: 2 more; `arlon-bench validate {path}` lists every one"


def test_score_with_toy_metrics_the_grid_did_not_list_names_the_lines_they_cannot_judge(tmp_path):
    from bench.errors import BenchError
    from bench.grids import load_grid
    from bench.runner import run_grid
    from bench.store import RunStore

    prompts = tmp_path / "mine.txt"
    prompts.write_text("a red circle moves from left to right on a dark background\n"
                       "a red circle rises, which is nice, over a dark background\n")
    path = tmp_path / "mine.yaml"
    path.write_text("preset: tiny\nrows: [{name: arlon}]\nprompts: {kind: text, path: mine.txt}\nmetrics: [temporal_flickering_formula]\n")
    store = RunStore(tmp_path / "run")
    with pytest.raises(BenchError, match=f"{prompts}:2: .*toy-world captions only"):
        run_grid(load_grid(path), store, "local", phases=("score",), score_metrics=("toy_motion_accuracy",))
    assert not store.root.exists()  # refused before anything is written
