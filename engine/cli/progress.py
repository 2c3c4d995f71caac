"""A terminal progress bar on stderr for long work (count, rate, ETA)."""
from __future__ import annotations

import sys
import time

from engine.indexing.indexer import IndexProgress


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    def __init__(self, stream=None, width: int = 30):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last = 0.0
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, p: IndexProgress) -> None:
        now = time.monotonic()
        if p.phase == "indexing" and p.done < p.total and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        if p.phase != "indexing":
            line = f"{p.phase}..." if p.phase != "finished" else f"finished: {p.done} computed, {p.failed} failed"
        else:
            frac = p.done / p.total if p.total else 1.0
            bar = "#" * int(frac * self.width)
            line = (f"[{bar:<{self.width}}] {p.done}/{p.total}  {p.images_per_s:5.1f} img/s  "
                    f"ETA {format_eta(p.eta_s)}  failed {p.failed}")
        self.stream.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        if p.phase == "finished" and self.tty:
            self.stream.write("\n")
        self.stream.flush()
