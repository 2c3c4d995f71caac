"""Measured speed and accuracy of each method, as the app shows them when a person chooses one.

``measured.json`` beside this module is written by ``make results`` (``main.py eval ...
--results-md docs/RESULTS.md --measured engine/descriptors/methods/measured.json``) from the same evaluation runs that produce docs/RESULTS.md, so
the method picker's time estimates and the ``methods`` listing quote measurements, never
guesses. A method absent from the file has not been measured (its entry says None).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

MEASURED_FILE = Path(__file__).with_name("measured.json")


@lru_cache(maxsize=1)
def load_measured(path: Path = MEASURED_FILE) -> dict[str, dict[str, Any]]:
    """``method -> {"images_per_s": ..., "<dataset>:<crop>": mAP, ...}`` ({} when absent).
    Cached: treat the result as read-only."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data.get("methods", {})


def write_measured(methods: dict[str, dict[str, Any]], note: str, path: Path = MEASURED_FILE) -> None:
    """Replace the file with ``methods`` (see :func:`load_measured`) and a provenance ``note``."""
    from engine.store.atomic import atomic_write_text

    atomic_write_text(path, json.dumps({"note": note, "methods": methods}, indent=1, sort_keys=True))
    load_measured.cache_clear()
