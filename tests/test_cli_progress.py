"""engine.cli.progress: a bar redrawn in place on a terminal, a line every few seconds elsewhere."""
from __future__ import annotations

import io
import sys

from engine.cli.progress import ProgressBar
from engine.indexing.indexer import IndexProgress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(bar: ProgressBar, n: int, clock=None) -> None:
    bar(IndexProgress("scanning"))
    for done in range(n + 1):
        if clock is not None:
            clock[0] = done * 0.2  # 5 photos a second
        bar(IndexProgress("indexing", done, n, done // 10, 5.0, (n - done) / 5.0, f"{done}.jpg"))
    bar(IndexProgress("finished", n, n, n // 10))


def test_on_a_terminal_the_bar_is_redrawn_in_place_with_count_rate_eta_and_failures(monkeypatch):
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)  # the default stream is the terminal's stderr
    bar = ProgressBar()
    assert bar.tty
    _run(bar, 20)
    out = term.getvalue()
    lines = out.split("\n")
    assert lines[0] == "scanning..." and lines[-2] == "finished: 20 computed, 2 failed" and lines[-1] == ""
    drawn = lines[1]  # every redraw of the bar is on this one line, separated by carriage returns
    assert drawn.count("\r") >= 2
    assert drawn.rsplit("\r", 1)[-1].endswith("20/20, 5.0 img/s, ETA 0:00, failed 2")


def test_elsewhere_a_line_is_written_every_few_seconds_not_one_per_photo():
    log, clock = io.StringIO(), [0.0]
    bar = ProgressBar(log, log_interval_s=5.0, clock=lambda: clock[0])
    assert not bar.tty
    _run(bar, 100, clock)  # 20 seconds of indexing
    out = log.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    progress = lines[1:-1]
    assert lines[0] == "scanning..." and lines[-1] == "finished: 100 computed, 10 failed"
    assert len(progress) == 5  # at 0, 5, 10, 15 s and the last photo
    assert progress[0].endswith("0/100, 5.0 img/s, ETA 0:20, failed 0")
    assert progress[-1].endswith("100/100, 5.0 img/s, ETA 0:00, failed 10")


def test_an_unknown_eta_reads_as_a_question_mark():
    log = io.StringIO()
    ProgressBar(log)(IndexProgress("indexing", 0, 10, 0, 0.0, None))
    assert log.getvalue().rstrip().endswith("0/10, 0.0 img/s, ETA ?, failed 0")
