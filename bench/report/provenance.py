"""The provenance footer of a report: which run, code, configurations, seeds, packages and device
its numbers come from, read from the run's manifest.json, grid.yaml and cell records."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench.grids import Grid
from bench.store import RunStore


@dataclass(frozen=True)
class Provenance:
    items: list[tuple[str, str]]  # (label, value) lines of the footer
    grid_yaml: str  # the grid as run
    cells: list[tuple[str, str, str]]  # (label, cell id = config hash, checkpoints)
    configs: dict[str, str]  # {cell label: its cell.json (resolved config, recipes, data) as JSON text}


def _checkpoints(store: RunStore, cell_id: str) -> str:
    record = store.read_json(f"cells/{cell_id}/checkpoints.json") or {}
    stages = record.get("stages", {})
    if not stages:
        return "-"
    return ", ".join(
        f"{stage} {info.get('sha256', '')[:10]}{' (shipped)' if info.get('shipped') else ''}" for stage, info in stages.items()
    )


def run_provenance(store: RunStore, grid: Grid) -> Provenance:
    """The footer's content; missing manifest fields show as "unknown"."""
    manifest = store.read_json("manifest.json") or {}
    latest = manifest.get("latest", {})
    origin = latest.get("provenance", {})
    packages = origin.get("packages") or {}
    seeds = latest.get("seeds") or {}
    device = origin.get("device") or "unknown"
    if origin.get("cuda_device"):
        device += f" ({origin['cuda_device']})"
    items = [
        ("run", str(store.root.resolve())),
        ("grid", f"{grid.name} v{grid.version} from {latest.get('grid_source', grid.source)}"),
        ("overrides", " ".join(f"--set {o}" for o in latest.get("overrides", [])) or "none"),
        ("last invocation", f"{latest.get('started', 'unknown')} ({latest.get('status', 'unknown')}), "
                            f"phases {', '.join(latest.get('phases', [])) or 'unknown'}, limit {latest.get('limit')}"),
        ("code version", f"git {origin.get('git_commit') or 'unknown'}"),
        ("seeds", f"base seed {seeds.get('base_seed', grid.seed)}; {seeds.get('rule', 'unknown rule')}"),
        ("device", f"{device}; {origin.get('torch_threads', '?')} torch thread(s), {origin.get('cpu_count', '?')} CPUs on {origin.get('hostname', '?')}"),
        ("platform", f"Python {origin.get('python', '?')} on {origin.get('platform', '?')}"),
        ("packages", ", ".join(f"{name} {version}" for name, version in packages.items() if version) or "unknown"),
        ("invocations", str(len(manifest.get("invocations", [])))),
    ]
    grid_file = store.root / "grid.yaml"
    grid_yaml = grid_file.read_text() if grid_file.is_file() else ""
    cells = [(cell.label, cell.id, _checkpoints(store, cell.id)) for cell in grid.cells]
    configs = {cell.label: json.dumps(cell.to_dict(), indent=1) for cell in grid.cells}
    return Provenance(items, grid_yaml, cells, configs)


def provenance_markdown(provenance: Provenance) -> str:
    lines = ["## Provenance", ""]
    lines += [f"- **{label}**: {value}" for label, value in provenance.items]
    lines += ["", "| cell | config hash (cell id) | checkpoints (sha256) |", "|---|---|---|"]
    lines += [f"| {label} | `{cell_id}` | {checkpoints} |" for label, cell_id, checkpoints in provenance.cells]
    return "\n".join(lines) + "\n"
