"""The efficiency table in the layout of the paper's Table 4: this machine's measurements of
`bench.perf.measure_components` beside the paper's printed figures (reports/reference/
table4_efficiency.csv), in separate, labelled columns. The paper measured the paper preset (68
frames at 512x512) on an A100; a tiny-preset or count-only measurement is labelled as such."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.perf import GFLOPS_NOTE, PerfReport
from bench.report.tables import REFERENCE_DIR, read_reference

# (row label, paper CSV quantity)
TABLE4_ROWS = (
    ("parameters: AR model", "params_ar"),
    ("parameters: DiT", "params_dit"),
    ("parameters: 3D VAE", "params_3d_vae"),
    ("parameters: latent VQ-VAE", "params_latent_vqvae"),
    ("inference peak memory", "inference_memory_MiB"),
    ("inference seconds, one video", "inference_seconds_68f_512px_A100"),
    ("inference GFLOPs, per forward (as Table 4 counts)", "inference_GFLOPs"),
    ("inference GFLOPs, CFG batch of 2 per step (as run)", "inference_GFLOPs_cfg_batch"),  # not in the paper
)


def _millions(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.1f}M"


def _gflops(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _or_dash(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def measured_rows(report: PerfReport) -> dict[str, tuple[str, str]]:
    """{paper quantity: (baseline text, ARLON text)} from this machine's measurements."""
    row = {r.component: r for r in report.rows}
    totals = list(report.totals().values())  # [arlon, baseline]
    dit, arlon_dit, injector = row["dit_step_baseline"], row["dit_step_arlon"], row["injector"]
    peak = lambda names: max((row[n].peak_mem_gib for n in names if row[n].peak_mem_gib is not None), default=None)  # noqa: E731
    arlon_parts = ("ar", "latent_vq", "injector", "dit_step_arlon", "vae_decode")
    seconds = [
        _or_dash(totals[1]["latency_s"], "{:.2f}") + f" ({report.baseline_steps} steps)",
        _or_dash(row["ar"].latency_s, "{:.2f}") + " (AR) + "
        + _or_dash(None if arlon_dit.latency_s is None else arlon_dit.latency_s * report.arlon_steps, "{:.2f}")
        + f" (DiT; {report.arlon_steps} steps); total " + _or_dash(totals[0]["latency_s"], "{:.2f}"),
    ]
    return {
        "params_ar": ("", _millions(row["ar"].params_total)),
        "params_dit": (_millions(dit.params_total), f"{_millions(injector.params_trainable)} trainable + {_millions(dit.params_total)} frozen"),
        "params_3d_vae": (_millions(row["vae_decode"].params_total), _millions(row["vae_decode"].params_total)),
        "params_latent_vqvae": ("", _millions(row["latent_vq"].params_total)),
        "inference_memory_MiB": (
            _or_dash(peak(("dit_step_baseline", "vae_decode")), "{:.2f} GiB"),
            _or_dash(peak(("ar",)), "{:.2f} GiB") + " (AR); " + _or_dash(peak(arlon_parts[1:]), "{:.2f} GiB") + " (DiT)",
        ),
        "inference_seconds_68f_512px_A100": tuple(seconds),
        "inference_GFLOPs": (
            f"{_gflops(dit.gflops_per_forward)} x {report.baseline_steps} steps",
            f"{_gflops(row['ar'].gflops_per_forward)} (AR) + {_gflops(arlon_dit.gflops_per_forward)} x {report.arlon_steps} steps (DiT)",
        ),
        "inference_GFLOPs_cfg_batch": (
            f"{_gflops(dit.gflops_call)} x {report.baseline_steps} steps",
            f"{_gflops(row['ar'].gflops_call)} (AR) + {_gflops(arlon_dit.gflops_call)} x {report.arlon_steps} steps (DiT)",
        ),
    }


def efficiency_table(report: PerfReport, reference_dir: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Rows of Table 4; measured columns, then the paper's (as printed, its own units)."""
    measured = measured_rows(report)
    paper = read_reference("table4_efficiency.csv", reference_dir)
    printed = {} if paper is None else {r["quantity"]: r for r in paper.fillna("").to_dict("records")}
    rows = []
    for label, quantity in TABLE4_ROWS:
        baseline, arlon = measured[quantity]
        reference = printed.get(quantity, {})
        rows.append({
            "quantity": label,
            "OpenSora v1.2 (measured)": baseline or "-",
            "ARLON (measured)": arlon,
            "OpenSora v1.2 (paper)": reference.get("opensora_v1_2") or "-",
            "ARLON (paper)": reference.get("arlon") or "-",
        })
    return pd.DataFrame(rows)


def efficiency_markdown(report: PerfReport, reference_dir: Path = REFERENCE_DIR) -> str:
    table = efficiency_table(report, reference_dir)
    ran = "counted on the meta device (no latency or memory)" if report.device == "meta" else f"measured on {report.device}"
    caption = (
        f"Preset {report.preset}, {report.video}, {report.dtype}, {ran}; ARLON at {report.arlon_steps} steps, "
        f"the baseline at {report.baseline_steps}. Paper columns: the paper's Table 4 as printed (paper preset, "
        "68 frames at 512x512, A100, its own units), not measured here"
        + ("." if report.preset == "paper" else f"; the {report.preset} preset is not comparable in size.")
        + f" {GFLOPS_NOTE}."
    )
    header = list(table.columns)
    lines = ["## Table 4 layout: efficiency", "", caption, "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
