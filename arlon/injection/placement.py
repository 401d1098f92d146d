"""Which STDiT3 block pairs receive the AR semantic condition (paper section 4.3, Table 3, Figure 6).

The layer axis of the ablations counts block pairs: STDiT3's `depth = 28` means 28 interleaved
(spatial_i, temporal_i) pairs (Open-Sora's `STDiT3.forward`), and "the first 14 of 28 layers" is pairs 0..13.
A placement spec is a short string so that configs, grid files, `--set` and table labels share it:

    "first:N"   pairs 0 .. N-1           (the paper's first 3 / 8 / 14 layers)
    "last:N"    pairs depth-N .. depth-1 (the paper's last 14 layers)
    "i,j,k"     an explicit list of pair indices, e.g. "0,5,27"
    "none"      no pair: the baseline without injection

"0" is the explicit list holding pair 0, not "no injection"; use "none" for the baseline.
"""

from __future__ import annotations

from arlon.errors import ConfigError

SPEC_FORMS = '"first:N", "last:N", a comma-separated list of pair indices like "0,3,7", or "none"'


def parse_layers(spec: str, depth: int) -> tuple[int, ...]:
    """Block-pair indices named by `spec`, sorted and unique, each in 0..depth-1.

    Raises ConfigError (naming the spec and the accepted forms) for bad syntax, N outside 1..depth,
    an index outside 0..depth-1, or a repeated index.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"injection.layers: expected a string ({SPEC_FORMS}), got {type(spec).__name__} {spec!r}")
    text = spec.strip()
    if text == "none":
        return ()
    for prefix in ("first:", "last:"):
        if text.startswith(prefix):
            count = _parse_count(spec, text[len(prefix) :], depth)
            return tuple(range(count)) if prefix == "first:" else tuple(range(depth - count, depth))
    return _parse_index_list(spec, text, depth)


def _parse_count(spec: str, text: str, depth: int) -> int:
    count = _parse_int(spec, text)
    if not 1 <= count <= depth:
        raise ConfigError(
            f"injection.layers {spec!r}: N must be between 1 and the backbone depth {depth}, got {count} "
            '(use "none" for no injection)'
        )
    return count


def _parse_index_list(spec: str, text: str, depth: int) -> tuple[int, ...]:
    indices = [_parse_int(spec, item) for item in text.split(",")]
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        raise ConfigError(f"injection.layers {spec!r}: pair index {repeated[0]} is listed more than once")
    out_of_range = [i for i in indices if not 0 <= i < depth]
    if out_of_range:
        raise ConfigError(
            f"injection.layers {spec!r}: pair index {out_of_range[0]} is outside 0..{depth - 1} "
            f"(the backbone has {depth} block pairs)"
        )
    return tuple(sorted(indices))


def _parse_int(spec: str, text: str) -> int:
    text = text.strip()
    # int() alone would also accept "+3", "1_0" and non-ASCII digits; a placement is plain digits.
    if not (text.isascii() and text.isdigit()):
        raise ConfigError(f"injection.layers: cannot read {spec!r}; expected {SPEC_FORMS}")
    return int(text)
