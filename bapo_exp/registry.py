"""Named registries: the extension points of every layer (datasets, model sources, methods, eval
suites, style checks), one small class for all of them.

    from bapo_exp.registry import Registry
    DATASETS: Registry[Builder] = Registry("dataset", config_key="data.name")
    DATASETS.register("dsp", dsp.build)
    builder = DATASETS.require(cfg.data.name)   # unknown: KeyError with the names, a suggestion

A lookup that misses first loads the plug-ins (``bapo_exp.plugins``), so a feature such as the
synthetic world registers itself without the lower layer ever naming it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Mapping[str, T], Generic[T]):
    """A name -> item mapping that extensions register into.

    Args:
        kind: what the items are, for error messages ("dataset", "eval suite").
        config_key: the config key that selects an item ("data.name"), named in errors.
    """

    def __init__(self, kind: str, config_key: str | None = None) -> None:
        self.kind = kind
        self.config_key = config_key
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """Add ``item`` under ``name``; registering a taken name needs ``replace=True``."""
        if name in self._items and not replace and self._items[name] is not item:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def _load_plugins_for(self, name: str) -> None:
        if name not in self._items:
            from bapo_exp.plugins import load_plugins

            load_plugins()

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        """The item of ``name``, else ``default`` (the plug-ins are loaded first on a miss)."""
        self._load_plugins_for(name)
        return self._items.get(name, default)

    def require(self, name: str) -> T:
        """The item of ``name``; ``KeyError`` naming the valid choices (and the closest one)."""
        self._load_plugins_for(name)
        if name not in self._items:
            raise KeyError(self.unknown(name))
        return self._items[name]

    def unknown(self, name: str) -> str:
        """The error text for an unknown ``name``."""
        names = sorted(self._items)
        where = f" ({self.config_key}={name})" if self.config_key else ""
        return f"unknown {self.kind} {name!r}{where}{did_you_mean(name, names)}; available: {names}"

    def __getitem__(self, name: str) -> T:
        return self.require(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"
