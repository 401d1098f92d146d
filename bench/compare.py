"""Comparing a run with a baseline metric by metric: the regression gate of CI.

    from bench.compare import compare_results, load_result_set, parse_tolerances

    comparison = compare_results(load_result_set("runs/smoke"), load_result_set("reports/baselines/smoke"),
                                 parse_tolerances(["toy_layout_iou=abs:0.01"]))
    print(comparison.to_markdown()); comparison.regressions     # [] when within tolerance

A result set is a run folder (its current scores are read from the store), a folder or CSV file of
per-video scores (`scores.csv`: cell, prompt_id, sample, metric, value), or the name of a baseline
under `reports/baselines/`. Cells are matched by label and videos by (prompt id, sample), so the
two sets must hold the same cells, metrics and prompts; anything else is an `IncomparableError`
that says exactly what differs.

A tolerance per metric (`--tolerance METRIC=RULE`, or `RULE` for every metric) decides when a
change in the worse direction (by the metric's higher_is_better) is a regression:
- `abs:X`: worse by more than X;
- `rel:X`: worse by more than X times |baseline|;
- `significant` (the default): the change over the same (prompt, sample) videos is significant and
  worse: its 95% paired-bootstrap interval lies entirely on the worse side of 0 AND its sign-flip
  p-value is below 0.05 (`bench.stats.paired_difference`). Both are asked for because with few
  prompts that changed, the percentile interval alone is too eager (two of eight prompts worse gives
  an interval that excludes 0 at p = 0.25).

`update_baseline` writes a run's scores, results table, grid, prompts and provenance into a
baseline folder, deliberately replacing what was there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from arlon.checkpoints.io import atomic_write_bytes, atomic_write_json, check_output_dir, ensure_dir
from bench.errors import BenchError
from bench.metrics import METRICS, aggregate
from bench.prompts import load_prompts
from bench.report.stats import interval_inputs
from bench.results import collect_scores, results_table
from bench.stats import PairedDifference, paired_difference
from bench.store import RunStore, resolve_run_dir

BASELINES_DIR = Path("reports") / "baselines"
KEY_COLUMNS = ("cell", "prompt_id", "sample", "metric", "value")
TOLERANCE_KINDS = ("abs", "rel", "significant")
SHOWN_IDS = 5  # prompt ids listed in an error before "... and N more"


class IncomparableError(BenchError):
    """The two result sets cannot be compared (missing metric, different cells or prompts)."""


# ---------------------------------------------------------------------------------------------
# Tolerances
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    kind: str  # abs | rel | significant
    amount: float = 0.0

    def __str__(self) -> str:
        return self.kind if self.kind == "significant" else f"{self.kind}:{self.amount:g}"

    def is_regression(self, worse_by: float, baseline: float, difference: PairedDifference, higher_is_better: bool) -> bool:
        """Whether a change `worse_by` (> 0: in the worse direction) breaks this tolerance."""
        slack = 1e-12 * max(1.0, abs(baseline))  # float noise of equal means is never a regression
        if self.kind == "abs":
            return worse_by > self.amount + slack
        if self.kind == "rel":
            return worse_by > self.amount * abs(baseline) + slack
        is_worse = difference.high < -slack if higher_is_better else difference.low > slack
        return is_worse and difference.p_value < 1.0 - difference.confidence


DEFAULT_TOLERANCE = Tolerance("significant")


def parse_tolerance(text: str) -> tuple[str | None, Tolerance]:
    """`METRIC=abs:0.01`, `METRIC=rel:0.05`, `METRIC=significant`, or the rule alone (every metric)."""
    metric, _, rule = text.rpartition("=")
    kind, _, amount = rule.strip().partition(":")
    where = f"--tolerance {text!r}"
    if kind not in TOLERANCE_KINDS:
        raise BenchError(f"{where}: unknown rule {kind!r} (choices: abs:X, rel:X, significant)")
    if kind == "significant":
        if amount:
            raise BenchError(f"{where}: 'significant' takes no amount")
        return metric.strip() or None, Tolerance("significant")
    try:
        value = float(amount)
    except ValueError:
        raise BenchError(f"{where}: {kind} needs a number, e.g. {kind}:0.01") from None
    if not value >= 0:
        raise BenchError(f"{where}: the amount must be >= 0")
    return metric.strip() or None, Tolerance(kind, value)


def parse_tolerances(texts: list[str] | None) -> dict[str | None, Tolerance]:
    """{metric (None: every other metric): tolerance}; later options win."""
    return dict(parse_tolerance(text) for text in texts or [])


# ---------------------------------------------------------------------------------------------
# Result sets
# ---------------------------------------------------------------------------------------------


@dataclass
class ResultSet:
    source: str
    scores: pd.DataFrame  # KEY_COLUMNS, one row per (cell, prompt, sample, metric)


def resolve_baseline(name: str | Path) -> Path:
    """A path as given when it exists or names a folder; a bare name means reports/baselines/<name>."""
    path = Path(name)
    if path.exists() or len(path.parts) > 1:
        return path
    return BASELINES_DIR / path


def _run_scores(run_dir: Path) -> pd.DataFrame:
    store = RunStore(run_dir)
    grid, limit = store.load_grid()
    return collect_scores(grid, store, load_prompts(grid.prompts, limit))


def load_result_set(source: str | Path) -> ResultSet:
    """Per-video scores of a run folder, a scores CSV (or a folder holding scores.csv), or a baseline name."""
    path = Path(source)
    if not path.exists():
        path = resolve_baseline(source)
    where = path  # the file (or run folder) messages name
    if path.is_dir() and (path / "grid.yaml").is_file() and (path / "cells").is_dir():
        scores = _run_scores(resolve_run_dir(path))
    elif path.is_dir() and (path / "scores.csv").is_file():
        where = path / "scores.csv"
        scores = _read_scores_csv(where)
    elif path.is_file():
        scores = _read_scores_csv(path)
    else:
        raise IncomparableError(
            f"no run or results at {str(source)!r} (give a run folder, a scores.csv, or a baseline name under {BASELINES_DIR})"
        )
    missing = [column for column in KEY_COLUMNS if column not in scores.columns]
    if missing:
        raise IncomparableError(f"{where}: the scores lack column(s) {', '.join(missing)} (expected {', '.join(KEY_COLUMNS)})")
    if "backend" not in scores.columns:  # a scores CSV from before score records named their backend
        scores = scores.assign(backend=[METRICS.get(m).backend if m in METRICS.keys() else None for m in scores["metric"]])
    columns = list(KEY_COLUMNS) + (["weight"] if "weight" in scores.columns else []) + ["backend"]  # weight: VBench's weighted rules
    scores = _typed_scores(scores[columns].dropna(subset=["value"]), where)
    if scores.empty:
        raise IncomparableError(f"{where}: no scores to compare (score the run first: `arlon-bench score RUN`)")
    return ResultSet(str(path), scores.reset_index(drop=True))


def _read_scores_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise IncomparableError(f"{path}: not a scores CSV ({' '.join(str(err).split())})") from None


def _typed_scores(scores: pd.DataFrame, path: Path) -> pd.DataFrame:
    """value and weight as numbers, sample as an integer, the names as text; IncomparableError naming
    the file's lines that hold anything else (a hand-edited or foreign CSV)."""
    problems = []

    def rows(bad: pd.Series, what: str) -> None:
        if bad.any():
            lines = [str(index + 2) for index in scores.index[bad]]  # line 1 is the header
            example = scores.loc[bad].iloc[0][what.split()[0]]
            problems.append(f"{what} on line(s) {_listed(lines)} (e.g. {example!r})")

    for column in ("cell", "prompt_id", "metric"):
        rows(scores[column].isna(), f"{column} is empty")
    numbers = {column: pd.to_numeric(scores[column], errors="coerce") for column in ("value", "sample")}
    rows(numbers["value"].isna(), "value is not a number")
    sample = numbers["sample"]
    rows(sample.isna() | (sample != sample.round()) | (sample < 0), "sample is not a whole number >= 0")
    if "weight" in scores.columns:
        weight = pd.to_numeric(scores["weight"], errors="coerce")
        rows(scores["weight"].notna() & weight.isna(), "weight is not a number")
        numbers["weight"] = weight
    if problems:
        raise IncomparableError(f"{path}: " + "; ".join(problems) + "; fix or remove those rows")
    return scores.assign(**numbers).astype({"prompt_id": str, "cell": str, "metric": str, "sample": int, "value": float})


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricChange:
    cell: str
    metric: str
    higher_is_better: bool
    baseline: float
    current: float
    difference: PairedDifference  # current - baseline, paired over (prompt, sample)
    tolerance: Tolerance
    is_regression: bool

    @property
    def change(self) -> float:
        return self.current - self.baseline

    @property
    def worse_by(self) -> float:
        return -self.change if self.higher_is_better else self.change


