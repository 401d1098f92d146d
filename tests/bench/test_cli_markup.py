"""User text is never read as rich markup: grid paths, descriptions, cell labels, prompts, `--set`
values and run folders holding `[/x]` (a closing tag rich cannot match), `[bold]` (a style) and
`[values]` (a word rich would drop) print verbatim through the real entry point, in every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from arlon.data.video_io import write_video
from bench.cli import app as app_module
from bench.cli import grids as grids_command
from bench.cli.progress import task_bars
from bench.cli.tables import failures_rich_table
from bench.executors.work import UnitFailure, seed_for
from bench.grids import load_grid
from bench.prompts import load_prompts
from bench.store import RunStore, file_sha256
from tests.bench.cli_runner import run_main
from tests.bench.metrics.fake_run import pattern_video
from tests.bench.mini_run import MINI_GRID

MARKUP = "[/x] [bold] [values]"
LABELS = (f"base {MARKUP}", f"[values] arlon [/x]")
PROMPTS = (f"a red circle moves from left to right {MARKUP}", "a blue square [bold]stays[/x] in the centre")
DESCRIPTION = f"a {MARKUP} grid"


def _grid_text(prompts_file: str) -> str:
    """The mini grid (tests/bench/mini_run.py) with marked-up labels, description and a text prompt file."""
    text = MINI_GRID.format(layers="[first:1]", prompts=1, samples=1)
    head, _, _ = text.partition("rows:\n")
    return head + (
        f"description: '{DESCRIPTION}'\n"
        "rows:\n"
        f"  - {{name: '{LABELS[0]}', baseline: true}}\n"
        f"  - {{name: '{LABELS[1]}', injection.layers: 'first:1'}}\n"
        f"prompts: {{kind: text, path: {prompts_file}}}\n"
        "samples_per_prompt: 1\n"
        "seed: 0\n"
        "metrics: [temporal_flickering_formula]\n"
    )


@pytest.fixture
def marked_run(tmp_path) -> tuple[Path, Path]:
    """(grid file in a folder named with markup, a run folder named with markup holding one video per
    cell and prompt): everything `ablate` needs but the scores, so it runs in seconds."""
    folder = tmp_path / f"grids {MARKUP}"  # "[/x]" makes it two folders, "grids [" and "x] [bold] [values]"
    folder.mkdir(parents=True)
    (folder / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    path = folder / "marked.yaml"
    path.write_text(_grid_text("prompts.txt"))
    grid = load_grid(path)
    assert [cell.label for cell in grid.cells] == list(LABELS)
    store = RunStore(tmp_path / f"run {MARKUP}")
    store.save_grid(grid, None)
    for c, cell in enumerate(grid.cells):
        store.save_cell(cell)
        for p, prompt in enumerate(load_prompts(grid.prompts)):
            video = f"{prompt.id}-0"
            written = write_video(store.video_path(cell.id, video), pattern_video(10 * c + p), fps=8)
            store.write_video_record(cell.id, video, {
                "video": video, "prompt_id": prompt.id, "prompt": prompt.text, "sample": 0,
                "seed": seed_for(prompt.id, 0, grid.seed), "fps": 8, "sha256": file_sha256(written),
            })
    return path, store.root


def _shows_labels(out: str) -> None:
    for label in LABELS:
        assert label in out


def test_grid_run_commands_print_marked_up_user_text_verbatim(marked_run, monkeypatch, capsys):
    grid, run = marked_run
    monkeypatch.setenv("COLUMNS", "200")

    code, out, err = run_main(capsys, monkeypatch, "validate", str(grid))
    assert code == 0, err
    assert f"{grid}: ok, 2 cells: {LABELS[0]}, {LABELS[1]}" in out

    code, out, err = run_main(capsys, monkeypatch, "ablate", "--grid", str(grid), "--out", str(run), "--executor", "local")
    assert code == 0, err
    assert f"grid mini: 2 cells, text prompts, 1 video(s) each -> {run}" in out
    _shows_labels(out)
    assert f"wrote {run / 'results.md'}" in out and "MarkupError" not in out + err

    code, out, err = run_main(capsys, monkeypatch, "status", str(run))
    assert code == 0, err
    _shows_labels(out)
    assert "score: 4/4 scores" in out

    code, out, err = run_main(capsys, monkeypatch, "report", str(run), "--videos", "0")
    assert code == 0, err
    _shows_labels(out)
    assert f"report: {run / 'report' / 'report.html'}" in out


def test_validate_prints_problems_holding_markup_verbatim(marked_run, monkeypatch, capsys):
    grid, _ = marked_run
    for value in ("injection.fusion=[values]", "injection.layers=[/x]"):
        code, _, err = run_main(capsys, monkeypatch, "validate", str(grid), "--set", value)
        assert code == 2
        assert err.startswith(f"error: --set {value}: ") and err.strip().endswith(f"problem(s) in {grid}")


def test_grids_prints_descriptions_and_labels_verbatim(marked_run, monkeypatch, capsys):
    grid, _ = marked_run
    monkeypatch.setattr(grids_command, "shipped_grids", lambda: {"marked": grid})
    code, out, err = run_main(capsys, monkeypatch, "grids")
    assert code == 0, err
    assert f"marked  {DESCRIPTION}" in out
    assert f"2 cells: {LABELS[0]}, {LABELS[1]}" in out


def test_sample_with_a_marked_up_prompt_and_out_path(tmp_path, monkeypatch, capsys):
    out_path = tmp_path / f"video {MARKUP}.mp4"
    code, out, err = run_main(
        capsys, monkeypatch, "sample", "--random-init", "--steps", "1", "--set", "video.num_frames=4",
        "--prompt", PROMPTS[0], "--out", str(out_path),
    )
    assert code == 0, err
    assert out_path.is_file()
    assert f"wrote {out_path} (" in out and "note: --random-init" in out


def test_tables_and_bars_hold_markup_on_any_console():
    """The tables are `Text` inside, so even a researcher's own markup-reading Console prints them."""
    console = Console(width=120, record=True, markup=True)
    failure = UnitFailure("generate", f"{LABELS[0]}: p0-0", f"ValueError: cannot read {MARKUP}")
    console.print(failures_rich_table([failure]))
    with task_bars(console) as progress:
        progress(f"train injector ({LABELS[1]})", 1, 4, 0.5)
    text = console.export_text()
    assert f"{LABELS[0]}: p0-0" in text and f"ValueError: cannot read {MARKUP}" in text
    assert f"train injector ({LABELS[1]})" in text


def test_help_texts_print_as_written(monkeypatch, capsys):
    """Typer reads help texts as rich markup: `[values]` in a docstring or an epilog would vanish."""
    info = next(command for command in app_module.app.registered_commands if command.name == "status")
    monkeypatch.setattr(info, "help", f"Show per cell what is done, e.g. --set metrics={MARKUP}.")
    monkeypatch.setattr(info, "epilog", f"Examples:\n\n  arlon-bench status runs/{MARKUP}\n")
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_main(capsys, monkeypatch, "status", "--help")
    assert code == 0
    assert f"--set metrics={MARKUP}." in out and f"arlon-bench status runs/{MARKUP}" in out
