"""`arlon-bench gpu-check` (bench/gpu_check.py): its CPU dry run, so that the GPU command cannot rot
between the rare runs on a lent GPU. It must also run where PyAV is missing (the GPU image has none)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.gpu_check import TARGETS, bf16_peak_tflops

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_writes_every_measurement_without_pyav(tmp_path):
    # A fresh process in which `import av` fails, as on the GPU image; `python -m bench` as run there.
    code = "import sys, runpy; sys.modules['av'] = None; sys.argv[0] = 'arlon-bench'; runpy.run_module('bench', run_name='__main__')"
    args = ["gpu-check", "--device", "cpu", "--tiny", "--no-tests", "--repeats", "1", "--arlon-steps", "2",
            "--baseline-steps", "3", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    names = [m["name"] for m in report["measurements"]]
    assert names == ["dit_step", "ar_codes", "arlon_end_to_end", "baseline_end_to_end", "injector_train_step"]
    assert all(m["seconds"] > 0 for m in report["measurements"])
    assert report["measurements"][0]["gflops"] > 0  # counted as `arlon-bench perf` counts them
    assert set(report["figures"]) == set(TARGETS) and report["figures"]["arlon_over_baseline"] > 0
    assert report["verdicts"]["dit_step_mfu"] == "not measured"  # no bf16 peak for a CPU
    markdown = (tmp_path / "gpu-check.md").read_text()
    assert "| arlon_over_baseline |" in markdown and "Device: cpu" in markdown


def test_refuses_a_gpu_run_without_a_gpu(tmp_path):
    from typer.testing import CliRunner

    from bench.cli.app import app

    result = CliRunner().invoke(app, ["gpu-check", "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "need a GPU" in str(result.exception) + result.output


def test_bf16_peaks_by_device_name():
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
    assert bf16_peak_tflops("Some Future GPU") is None
