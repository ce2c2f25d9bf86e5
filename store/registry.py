"""One shape for what is pluggable (as timm's model registry): an ordered mapping name -> entry with
``names`` (list), ``[name]`` / ``get`` (get) and ``is_known``, built from explicit entries (no directory
scans). It lives in ``store`` because the store may import nothing of ``engine``; the engine's
registries can use it too."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """The entries of one kind (``kind`` names it in errors), in the order given; ``name_of`` gives
    an entry's name."""

    def __init__(self, kind: str, entries: Iterable[T], name_of: Callable[[T], str]):
        self.kind, self._name_of, self._entries = kind, name_of, {}
        for entry in entries:
            self.add(entry)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r} (known: {', '.join(self._entries)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def is_known(self, name: str) -> bool:
        return name in self._entries

    def add(self, entry: T) -> T:
        """Register one more entry (a plug-in's), after the others; a name is registered once."""
        name = self._name_of(entry)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> T:
        entry = self[name]  # an unknown name: the KeyError above
        del self._entries[name]
        return entry

    def where(self, keep: Callable[[T], bool]) -> "Names":
        """The names of the entries ``keep`` accepts, read afresh at each use (so an entry added later is
        among them)."""
        return Names(self, keep)


class Names(Sequence[str]):
    """A registry's names filtered by a predicate: a sequence that follows the registry."""

    def __init__(self, registry: Registry, keep: Callable):
        self._registry, self._keep = registry, keep

    def _names(self) -> list[str]:
        return [name for name, entry in self._registry.items() if self._keep(entry)]

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __repr__(self) -> str:
        return f"Names({self._names()!r})"
