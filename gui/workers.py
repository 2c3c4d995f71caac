"""The one way the GUI runs work off its thread: :class:`TaskRunner`, a QThreadPool of :class:`Task` s.

Every background job of the window goes through it: indexing, queries, explanations, score
calibration, thumbnails, folder rescans, the duplicates scan and its verification, training.
A job is a plain function ``fn(task)`` run in a pool thread. What it returns reaches
``on_result`` and what it raises reaches ``on_error`` as a readable message, both on the GUI
thread (queued signals into a QObject living there). ``task.report(value)`` sends progress to
``on_progress`` (also on the GUI thread) and is where a paused task waits; a job that can stop
early checks ``task.cancel_event`` between its steps.

Each task has a ``kind`` ("query", "index", ...). With ``latest_only`` (the default) only the
newest task of a kind delivers anything: a query that finishes after a newer one started is
dropped, as is the progress of a duplicates scan the user already replaced. Long jobs get a
runner of their own (indexing, thumbnails, duplicates), so that they never hold the threads
queries and explanations run on.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from engine.errors import LookalikeError

log = logging.getLogger(__name__)


def readable_error(exc: BaseException) -> str:
    """A one-paragraph message for the user (engine errors are already readable)."""
    if isinstance(exc, LookalikeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Not enough memory for this operation. Try a smaller method or the CPU device."
    return f"Unexpected error: {exc.__class__.__name__}: {exc}"


class _TaskSignals(QObject):
    result = Signal(object)
    error = Signal(str)
    progress = Signal(object)


class Task(QRunnable):
    """One job: ``fn(task)`` in a pool thread, with progress, pause and cancel.

    ``progress`` is a signal emitted in the pool thread by :meth:`report` (the runner delivers
    it to the GUI thread; a direct connection runs in the pool thread, before the pause check).
    """

    def __init__(self, fn: Callable[["Task"], Any], kind: str):
        super().__init__()
        self.setAutoDelete(False)  # the runner keeps it until it has reported
        self.fn = fn
        self.kind = kind
        self.signals = _TaskSignals()
        self.cancel_event = threading.Event()
        self._resume = threading.Event()
        self._resume.set()

    @property
    def progress(self):
        return self.signals.progress

    # Called from the GUI thread.
    def cancel(self) -> None:
        self.cancel_event.set()
        self._resume.set()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._resume.clear()
        else:
            self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    # Called in the pool thread.
    def report(self, value: Any) -> None:
        """Send ``value`` as progress; while the task is paused, wait here (cancel ends the wait)."""
        self.signals.progress.emit(value)
        while not self._resume.wait(0.1):
            if self.cancel_event.is_set():
                break

    def run(self) -> None:
        try:
            value = self.fn(self)
        except Exception as exc:  # every failure reaches the window as a message
            if not isinstance(exc, LookalikeError):
                log.exception("background task %r failed", self.kind)
            self.signals.error.emit(readable_error(exc))
            return
        self.signals.result.emit(value)


class _Delivery(QObject):
    """GUI-thread receiver of one task's signals (a QObject, so that delivery is queued to the
    GUI thread; a bare Python callable could run in the pool thread)."""

    def __init__(self, runner: "TaskRunner", task: Task, on_result, on_error, on_progress):
        super().__init__(runner)
        self.runner, self.task = runner, task
        self.on_result, self.on_error, self.on_progress = on_result, on_error, on_progress

    @Slot(object)
    def result(self, value) -> None:
        if self.runner._finish(self.task):
            self.on_result(value)
        self.deleteLater()

    @Slot(str)
    def error(self, message: str) -> None:
        if self.runner._finish(self.task):
            self.on_error(message)
        self.deleteLater()

    @Slot(object)
    def progress(self, value) -> None:
        if self.on_progress is not None and self.runner._delivers(self.task):
            self.on_progress(value)


class TaskRunner(QObject):
    """Starts :class:`Task` s on a private pool of ``threads`` and keeps them until they report."""

    def __init__(self, parent: QObject | None = None, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, threads))
        self._latest: dict[str, Task] = {}
        self._running: dict[int, Task] = {}
        self._latest_only: dict[str, bool] = {}

    def start(self, kind: str, fn: Callable[[Task], Any], on_result: Callable[[Any], None],
              on_error: Callable[[str], None], on_progress: Callable[[Any], None] | None = None,
              latest_only: bool = True) -> Task:
        task = Task(fn, kind)
        self._latest[kind] = task
        self._latest_only[kind] = latest_only
        self._running[id(task)] = task
        delivery = _Delivery(self, task, on_result, on_error, on_progress)
        task.signals.result.connect(delivery.result)
        task.signals.error.connect(delivery.error)
        task.signals.progress.connect(delivery.progress)
        self.pool.start(task)
        return task

    def _delivers(self, task: Task) -> bool:
        return not self._latest_only.get(task.kind, True) or self._latest.get(task.kind) is task

    def _finish(self, task: Task) -> bool:
        """Forget ``task``; True when its result is to be delivered."""
        self._running.pop(id(task), None)
        return self._delivers(task)

    def running(self, kind: str) -> Task | None:
        """The latest task of ``kind`` while it runs, else None."""
        task = self._latest.get(kind)
        return task if task is not None and id(task) in self._running else None

    def busy(self, kind: str | None = None) -> bool:
        if kind is None:
            return bool(self._running)
        return self.running(kind) is not None

    def wait(self, msecs: int = 60000) -> bool:
        return self.pool.waitForDone(msecs)
