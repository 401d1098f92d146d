from __future__ import annotations

import json

from tests.bench.cli_runner import run_main


def test_toy_eval_ar_check_prints_the_ladder_and_writes_json(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    out = tmp_path / "eval.json"
    code, stdout, _ = run_main(capsys, monkeypatch, "toy-eval", "--prompts", "2", "--check", "ar", "--out", str(out))
    assert code == 0, stdout
    assert "AR samples show the primary object's colour, shape and motion" in stdout
    assert "teacher-forced codes" in stdout and "continuing 3 true AR frames" in stdout
    assert "ARLON" not in stdout  # only the check asked for
    saved = json.loads(out.read_text())
    assert saved["config"]["checks"] == ["ar"] and saved["config"]["num_prompts"] == 2
    ladder = [f"ar_{rung}_primary_all" for rung in ("teacher_forced", "from_1_frames", "from_2_frames", "from_3_frames")]
    assert all(0.0 <= saved["figures"][name] <= 1.0 for name in ladder)
    assert set(saved["targets"]) == {"ar_prompt_match", "ar_primary_motion"}


def test_toy_eval_unknown_check_is_one_clear_line(capsys, monkeypatch):
    code, stdout, stderr = run_main(capsys, monkeypatch, "toy-eval", "--prompts", "2", "--check", "fid")
    assert code != 0
    assert "unknown check(s) fid" in stderr + stdout and "Traceback" not in stderr + stdout
