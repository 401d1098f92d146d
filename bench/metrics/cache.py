"""Per-video score cache shared by every run on this machine.

A score depends only on the video's bytes and the metric's definition (name, backend, version),
plus the prompt and VBench auxiliary info when the metric reads them, the reference video's
bytes when it compares with one, and the backend's fingerprint of the weight files it reads (so
scores made with other, or broken, weights are never reused). `score_cache_key` hashes exactly those, so two runs (or two cells,
or a re-run after adding prompts) that hold the same video reuse its scores, and bumping a metric's
version invalidates only that metric.

Layout: `<root>/<key[:2]>/<key>.json`, one small JSON per (video, metric) holding the value, its
aggregation weight and details; written atomically (temporary file + rename), so concurrent
workers never read half a file and the last writer of an equal key writes the same content.
An entry that cannot be read back (not JSON, no numeric value) is moved aside with one warning
and scored again; an entry that cannot be written (a full disk, a colleague's read-only cache)
is one warning and the score goes on without it.
Root: `$ARLON_SCORE_CACHE`, else `~/.cache/arlon-bench/scores`; `ARLON_SCORE_CACHE=off` turns the
cache off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from arlon.checkpoints.io import atomic_write_json, read_json, set_aside
from arlon.errors import CorruptFileError, OutputPathError, WriteError
from arlon.training.cache import hash_json
from bench.metrics.registry import MetricSpec, MetricValue

CACHE_ENV = "ARLON_SCORE_CACHE"
DEFAULT_CACHE = Path("~/.cache/arlon-bench/scores")
DISABLED = ("off", "0", "none")
# Inputs that make a score depend on the prompt (a toy scene is the prompt's ground truth).
PROMPT_INPUTS = ("prompt", "scene", "auxiliary")

logger = logging.getLogger(__name__)


def score_cache_root() -> Path | None:
    """The cache folder, or None when `ARLON_SCORE_CACHE=off`."""
    configured = os.environ.get(CACHE_ENV)
    if configured is not None and configured.strip().lower() in DISABLED:
        return None
    return Path(configured or DEFAULT_CACHE).expanduser()


def score_cache_key(
    spec: MetricSpec,
    video_sha256: str,
    *,
    backend: str | None = None,
    prompt_id: str | None = None,
    prompt_text: str | None = None,
    auxiliary: dict | None = None,
    reference_sha256: str | None = None,
    models: str | None = None,
) -> str:
    """What a per-video score depends on, hashed; the prompt only for metrics that read it;
    `backend`: the one computing it (default: the metric's own); `models`: the backend's fingerprint of the
    weights it would use (`ScoringBackend.fingerprint`)."""
    reads_prompt = any(name in spec.inputs for name in PROMPT_INPUTS)
    return hash_json(
        {
            "video": video_sha256,
            "metric": spec.name,
            "backend": backend or spec.backend,
            "version": spec.version,
            "prompt": [prompt_id, prompt_text] if reads_prompt else None,
            "auxiliary": auxiliary if "auxiliary" in spec.inputs else None,
            "reference": reference_sha256 if "reference_video" in spec.inputs else None,
            "models": models,
        }
    )


class ScoreCache:
    """get/put of per-video `MetricValue`s by `score_cache_key`; a no-op when disabled."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        resolved = Path(root).expanduser() if root is not None else score_cache_root()
        self.root = resolved if enabled else None
        self._write_failed = False

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> MetricValue | None:
        """The cached score, or None when absent; a damaged entry is moved aside (one warning) and rescored."""
        if self.root is None:
            return None
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = read_json(path)
            if not _is_entry(entry):
                raise CorruptFileError(f"{path}: not a score entry (expected a numeric value, weight and details)")
        except OSError:
            return None  # unreadable (a colleague's file): scored again
        except CorruptFileError as err:
            try:
                set_aside([path], str(err), "scoring the video again")
            except CorruptFileError as stuck:  # a read-only cache: scored again all the same
                logger.warning("warning: %s", stuck)
            return None
        return MetricValue(entry["value"], entry.get("weight"), entry.get("details"))

    def put(self, key: str, value: MetricValue, metric: str) -> None:
        if self.root is None:
            return
        entry = {"metric": metric, "value": value.value, "weight": value.weight, "details": value.details}
        try:
            atomic_write_json(self.path(key), entry)
        except (WriteError, OutputPathError) as err:
            if not self._write_failed:  # once: every later entry would fail alike
                logger.warning("warning: %s; scores are not cached (they are kept in the run)", err)
            self._write_failed = True


def _number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _is_entry(entry: object) -> bool:
    """What `put` writes: a value and weight that are numbers (or null) and details that are an object (or null)."""
    return (
        isinstance(entry, dict)
        and "value" in entry
        and _number_or_none(entry["value"])
        and _number_or_none(entry.get("weight"))
        and isinstance(entry.get("details"), (dict, type(None)))
    )