@dataclass
class Comparison:
    current: str
    baseline: str
    changes: list[MetricChange]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricChange]:
        return [change for change in self.changes if change.is_regression]

    def to_markdown(self) -> str:
        """A diff table like `dvc metrics diff --md`, ready for a pull-request comment."""
        verdict = f"**{len(self.regressions)} regression(s)**" if self.regressions else "no regression"
        lines = [
            f"Comparing `{self.current}` (current) with `{self.baseline}` (baseline): "
            f"{len(self.changes)} metric(s), {verdict}.",
            "",
            "| cell | metric | baseline | current | change | 95% CI of change | p | tolerance | status |",
            "|---|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for c in self.changes:
            arrow = "↑" if c.higher_is_better else "↓"
            d = c.difference
            direction = "same" if c.change == 0 else ("better" if c.worse_by < 0 else "worse")
            status = f"❌ regression ({direction})" if c.is_regression else f"✅ ok ({direction})"
            lines.append(
                f"| {c.cell} | {c.metric} {arrow} | {c.baseline:.4f} | {c.current:.4f} | {c.change:+.4f} | "
                f"[{d.low:+.4f}, {d.high:+.4f}] | {d.p_value:.2g} | {c.tolerance} | {status} |"
            )
        lines += [""] + [f"- {note}" for note in self.notes] if self.notes else []
        return "\n".join(lines) + "\n"


def _aggregate(frame: pd.DataFrame, spec) -> float:
    weights = list(frame["weight"].astype(float)) if "weight" in frame.columns and frame["weight"].notna().all() else None
    return float(aggregate(list(frame["value"]), spec, weights))


def _higher_is_better(metric: str, where: str) -> bool:
    if metric not in METRICS.keys():
        raise IncomparableError(f"{where}: metric {metric!r} is not registered, so its better direction is unknown (registered: {', '.join(METRICS.keys())})")
    return METRICS.get(metric).higher_is_better


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_IDS])
    return shown + (f" ... and {len(items) - SHOWN_IDS} more" if len(items) > SHOWN_IDS else "")


