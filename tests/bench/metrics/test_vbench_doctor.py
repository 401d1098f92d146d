"""`arlon-bench vbench doctor` and the unavailable-dimension line, on a temporary VBench cache."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bench.cli.app import app
from bench.metrics.vbench.dimensions import DIMENSIONS
from bench.metrics.vbench.doctor import check_dimensions, doctor
from bench.metrics.vbench.env import install_requirements, setup_steps, torch_requirements


@pytest.fixture
def caches(tmp_path, monkeypatch):
    vbench, torch_home, hf = tmp_path / "vbench", tmp_path / "torch", tmp_path / "hf"
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(vbench))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("ARLON_VBENCH_ENV", str(tmp_path / "env"))
    return vbench, torch_home


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_missing_and_present_files_are_reported_where_vbench_reads_them(caches):
    vbench, torch_home = caches
    touch(vbench / "clip_model" / "ViT-B-32.pt")
    touch(vbench / "aesthetic_model" / "emb_reader" / "sa_0_4_vit_l_14_linear.pth?raw=true")  # the 0.1.5 wget name
    touch(vbench / "clip_model" / "ViT-L-14.pt")
    touch(torch_home / "hub" / "checkpoints" / "dino_vitbase16_pretrain.pth")
    status = {s.dimension: s for s in check_dimensions()}
    assert status["background_consistency"].available and status["temporal_flickering"].available
    assert status["aesthetic_quality"].available
    assert status["aesthetic_quality"].files[1].found.name.endswith("?raw=true")
    subject = status["subject_consistency"]
    assert not subject.available and subject.files[1].present and not subject.files[0].present
    reason = status["motion_smoothness"].unavailable_reason()
    assert reason.startswith("unavailable: AMT-S interpolation network missing at ")
    assert str(vbench / "amt_model" / "amt-s.pth") in reason
    assert "fix: get it from https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth" in reason
    assert "detectron2" in status["object_class"].unavailable_reason() or not status["object_class"].files[0].present
    assert "bert-base-uncased" in " ".join(f.what for f in status["scene"].files)


def test_doctor_command_prints_a_table_json_and_an_exit_code(caches):
    vbench, _ = caches
    runner = CliRunner()
    result = runner.invoke(app, ["vbench", "doctor", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert not report["environment_ready"] and "vbench setup" in report["environment_fix"]
    assert report["vbench_cache"] == str(vbench)
    assert [d["dimension"] for d in report["dimensions"]] == list(DIMENSIONS)
    dynamic = next(d for d in report["dimensions"] if d["dimension"] == "dynamic_degree")
    assert dynamic["files"][0]["expected"] == str(vbench / "raft_model" / "models" / "raft-things.pth")
    assert "models.zip" in dynamic["files"][0]["source"] and not dynamic["available"]

    table = runner.invoke(app, ["vbench", "doctor", "--dimensions", "temporal_flickering,imaging_quality"])
    assert table.exit_code == 1 and "imaging_quality" in table.output and "missing" in table.output
    assert "wget -O" in table.output and "musiq_spaq_ckpt-358bb6af.pth" in table.output
    (caches[0].parent / "env" / "bin").mkdir(parents=True)
    (caches[0].parent / "env" / "bin" / "python").write_text("")
    assert runner.invoke(app, ["vbench", "doctor", "--dimensions", "temporal_flickering"]).exit_code == 0
    assert doctor(["temporal_flickering"]).ok
    bad = runner.invoke(app, ["vbench", "doctor", "--dimensions", "subject"])
    assert bad.exit_code == 2 and "unknown dimension" in bad.output


def test_setup_reuses_this_torch_and_pins_setuptools(tmp_path):
    assert torch_requirements("2.13.0+cpu") == ["torch==2.13.0", "torchvision~=0.28.0"]
    assert install_requirements("2.14.1")[:2] == ["vbench==0.1.5", "setuptools<81"]
    steps = setup_steps(tmp_path / "env", "2.14.1")
    assert steps[0].command[1:] == ["-m", "venv", str(tmp_path / "env")]
    assert "torch==2.14.1" in steps[2].command and steps[3].command[-1] == "--check"
    result = CliRunner().invoke(app, ["vbench", "setup", "--dir", str(tmp_path / "env"), "--dry-run"])
    assert result.exit_code == 0 and "vbench==0.1.5" in result.output and not (tmp_path / "env").exists()
