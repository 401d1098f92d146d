"""The one small registry class behind every ablation axis (fusions, noise strategies, text
encoders, video VAEs, presets, ...).

A registry maps a snake_case key (the same word used in configs, grid files, `--set` and table
labels) to a class or function. Unknown keys raise a `ConfigError` listing close matches and every
choice; registering a key twice is a programming error.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from arlon.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, name: str):
        self.name = name
        self._entries: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        """Decorator: `@FUSIONS.register("adaptive_norm")` above a class or function."""

        def decorator(obj: T) -> T:
            if key in self._entries:
                raise ValueError(f"{self.name}: key {key!r} is already registered to {self._entries[key]!r}")
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, key: str) -> T:
        try:
            return self._entries[key]
        except KeyError:
            raise ConfigError(self.unknown_key_message(key)) from None

    def unknown_key_message(self, key: object) -> str:
        choices = ", ".join(self.keys())
        close = difflib.get_close_matches(str(key), self.keys(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.name} {key!r}{hint} (choices: {choices})"

    def keys(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