def _backends(scores: pd.DataFrame, metric: str) -> set[str] | None:
    """The backends that computed `metric`'s scores (None when the set does not say)."""
    if "backend" not in scores.columns:
        return None
    return set(scores.loc[scores["metric"] == metric, "backend"].dropna())


def check_comparable(current: ResultSet, baseline: ResultSet, mixed_backends: bool = False) -> None:
    """Raise IncomparableError naming exactly what differs: cells, metrics, prompts or samples, or the
    backend that computed a metric (official VBench vs native), unless `mixed_backends`."""
    cells = (set(current.scores["cell"]), set(baseline.scores["cell"]))
    if cells[0] != cells[1]:
        raise IncomparableError(
            f"different cells: only in the baseline: {sorted(cells[1] - cells[0]) or 'none'}; "
            f"only in the current run: {sorted(cells[0] - cells[1]) or 'none'}"
        )
    for cell in sorted(cells[0]):
        mine = current.scores[current.scores["cell"] == cell]
        theirs = baseline.scores[baseline.scores["cell"] == cell]
        missing = sorted(set(theirs["metric"]) - set(mine["metric"]))
        if missing:
            raise IncomparableError(f"cell {cell!r}: the current run has no {', '.join(missing)} (scored in the baseline); score it or drop it from the baseline")
        prompts = (set(mine["prompt_id"]), set(theirs["prompt_id"]))
        if prompts[0] != prompts[1]:
            raise IncomparableError(
                f"cell {cell!r}: different prompt sets: {len(prompts[1] - prompts[0])} only in the baseline "
                f"({_listed(sorted(prompts[1] - prompts[0]))}), {len(prompts[0] - prompts[1])} only in the current run "
                f"({_listed(sorted(prompts[0] - prompts[1]))})"
            )
        for metric in sorted(set(theirs["metric"])):
            made_by = [_backends(frame, metric) for frame in (mine, theirs)]
            if None not in made_by and made_by[0] != made_by[1] and not mixed_backends:
                raise IncomparableError(
                    f"cell {cell!r}, {metric}: scored by the {_listed(sorted(made_by[0]))} backend here and by the "
                    f"{_listed(sorted(made_by[1]))} backend in the baseline; rescore one of them with the other's "
                    f"--backend, or pass --mixed-backends to compare them anyway"
                )
            keys = [set(zip(frame.loc[frame["metric"] == metric, "prompt_id"], frame.loc[frame["metric"] == metric, "sample"]))
                    for frame in (mine, theirs)]
            if keys[0] != keys[1]:
                only = sorted(f"{p}-{k}" for p, k in keys[1] ^ keys[0])
                raise IncomparableError(
                    f"cell {cell!r}, {metric}: different videos scored (samples per prompt or unscored videos): {_listed(only)}"
                )


