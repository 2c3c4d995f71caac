"""The CLI's progress of an indexing run on stderr: count, rate, ETA and failures.

On a terminal a tqdm bar is redrawn in place (at most ten times a second). Anywhere else (a
log file, a pipe, CI) the same line is written as a line of its own at most every
``log_interval_s`` seconds and at the end, so a long run leaves a readable log rather than a
flood of lines or one endless line of carriage returns. Rate and ETA are the indexer's own
(:class:`engine.indexing.indexer.IndexProgress`), the ETA worded like the GUI's status bar
(:func:`engine.services.formatting.format_duration`).
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

from engine.indexing.indexer import IndexProgress
from engine.services.formatting import format_duration

BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt}{postfix}"
LOG_WIDTH = 100  # columns of a logged line (no terminal to ask)


def progress_details(p: IndexProgress) -> str:
    """What follows the count: ``"2.5 img/s, ETA 1:04, failed 0"``."""
    return f"{p.images_per_s:.1f} img/s, ETA {format_duration(p.eta_s)}, failed {p.failed}"


class ProgressBar:
    """An ``IndexProgress`` callback that draws on ``stream`` (default: stderr)."""

    def __init__(self, stream: TextIO | None = None, log_interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.log_interval_s = log_interval_s
        self.clock = clock
        self._bar: tqdm | None = None
        self._started: float | None = None
        self._logged_at: float | None = None

    def __call__(self, p: IndexProgress) -> None:
        if p.phase == "indexing":
            (self._draw if self.tty else self._log)(p)
            return
        self._close_bar()
        self._write(f"finished: {p.done} computed, {p.failed} failed" if p.phase == "finished" else f"{p.phase}...")

    def _draw(self, p: IndexProgress) -> None:
        if self._bar is None:
            self._bar = tqdm(total=p.total, file=self.stream, unit="img", bar_format=BAR_FORMAT,
                             mininterval=0.1, dynamic_ncols=True, postfix=progress_details(p))
        else:
            self._bar.set_postfix_str(progress_details(p), refresh=False)
        self._bar.update(p.done - self._bar.n)

    def _log(self, p: IndexProgress) -> None:
        now = self.clock()
        if self._started is None:
            self._started = now
        recent = self._logged_at is not None and now - self._logged_at < self.log_interval_s
        if recent and p.done < p.total:
            return
        self._logged_at = now
        self._write(tqdm.format_meter(p.done, p.total, now - self._started, ncols=LOG_WIDTH, ascii=True,
                                      bar_format=BAR_FORMAT, postfix=progress_details(p)))

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()  # draws the final state and ends its line
            self._bar = None

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
