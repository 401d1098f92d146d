"""`arlon-bench status`: what a run has finished, per cell and per stage."""

from __future__ import annotations

from bench.cli.console import cli_console
from bench.cli.report import show_coverage
from bench.cli.run_options import RunArg
from bench.cli.tables import status_rich_table
from bench.runner import open_run, run_status

EXAMPLES = """Examples:

  arlon-bench status runs/layers

  arlon-bench status layers
"""


def status(run: RunArg) -> None:
    """Show per cell whether its checkpoints are gathered, and how many videos and scores are done."""
    store, grid, limit = open_run(run)
    statuses = run_status(store, grid, limit)
    console = cli_console()
    console.print(status_rich_table(grid, statuses))
    checkpoints = sum(s.has_checkpoints for s in statuses)
    videos = (sum(s.videos_done for s in statuses), sum(s.videos_total for s in statuses))
    scores = (sum(s.scores_done for s in statuses), sum(s.scores_total for s in statuses))
    console.print(
        f"train: {checkpoints}/{len(statuses)} cells trained | generate: {videos[0]}/{videos[1]} videos | "
        f"score: {scores[0]}/{scores[1]} scores",
    )
    kept = sum(s.unfinished_segments for s in statuses)
    if kept:
        console.print(f"unfinished long videos: {kept} finished segment(s) kept; the next run resumes from them")
    latest = (store.read_json("manifest.json") or {}).get("latest")
    if latest:
        console.print(f"last invocation: {latest.get('started', 'unknown')} ({latest.get('status', 'unknown')})")
    show_coverage(store, grid, limit)  # names what is missing; the exit code stays 0 (status only reads)