def compare_results(
    current: ResultSet,
    baseline: ResultSet,
    tolerances: dict[str | None, Tolerance] | None = None,
    mixed_backends: bool = False,
) -> Comparison:
    """Every (cell, metric) of the baseline, current vs baseline, judged by its tolerance; `mixed_backends`:
    compare a metric even where the two sets had it computed by different backends."""
    tolerances = tolerances or {}
    check_comparable(current, baseline, mixed_backends)
    metrics = list(dict.fromkeys(baseline.scores["metric"]))
    unknown = [m for m in tolerances if m is not None and m not in metrics]
    if unknown:
        raise IncomparableError(f"--tolerance names metric(s) {', '.join(unknown)} that the baseline does not score ({', '.join(metrics)})")
    comparison = Comparison(current.source, baseline.source, [])
    extra = sorted(set(current.scores["metric"]) - set(metrics))
    if extra:
        comparison.notes.append(f"not in the baseline, not compared: {', '.join(extra)}")
    for cell in dict.fromkeys(baseline.scores["cell"]):
        for metric in metrics:
            theirs = baseline.scores[(baseline.scores["cell"] == cell) & (baseline.scores["metric"] == metric)]
            if theirs.empty:
                continue
            mine = current.scores[(current.scores["cell"] == cell) & (current.scores["metric"] == metric)]
            higher = _higher_is_better(metric, baseline.source)
            spec = METRICS.get(metric)
            pairs = mine.merge(theirs, on=["prompt_id", "sample"], suffixes=("", "_baseline"))
            values, weights = interval_inputs(spec.aggregation, pairs) or (pairs["value"], None)
            baseline_values, _ = interval_inputs(
                spec.aggregation, pairs.rename(columns={"value": "value_current", "value_baseline": "value"})
            ) or (pairs["value_baseline"], None)
            difference = paired_difference(values, baseline_values, pairs["prompt_id"], name=metric, weights=weights)
            tolerance = tolerances.get(metric, tolerances.get(None, DEFAULT_TOLERANCE))
            base_mean, current_mean = _aggregate(theirs, spec), _aggregate(mine, spec)
            worse_by = (base_mean - current_mean) if higher else (current_mean - base_mean)
            comparison.changes.append(MetricChange(
                cell, metric, higher, base_mean, current_mean, difference, tolerance,
                tolerance.is_regression(worse_by, base_mean, difference, higher),
            ))
    return comparison


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------

BASELINE_FILES = ("grid.yaml", "run.json", "prompts.json")


def update_baseline(run: str | Path, baseline: str | Path) -> dict[str, Path]:
    """Write run `run`'s current scores, results table, grid, prompts and provenance into the
    baseline folder (replacing its files); returns the files written."""
    store = RunStore(resolve_run_dir(run))
    grid, limit = store.load_grid()
    directory = check_output_dir(resolve_baseline(baseline), "baseline")
    scores = collect_scores(grid, store, load_prompts(grid.prompts, limit))
    if scores.empty:
        raise BenchError(f"{store.root}: no scores to make a baseline of (run `arlon-bench score {store.root}` first)")
    ensure_dir(directory, "baseline")
    files = {
        "scores.csv": atomic_write_bytes(directory / "scores.csv", scores.to_csv(index=False).encode()),
        "results.csv": atomic_write_bytes(directory / "results.csv", results_table(grid, scores).to_csv(index=False).encode()),
    }
    for name in BASELINE_FILES:
        if (store.root / name).is_file():
            files[name] = atomic_write_bytes(directory / name, (store.root / name).read_bytes())
    manifest = store.read_json("manifest.json") or {}
    latest = manifest.get("latest", {})
    files["provenance.json"] = atomic_write_json(directory / "provenance.json", {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "from_run": str(store.root),
        "grid": grid.name,
        "grid_source": latest.get("grid_source", grid.source),
        "overrides": latest.get("overrides", list(grid.overrides)),
        "limit": limit,
        "seeds": latest.get("seeds"),
        "provenance": latest.get("provenance"),
        "cells": {
            cell.label: {"id": cell.id, "checkpoints": store.read_json(f"cells/{cell.id}/checkpoints.json")}
            for cell in grid.cells
        },
    })
    return files

