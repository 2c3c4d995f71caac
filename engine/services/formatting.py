"""Wording shared by the CLI and the GUI: durations and counts.

One place, so a progress line in the terminal and the status bar in the window read alike.
"""
from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 photo"``, ``"2 photos"``; ``many`` for irregular plurals (``plural(n, "copy", "copies")``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def format_duration(seconds: float | None) -> str:
    """``"4:05"``, ``"1:02:03"``; ``"?"`` when unknown (no rate measured yet)."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
