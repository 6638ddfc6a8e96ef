"""Variables rendered on first use (``LazyVars``), so a variable may hold Jinja that
refers to others, an unused variable never fails a render, and a cycle between
variables is reported (``VarCycle``) instead of recursing forever."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class VarCycle(Exception):
    """Variables refer to each other in a cycle; the message is the chain (``a -> b -> a``)."""


class LazyVars(dict):
    """Variables whose Jinja values are rendered on first access, then cached.

    Jinja looks names up in this mapping directly (``shared=True`` contexts), so a
    variable referencing another is resolved on demand.
    """

    # The names Jinja asked about (``in``), when the owner sets it (RenderContext does).
    looked_up: set[object]

    def __init__(self, raw: Mapping[str, Any], render: Callable[[Any, str], Any]) -> None:
        super().__init__(raw)
        self._render = render
        self._done: set[str] = set()
        self._active: list[str] = []

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if key in self._done:
            return value
        if key in self._active:
            chain = " -> ".join(self._active[self._active.index(key):] + [key])
            raise VarCycle(chain)
        self._active.append(key)
        try:
            value = self._render(value, f"vars.{key}")
        finally:
            self._active.pop()
        super().__setitem__(key, value)
        self._done.add(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if dict.__contains__(self, key) else default

    def __contains__(self, key: object) -> bool:
        looked_up = getattr(self, "looked_up", None)
        if looked_up is not None:
            looked_up.add(key)
        return dict.__contains__(self, key)

    # Rendered values (what a template would see), so a list rather than dict's live
    # view of the raw ones.
    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(k, self[k]) for k in self.keys()]

    def values(self) -> list[Any]:  # type: ignore[override]  # rendered, as items()
        return [self[k] for k in self.keys()]

    def raw(self, key: str) -> Any:
        """The value as written (not rendered)."""
        return super().__getitem__(key)

    def set_done(self, key: str, value: Any) -> None:
        """Set ``key`` to a value that is never rendered (globals, ``host``, ``extra``)."""
        dict.__setitem__(self, key, value)
        self._done.add(key)
