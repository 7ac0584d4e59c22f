"""Plug-ins: features that register themselves into the lower layers' registries.

    from bapo_exp.plugins import load_plugins
    load_plugins()   # idempotent; the entrypoint calls it, a registry miss calls it

A plug-in is a module with a ``register()`` function. Built in: ``bapo_exp.synthetic.plugin``
(the synthetic world: its dataset, the ``micro`` model source, its eval suites and its exact
style check). More come from the ``bapo_exp.plugins`` entry-point group of installed packages
and from the ``BAPO_PLUGINS`` environment variable (comma-separated module names), e.g. a
test-only loss. A built-in plug-in whose package is absent is skipped (deleting
``bapo_exp/synthetic`` leaves the rest working); any other plug-in that fails to import is an
error.
"""

from __future__ import annotations

import importlib
import logging
import os
from importlib import metadata

log = logging.getLogger(__name__)

BUILTIN = ("bapo_exp.synthetic.plugin",)
ENTRY_POINTS = "bapo_exp.plugins"
ENV = "BAPO_PLUGINS"

_loaded: dict[str, bool] = {}


def plugin_modules() -> list[tuple[str, bool]]:
    """``(module, optional)`` of every plug-in: built-ins (optional), entry points, env."""
    mods = [(m, True) for m in BUILTIN]
    mods += [(ep.value.split(":")[0], False) for ep in metadata.entry_points(group=ENTRY_POINTS)]
    mods += [(m.strip(), False) for m in os.environ.get(ENV, "").split(",") if m.strip()]
    return mods


def _absent(err: ModuleNotFoundError, module: str) -> bool:
    """The plug-in's own package is missing (not a dependency of it)."""
    missing = err.name or ""
    return module == missing or module.startswith(missing + ".")


def load_plugins() -> list[str]:
    """Import every plug-in once and call its ``register()``; returns the loaded modules."""
    for module, optional in plugin_modules():
        if module in _loaded:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if optional and _absent(err, module):
                log.debug("built-in plug-in %s is absent: skipped", module)
                _loaded[module] = False
                continue
            raise ImportError(f"plug-in {module!r} cannot be imported: {err}") from err
        _loaded[module] = True  # before register(): a registry miss inside must not recurse
        mod.register()
    return [m for m, ok in _loaded.items() if ok]
