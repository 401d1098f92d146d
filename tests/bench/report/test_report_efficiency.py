from __future__ import annotations

import json
import sys

import pytest

from bench.cli import perf as perf_command
from bench.cli.app import main
from bench.perf import PerfReport, PerfRow
from bench.report.efficiency import efficiency_markdown, efficiency_table
from tests.bench.cli_runner import run_main


def perf_report(device: str = "cpu", latency: float | None = 0.5) -> PerfReport:
    """A report with `bench.perf.measure_components`'s component names (its measuring is tested in test_perf.py)."""
    rows = [
        PerfRow("ar", "forward", 163_745_792, 163_745_792, 1, 212.2, 212.2, latency, None),
        PerfRow("latent_vq", "decode", 31_527_172, 31_527_172, 1, 106.1, 106.1, latency, None),
        PerfRow("injector", "adapters", 93_062_016, 93_062_016, 1, 761.8, 761.8, latency, None),
        PerfRow("dit_step_baseline", "backbone", 1_207_643_972, 0, 2, 94_112.1, 47_056.0, latency, None),
        PerfRow("dit_step_arlon", "backbone + injection", 1_300_705_988, 93_062_016, 2, 100_200.2, 50_100.1, latency, None),
        PerfRow("vae_decode", "decode", 393_341_007, 393_341_007, 1, 210_207.7, 210_207.7, latency, None),
    ]
    return PerfReport("paper", device, "bfloat16", "68 frames 512x512", rows, arlon_steps=10, baseline_steps=30)


def test_table4_layout_puts_the_measured_numbers_beside_the_papers():
    rows = efficiency_table(perf_report()).set_index("quantity")
    assert list(rows.columns) == ["OpenSora v1.2 (measured)", "ARLON (measured)", "OpenSora v1.2 (paper)", "ARLON (paper)"]
    assert rows.loc["parameters: AR model"].tolist() == ["-", "163.7M", "-", "192M"]
    assert rows.loc["parameters: DiT", "ARLON (measured)"] == "93.1M trainable + 1.21B frozen"
    # Table 4 counts one forward per step; the CFG batch the sampler runs is its own, labelled row.
    per_forward = rows.loc["inference GFLOPs, per forward (as Table 4 counts)"]
    assert per_forward.tolist() == [
        "47,056 x 30 steps", "212 (AR) + 50,100 x 10 steps (DiT)", "42626 x 30 steps", "7561 (AR) + 46461 x 10 steps (DiT)"
    ]
    cfg_batch = rows.loc["inference GFLOPs, CFG batch of 2 per step (as run)"]
    assert cfg_batch.tolist() == ["94,112 x 30 steps", "212 (AR) + 100,200 x 10 steps (DiT)", "-", "-"]
    assert rows.loc["inference seconds, one video", "OpenSora v1.2 (measured)"] == "15.50 (30 steps)"  # 0.5 x 30 + decode
    assert rows.loc["inference seconds, one video", "ARLON (measured)"] == "0.50 (AR) + 5.00 (DiT; 10 steps); total 7.00"
    counted = efficiency_markdown(perf_report("meta", None))
    assert "counted on the meta device" in counted and "- (AR) + - (DiT; 10 steps)" in counted
    assert "not comparable" not in counted  # the paper preset is the paper's size


def test_perf_md_writes_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(perf_command, "measure_components", lambda *args, **kwargs: perf_report())
    monkeypatch.setattr(sys, "argv", ["arlon-bench", "perf", "--preset", "tiny", "--count-only", "--md", str(tmp_path / "t4.md")])
    try:
        main()
    except SystemExit as exit_:
        assert exit_.code == 0
    assert "| parameters: DiT | 1.21B | 93.1M trainable + 1.21B frozen | 1.2B | 92M trainable + 1.2B frozen |" in (tmp_path / "t4.md").read_text()


@pytest.mark.slow
def test_perf_prints_per_forward_and_cfg_batch_gflops_and_says_which_compares_with_table4(tmp_path, capsys, monkeypatch):
    out, md = tmp_path / "perf.json", tmp_path / "t4.md"
    monkeypatch.setenv("COLUMNS", "250")  # the whole table on one line per row
    code, stdout, _ = run_main(capsys, monkeypatch, "perf", "--preset", "tiny", "--count-only", "--out", str(out), "--md", str(md))
    assert code == 0, stdout
    assert "GFLOPs/forward (Table 4)" in stdout and "GFLOPs/call (as run)" in stdout
    assert "the unit of the paper's Table 4" in stdout and "batch of 2" in stdout
    report = json.loads(out.read_text())
    assert report["preset"] == "tiny" and report["device"] == "meta" and len(report["rows"]) == 6
    rows = {row["component"]: row for row in report["rows"]}
    for name in ("dit_step_baseline", "dit_step_arlon"):
        row = rows[name]
        assert row["batch"] == 2
        # The per-forward count is measured on its own one-sample call: the CFG batch is twice it.
        assert row["gflops_call"] == pytest.approx(2 * row["gflops_per_forward"], rel=1e-3)
        assert f"{row['gflops_per_forward']:,.1f}" in stdout and f"{row['gflops_call']:,.1f} (batch 2)" in stdout
    assert rows["vae_decode"]["batch"] == 1 and rows["vae_decode"]["gflops_call"] == rows["vae_decode"]["gflops_per_forward"]
    totals = report["totals"]["baseline (30 steps)"]
    assert totals["gflops_call"] > 1.9 * totals["gflops_per_forward"] - rows["vae_decode"]["gflops_call"]
    assert "Table 4" in report["gflops_note"]
    table = md.read_text()
    assert "| inference GFLOPs, per forward (as Table 4 counts) |" in table
    assert "| inference GFLOPs, CFG batch of 2 per step (as run) |" in table
