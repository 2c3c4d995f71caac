"""Indexing the open collection in a task, with progress, ETA, pause and cancel in the status bar.

The indexer runs as the one task of a :class:`gui.workers.TaskRunner` of its own (a long run
never holds the threads queries use). Pause blocks it between batches (in its progress report);
cancel stops it between batches: stored batches are kept, and the next run goes on from there.
A run that did not finish is remembered in the settings and resumed when the collection opens.
"""
from __future__ import annotations

import os
import time

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

from engine.api import IndexProgress, IndexReport
from engine.services.formatting import format_duration, plural

from ..banner import MessageBanner
from ..settings import AppSettings
from ..workers import Task, TaskRunner
from .methods import MethodChoice
from .session import CollectionSession

PROGRESS_EVERY_S = 2.0  # aim: an indexing progress update this often (photos per catalog commit follow)


class IndexingController(QObject):
    """``start(method)``; ``started()``, ``progressed(IndexProgress)`` (while photos are indexed)
    and ``finished(IndexReport, or None after an error)`` on the GUI thread. ``batch_size`` (photos per catalog commit) None:
    from the method's speed; ``overrides``: method settings for a method's first indexing."""

    started = Signal()
    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, session: CollectionSession, methods: MethodChoice, settings: AppSettings,
                 banner: MessageBanner, status_bar: QStatusBar, batch_size: int | None = None,
                 overrides: dict | None = None):
        super().__init__(session)
        self.session, self.methods, self.settings, self.banner = session, methods, settings, banner
        self.status_bar = status_bar
        self.batch_size, self.overrides = batch_size, overrides
        self.runner = TaskRunner(self, threads=1)
        self.method: str | None = None
        self.total = 0  # photos the running indexing found (0: none running, or still scanning)
        self._paused_at: float | None = None
        self._paused_s = 0.0
        self._started = 0.0
        self._first_done: int | None = None
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.label = QLabel("")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._on_pause)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing; finished photos are kept and the next run goes on from there")
        self.cancel_button.clicked.connect(self.cancel)
        for w in (self.label, self.progress, self.pause_button, self.cancel_button):
            status_bar.addPermanentWidget(w)
        self._show_progress(False)

    @property
    def task(self) -> Task | None:
        """The running indexing task, or None."""
        return self.runner.running("index")

    def running(self) -> bool:
        return self.task is not None

    def found(self) -> int | None:
        """Photos the running indexing found (0 while it scans), or None when none runs."""
        return self.total if self.running() else None

    def start(self, method: str | None = None, verify_hashes: list[str] | None = None) -> bool:
        col = self.session.collection
        if col is None or self.running():
            return False
        if col.read_only:
            self.banner.show_message("An archive is opened read-only: it is indexed only by "
                                     f"'lookalike archive index --out {col.directory}'.")
            return False
        if not col.folders():
            self.banner.show_message("This collection has no folders yet: add a photo folder (or drop one on the window).")
            return False
        method = self.method = method or col.active_method
        overrides = None if col.has_method_settings(method) else self.overrides
        batch = self.batch_size or self._commit_size(method)
        hashes = verify_hashes or []  # files the folder watcher saw edited in place
        self.settings.set_resume_method(str(col.directory), method)
        self.pause_button.setChecked(False)
        self.banner.hide_message()  # "no folders yet" and the like are answered now
        self._paused_at, self._paused_s = None, 0.0
        self._started, self._first_done = time.monotonic(), None
        self.total = 0
        self.progress.setRange(0, 0)
        self.label.setText(f"Indexing with {method}: scanning folders…")
        self._show_progress(True)
        self.runner.start("index", lambda task: col.index(method=method, progress=task.report, cancel=task.cancel_event,
                                                          batch_size=batch, overrides=overrides, verify_hashes=hashes),
                          self._on_finished, self._on_error, on_progress=self._on_progress)
        self.started.emit()
        return True

    def resume_if_interrupted(self, col) -> None:
        """A collection opened whose last indexing did not finish: go on with it."""
        method = None if col.read_only else self.settings.resume_method(str(col.directory))
        if method and col.folders():
            self.banner.show_message(f"Resuming the interrupted indexing of this collection with {method}.", info=True)
            QTimer.singleShot(0, lambda: self.start(method))

    def _commit_size(self, method: str) -> int:
        """Photos per catalog commit, so that progress moves about every ``PROGRESS_EVERY_S``
        (a slow method at 0.3 photos/s reported only every 8 photos, 25 s apart)."""
        speed, _source = self.methods.speed(method)
        return max(1, min(8, int(speed * PROGRESS_EVERY_S))) if speed else 1

    def _show_progress(self, on: bool) -> None:
        for w in (self.progress, self.label, self.pause_button, self.cancel_button):
            w.setVisible(on)

    # -- pause and cancel ---------------------------------------------------------------------
    def pause(self, paused: bool = True) -> None:
        self.pause_button.setChecked(paused)

    def _on_pause(self, paused: bool) -> None:
        task = self.task
        if task is None:
            return
        task.set_paused(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        now = time.monotonic()
        if paused:
            self._paused_at = now
            self.label.setText("Paused: " + self.label.text().split(" · ETA")[0] + " · press Resume to go on")
        elif self._paused_at is not None:
            self._paused_s += now - self._paused_at
            self._paused_at = None
            self.label.setText(self.label.text().replace("Paused: ", "Resuming: ", 1))

    def cancel(self) -> None:
        task = self.task
        if task is not None:
            task.cancel()
            self.label.setText("Cancelling after the current photos…")

    def wait(self, msecs: int = 120000) -> bool:
        """Block until the indexing task ended (tests, shutdown)."""
        return self.runner.wait(msecs)

    # -- progress and the end -----------------------------------------------------------------
    def _rate(self, done: int) -> float | None:
        """Photos per second of this run, paused time left out (the indexer's own rate
        counts a pause as slowness, so the ETA jumped after Resume)."""
        if self._first_done is None:
            self._first_done, self._started = done, time.monotonic()
            return None
        elapsed = time.monotonic() - self._started - self._paused_s
        n = done - self._first_done
        return n / elapsed if n > 0 and elapsed > 0 else None

    def _on_progress(self, p: IndexProgress) -> None:
        task = self.task
        if task is None:
            return
        if p.phase == "scanning":
            self.progress.setRange(0, 0)
            self.label.setText("Scanning folders…")
        elif p.phase == "preparing":
            self.progress.setRange(0, 0)
            self.label.setText("Learning the method's settings on a sample…")
        elif p.phase == "indexing":
            self.progress.setRange(0, max(1, p.total))
            self.progress.setValue(p.done)
            rate = self._rate(p.done) or p.images_per_s
            eta = (p.total - p.done) / rate if rate > 0 else None
            failed = f" · {p.failed} failed" if p.failed else ""
            state = "Paused: " if task.paused else ""
            self.label.setText(f"{state}{p.done} of {plural(p.total, 'photo')} · {rate:.1f} photos/s · "
                               f"ETA {format_duration(eta)}{failed}")
            self.total = p.total
            if rate > 0 and self.method:
                self.settings.set_method_speed(self.method, rate)
            self.progressed.emit(p)

    def _on_finished(self, report: IndexReport) -> None:
        col = self.session.collection
        if col is not None and not report.cancelled:
            self.settings.set_resume_method(str(col.directory), None)
        for path, reason in report.failed:
            self.status_bar.showMessage(f"Could not index {os.path.basename(path)}: {reason}", 8000)
        msg = (f"Indexed {plural(report.indexed, 'new photo')} ({report.unchanged} unchanged, {report.removed} removed"
               f"{', ' + str(len(report.failed)) + ' failed' if report.failed else ''}) in {report.seconds:.1f} s")
        if report.cancelled:
            msg = "Indexing cancelled: " + msg + ". It resumes where it stopped next time."
        self.status_bar.showMessage(msg, 15000)
        self._show_progress(False)
        self.finished.emit(report)

    def _on_error(self, message: str) -> None:
        self.banner.show_message(f"Indexing failed: {message}")
        self._show_progress(False)
        self.finished.emit(None)
