"""A named table of plug-ins in registration order: what the runtime, client-protocol and front-end registries share.

A row may be given as ``"module:attribute"`` and is imported on first use, so listing a registry's names (the
CLI's choices) loads no plug-in. ``registered`` adds a row for the duration of a ``with`` block and puts back
whatever it replaced: the tests register their stand-in plug-ins this way. This module imports nothing of
vslim: the config layer reads registries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def load_attribute(target: Any, package: str | None = None) -> Any:
    """``target`` itself, or the object a ``"module:attribute"`` string names (``package`` anchors a relative
    module name such as ``".v2.frontend"``)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module, package), attribute)


class Registry(Generic[T]):
    """Rows of type ``T`` by name. ``check(name, row)`` refuses a row at registration (raise ValueError)."""

    def __init__(self, package: str | None = None, check: Callable[[str, Any], None] | None = None):
        self._rows: dict[str, T | str] = {}
        self._package, self._check = package, check

    def register(self, name: str, row: T | str) -> T | str:
        """Add a row (or replace the row of the same name)."""
        if self._check is not None:
            self._check(name, row)
        self._rows[name] = row
        return row

    def unregister(self, name: str) -> None:
        self._rows.pop(name, None)

    @contextmanager
    def registered(self, name: str, row: T) -> Iterator[T]:
        previous = self._rows.get(name)
        self.register(name, row)
        try:
            yield row
        finally:
            self.unregister(name)
            if previous is not None:
                self._rows[name] = previous

    def names(self) -> list[str]:
        return list(self._rows)

    def get(self, name: str) -> T | None:
        """The row of ``name`` (imported when given as a string), or None."""
        if name not in self._rows:
            return None
        row = self._rows[name]
        if not isinstance(row, str):
            return row
        loaded: T = load_attribute(row, self._package)
        self._rows[name] = loaded
        return loaded

    def rows(self) -> list[T]:
        return [row for name in self.names() if (row := self.get(name)) is not None]

    def __contains__(self, name: object) -> bool:
        return name in self._rows
