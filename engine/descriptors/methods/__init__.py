"""Registry of descriptor methods: ``METHODS`` maps a name to its :class:`MethodSpec`.

Each module in this package that defines ``SPECS`` (a tuple of MethodSpec) contributes its
methods; modules are found by listing the package, so adding a method is adding a module.
An import error in a method module is raised, never hidden.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from engine.errors import LookalikeError
from engine.descriptors.methods.base import Method, MethodConfig, MethodSpec, State


def _collect() -> dict[str, MethodSpec]:
    registry: dict[str, MethodSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for spec in getattr(module, "SPECS", ()):
            if spec.name in registry:
                raise RuntimeError(f"method name {spec.name!r} registered twice")
            registry[spec.name] = spec
    return registry


METHODS: dict[str, MethodSpec] = _collect()
# Chosen by leave-one-query-out over both sets' given queries (engine.evaluation.selection) and
# checked on every positive as a query: see docs/RESULTS.md, "The default method, chosen
# leave-one-query-out". Collections keep the method they were indexed with.
DEFAULT_METHOD = "seddati-cam"


def create_method(name: str, overrides: dict[str, Any] | None = None) -> Method:
    """Build method ``name`` with its default config updated by ``overrides``."""
    if name not in METHODS:
        raise LookalikeError(f"Unknown method '{name}'. Available: {', '.join(sorted(METHODS))}.")
    return METHODS[name].create(overrides)


__all__ = ["METHODS", "DEFAULT_METHOD", "Method", "MethodConfig", "MethodSpec", "State", "create_method"]
