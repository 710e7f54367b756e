"""Named entries of one sort (strategies, trial kinds, schedules, label sources, ...).

A registry looks a name up or raises one error that lists the valid names. An entry may be
given as its location, ``"package.module:attribute"``, imported on first use (as mmseg's
registry ``locations``): a torch-free module can then name entries whose code needs torch,
and modules that must not depend on each other (the engine and LSE) meet only through it.
Torch-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

from ripu.errors import ConfigError, RipuError

T = TypeVar("T")


def load(location: str) -> Any:
    """The attribute a ``"package.module:attribute"`` location names, its module imported."""
    module, _, attribute = location.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry(MutableMapping[str, T], Generic[T]):
    """``what`` -> entries by name, in registration order (see the module docstring)."""

    def __init__(self, what: str, entries: Mapping[str, T | str] | None = None, *,
                 error: type[RipuError] = ConfigError) -> None:
        self.what, self.error = what, error
        # a dict is shared, not copied: its module may add to it later
        self._entries: dict[str, Any] = entries if isinstance(entries, dict) else dict(
            entries or {})

    def register(self, name: str, entry: T | str) -> None:
        """Add ``entry`` (or its ``"module:attribute"`` location) as ``name``."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered already")
        self._entries[name] = entry

    def __getitem__(self, name: str) -> T:
        try:
            entry = self._entries[name]
        except (KeyError, TypeError):
            raise self.error(f"unknown {self.what} {name!r}, expected one of "
                             f"{', '.join(sorted(self._entries))}") from None
        if isinstance(entry, str) and ":" in entry:
            entry = self._entries[name] = load(entry)
        return entry

    def __setitem__(self, name: str, entry: T | str) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable name is no entry's
            return False

    def get(self, name: str, default: Any = None) -> Any:
        """The entry ``name``, or ``default`` when there is none."""
        return self[name] if name in self else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
