"""One generic registry for tasks and methods.

Entries are registered under string ids; duplicates are rejected; an unknown id raises `UnknownIdError`
naming the closest registered ids ("did you mean ..."). Values may be given as lazy ``"module:attr"`` entry
points, so listing a registry never imports torch-heavy modules; `load_entry_point` resolves them.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import DuplicateIdError, UnknownIdError

T = TypeVar("T")


def load_entry_point(ref: str):
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"entry point {ref!r} is not of the form 'module:attr'")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def did_you_mean(name: str, candidates: list[str], n: int = 3) -> str:
    """"; did you mean 'a', 'b'?" naming the candidates closest to `name` (difflib ratio, best first), or ""
    when none is close: the one suggestion every unknown id, task or recipe gets."""
    hints = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    return "; did you mean " + ", ".join(repr(h) for h in hints) + "?" if hints else ""


class Registry(Generic[T]):
    """A mapping from id to entry with duplicate rejection and helpful unknown-id errors.

    `aliases` maps extra names onto ids (used by the task registry for version-less ids); an alias lookup
    function may be supplied to compute them lazily."""

    def __init__(self, kind: str, *, normalize: Callable[[str], str] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._normalize = normalize or (lambda s: s)

    def register(self, id: str, entry: T) -> T:
        if id in self._entries:
            raise DuplicateIdError(f"{self.kind} {id!r} is already registered")
        self._entries[id] = entry
        return entry

    def unregister(self, id: str) -> None:
        self._entries.pop(id, None)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and self._normalize(id) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(k, self._entries[k]) for k in self.ids()]

    def get(self, id: str) -> T:
        key = self._normalize(id)
        try:
            return self._entries[key]
        except KeyError:
            raise self.unknown(id) from None

    def unknown(self, id: str, candidates: list[str] | None = None) -> UnknownIdError:
        names = candidates if candidates is not None else self.ids()
        hint = did_you_mean(id, names) or f"; see `python -m suite ls {self.kind}s`"
        return UnknownIdError(f"unknown {self.kind} {id!r}{hint}")
