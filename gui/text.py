"""Small wording helpers shared by the views (counts with the right plural, durations)."""
from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 photo"``, ``"2 photos"``; ``many`` for irregular plurals (``plural(n, "copy", "copies")``)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
