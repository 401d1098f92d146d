from __future__ import annotations

import sys

from bench.cli import perf as perf_command
from bench.cli.app import main
from bench.perf import PerfReport, PerfRow
from bench.report.efficiency import efficiency_markdown, efficiency_table


def perf_report(device: str = "cpu", latency: float | None = 0.5) -> PerfReport:
    """A report with `bench.perf.measure_components`'s component names (its measuring is tested in test_perf.py)."""
    rows = [
        PerfRow("ar", "forward", 163_745_792, 163_745_792, 212.2, latency, None),
        PerfRow("latent_vq", "decode", 31_527_172, 31_527_172, 106.1, latency, None),
        PerfRow("injector", "adapters", 93_062_016, 93_062_016, 761.8, latency, None),
        PerfRow("dit_step_baseline", "backbone", 1_207_643_972, 0, 94_112.1, latency, None),
        PerfRow("dit_step_arlon", "backbone + injection", 1_300_705_988, 93_062_016, 100_200.2, latency, None),
        PerfRow("vae_decode", "decode", 393_341_007, 393_341_007, 210_207.7, latency, None),
    ]
    return PerfReport("paper", device, "bfloat16", "68 frames 512x512", rows, arlon_steps=10, baseline_steps=30)


def test_table4_layout_puts_the_measured_numbers_beside_the_papers():
    rows = efficiency_table(perf_report()).set_index("quantity")
    assert list(rows.columns) == ["OpenSora v1.2 (measured)", "ARLON (measured)", "OpenSora v1.2 (paper)", "ARLON (paper)"]
    assert rows.loc["parameters: AR model"].tolist() == ["-", "163.7M", "-", "192M"]
    assert rows.loc["parameters: DiT", "ARLON (measured)"] == "93.1M trainable + 1.21B frozen"
    assert rows.loc["inference GFLOPs", "OpenSora v1.2 (measured)"] == "94,112 x 30 steps"
    assert rows.loc["inference GFLOPs", "OpenSora v1.2 (paper)"] == "42626 x 30 steps"
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
