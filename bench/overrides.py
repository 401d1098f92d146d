"""Command-line overrides of config fields: `--set injection.layers=first:8 --set flow.cfg_scale=4`.

Values are parsed as YAML scalars/lists and coerced to the type of the field they replace, so a
typo in a key or a value of the wrong kind is one clear error, not a silent string.
"""

from __future__ import annotations

import dataclasses

import yaml

from arlon.config import get_field, replace_field
from arlon.errors import ConfigError


def parse_override(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set injection.layers=first:8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def coerce(path: str, current: object, value: object) -> object:
    """Coerce a parsed value to the type of the field's current value."""
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"--set {path}: is a group of fields; set one of its fields, e.g. {path}.<field>=...")
    if value is None or current is None:
        return value if not isinstance(value, str) or value.lower() not in ("none", "null") else None
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"--set {path}: expected true or false, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"--set {path}: expected an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"--set {path}: expected a number, got {value!r}")
    if isinstance(current, tuple):
        if isinstance(value, (list, tuple)) and len(value) == len(current) or isinstance(value, (list, tuple)) and not current:
            return tuple(value)
        raise ConfigError(f"--set {path}: expected a list like {list(current)}, got {value!r}")
    if isinstance(current, str):
        return str(value)
    return value


def apply_overrides(config, overrides: list[str]):
    """Return `config` with every `KEY=VALUE` override applied (dataclasses.replace on dotted paths)."""
    for text in overrides:
        path, value = parse_override(text)
        current = get_field(config, path)
        config = replace_field(config, path, coerce(path, current, value))
    return config
