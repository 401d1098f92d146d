from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from arlon.data.video_io import read_video
from bench.cli.app import app

runner = CliRunner()


def test_sample_writes_decodable_mp4(tmp_path):
    out = tmp_path / "video.mp4"
    result = runner.invoke(
        app, ["sample", "--preset", "tiny", "--random-init", "--prompt", "a red circle", "--out", str(out), "--steps", "2"]
    )
    assert result.exit_code == 0, result.output
    frames, fps = read_video(out)
    assert frames.shape == (16, 32, 32, 3)
    assert fps == 8
    assert "wrote" in result.output


def test_sample_overrides_frame_count(tmp_path):
    out = tmp_path / "v.mp4"
    result = runner.invoke(
        app,
        ["sample", "--random-init", "--prompt", "a cat", "--out", str(out), "--steps", "1", "--set", "video.num_frames=8"],
    )
    assert result.exit_code == 0, result.output
    assert read_video(out)[0].shape[0] == 8


def test_sample_long_progressive_baseline_and_reference_video(tmp_path):
    prompts = ["--prompt", "a blue square moves right on a dark background", "--prompt", "a blue square moves down on a dark background"]
    progressive, baseline, guided = tmp_path / "p.mp4", tmp_path / "b.mp4", tmp_path / "g.mp4"
    result = runner.invoke(app, ["sample", *prompts, "--frames", "40", "--steps", "1", "--out", str(progressive)])
    assert result.exit_code == 0, result.output
    assert read_video(progressive)[0].shape == (40, 32, 32, 3)
    result = runner.invoke(app, ["sample", *prompts[2:], "--frames", "24", "--baseline", "--steps", "1", "--out", str(baseline)])
    assert result.exit_code == 0, result.output
    assert read_video(baseline)[0].shape[0] == 24
    # a clip guided by the semantics of another video (Figure 15), resized to the preset's size on the way
    result = runner.invoke(app, ["sample", *prompts[2:], "--reference-video", str(progressive), "--steps", "1", "--out", str(guided)])
    assert result.exit_code == 0, result.output
    assert read_video(guided)[0].shape == (16, 32, 32, 3)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    code = "from bench.cli.app import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_user_errors_are_one_line_exit_2(tmp_path):
    bad_key = _run_cli("sample", "--random-init", "--prompt", "x", "--out", str(tmp_path / "a.mp4"), "--set", "injection.fusion=adaptive-norm")
    assert bad_key.returncode == 2
    assert "Traceback" not in bad_key.stderr
    assert "did you mean 'adaptive_norm'" in bad_key.stderr

    no_weights = _run_cli("sample", "--preset", "paper", "--prompt", "x", "--out", str(tmp_path / "b.mp4"))
    assert no_weights.returncode == 2
    assert "--checkpoint" in no_weights.stderr and "Traceback" not in no_weights.stderr
    assert not (tmp_path / "b.mp4").exists()

    # The shipped tiny injector was trained for first:14; asking for last:14 must not load it silently.
    other_cell = _run_cli(
        "sample", "--prompt", "a red circle rises on a dark background", "--out", str(tmp_path / "c.mp4"), "--set", "injection.layers=last:14"
    )
    assert other_cell.returncode == 2 and "Traceback" not in other_cell.stderr
    assert "injection.layers='first:14' (config: 'last:14')" in other_cell.stderr
    assert len(other_cell.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.mp4").exists()


def test_the_readme_main_command_samples_with_the_shipped_weights(tmp_path):
    out = tmp_path / "video.mp4"
    result = _run_cli("sample", "--preset", "tiny", "--prompt", "a red circle moves from left to right", "--out", str(out))
    assert result.returncode == 0, result.stderr
    frames, fps = read_video(out)
    assert frames.shape == (16, 32, 32, 3) and fps == 8
