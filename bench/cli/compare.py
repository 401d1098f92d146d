"""`arlon-bench compare CURRENT BASELINE`: the regression gate (exit 0 within tolerance, 1 on a
regression, 2 on input that cannot be compared), and `--update-baseline` to rewrite a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from arlon.checkpoints.io import atomic_write_bytes, output_file
from bench.cli.console import cli_console, styled
from bench.compare import compare_results, load_result_set, parse_tolerances, resolve_baseline, update_baseline

EXAMPLES = """Examples:

  arlon-bench compare runs/smoke smoke                            # against reports/baselines/smoke/

  arlon-bench compare runs/layers runs/layers-main --tolerance toy_layout_iou=abs:0.01 --tolerance rel:0.05

  arlon-bench compare runs/smoke smoke --md comment.md            # the diff table for a pull-request comment

  arlon-bench compare runs/smoke smoke --update-baseline          # deliberately rewrite the baseline

Tolerances: METRIC=abs:X (worse by more than X), METRIC=rel:X (by more than X*|baseline|),
METRIC=significant (the 95% paired interval over prompts lies on the worse side of 0 and p < 0.05;
the default);
a rule without METRIC= applies to every metric without its own.
Exit code 0: within tolerance; 1: a regression; 2: unusable input (what differs is printed).
"""

CurrentArg = Annotated[str, typer.Argument(help="The run to check: a run folder, a scores CSV, or a baseline name.")]
BaselineArg = Annotated[str, typer.Argument(help="A baseline name under reports/baselines/, a run folder or a scores CSV.")]
ToleranceOpt = Annotated[
    Optional[list[str]], typer.Option("--tolerance", help="METRIC=abs:X | METRIC=rel:X | METRIC=significant, or a rule for every metric (repeatable).")
]
MarkdownOpt = Annotated[Optional[Path], typer.Option("--md", help="Write the Markdown diff table to this file instead of stdout.")]
UpdateOpt = Annotated[bool, typer.Option("--update-baseline", help="Replace BASELINE with CURRENT (a run folder) instead of comparing.")]
MixedOpt = Annotated[
    bool,
    typer.Option("--mixed-backends", help="Compare a metric even where the two sets had it computed by different backends "
                 "(official VBench vs native)."),
]


def compare(
    current: CurrentArg,
    baseline: BaselineArg,
    tolerance: ToleranceOpt = None,
    md: MarkdownOpt = None,
    update_baseline_: UpdateOpt = False,
    mixed_backends: MixedOpt = False,
) -> None:
    """Compare a run with a baseline metric by metric, as a Markdown diff table; exit 1 on a regression."""
    console = cli_console()
    if md is not None:
        output_file(md, "--md", example="gate.md")  # refused before the comparison, not after it
    if update_baseline_:
        files = update_baseline(current, baseline)
        console.print(f"baseline {resolve_baseline(baseline)} rewritten from {current}:", soft_wrap=True)
        for path in files.values():
            console.print(f"wrote {path}", soft_wrap=True)
        return
    comparison = compare_results(load_result_set(current), load_result_set(baseline), parse_tolerances(tolerance),
                                 mixed_backends=mixed_backends)
    table = comparison.to_markdown()
    if md is not None:
        atomic_write_bytes(md, table.encode())
        console.print(f"wrote {md}", soft_wrap=True)
    else:
        print(table, end="")
    regressions = comparison.regressions
    if regressions:
        names = ", ".join(f"{c.cell}/{c.metric}" for c in regressions)
        cli_console(stderr=True).print(styled(f"{len(regressions)} regression(s):", "red", names), soft_wrap=True)
        raise typer.Exit(1)
