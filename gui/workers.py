"""Background work for the GUI: indexing in a QThread, queries and explanations in a pool.

The UI thread never computes a descriptor: it calls :class:`engine.api.Collection` from
these workers and receives results through queued signals.
"""
from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from engine.errors import LookalikeError
from engine.indexing.indexer import IndexProgress, IndexReport


def readable_error(exc: BaseException) -> str:
    """A one-paragraph message for the user (engine errors are already readable)."""
    if isinstance(exc, LookalikeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Not enough memory for this operation. Try a smaller method or the CPU device."
    return f"Unexpected error: {exc.__class__.__name__}: {exc}"


class IndexWorker(QObject):
    """Indexes a collection in its own QThread.

    Signals: ``progress(IndexProgress)``, ``file_failed(path, reason)`` (once per failed file,
    at the end of the run), ``finished(IndexReport)``, ``error(message)``. Pause blocks the
    indexer between batches (in its progress callback); cancel stops it between batches
    (already stored batches are kept, so the next run resumes where this one stopped).
    """

    progress = Signal(object)
    file_failed = Signal(str, str)
    finished = Signal(object)
    error = Signal(str)

    def __init__(self, collection, method: str | None, batch_size: int = 8, overrides: dict | None = None,
                 verify_hashes: list[str] | None = None):
        super().__init__()
        self.collection = collection
        self.method = method
        self.batch_size = batch_size
        self.overrides = overrides
        self.verify_hashes = verify_hashes or []  # files the folder watcher saw edited in place
        self.cancel_event = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self.started_at = 0.0

    # Called from the UI thread.
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

    # Runs in the worker thread.
    def _on_progress(self, p: IndexProgress) -> None:
        self.progress.emit(p)
        while not self._resume.wait(0.1):
            if self.cancel_event.is_set():
                break

    @Slot()
    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            report: IndexReport = self.collection.index(method=self.method, progress=self._on_progress,
                                                        cancel=self.cancel_event, batch_size=self.batch_size,
                                                        overrides=self.overrides, verify_hashes=self.verify_hashes)
        except Exception as exc:  # every failure reaches the window as a message
            traceback.print_exc()
            self.error.emit(readable_error(exc))
            return
        for path, reason in report.failed:
            self.file_failed.emit(path, reason)
        self.finished.emit(report)


class IndexThread(QThread):
    """A QThread owning an :class:`IndexWorker` (the worker's ``run`` is the thread's body)."""

    def __init__(self, worker: IndexWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.worker = worker

    def run(self) -> None:
        self.worker.run()


class _TaskSignals(QObject):
    result = Signal(object)
    error = Signal(str)


class Task(QRunnable):
    """Run ``fn()`` in a pool thread; ``signals.result(value)`` or ``signals.error(message)``."""

    def __init__(self, fn: Callable[[], Any]):
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.signals = _TaskSignals()

    def run(self) -> None:
        try:
            value = self.fn()
        except Exception as exc:
            if not isinstance(exc, LookalikeError):
                traceback.print_exc()
            self.signals.error.emit(readable_error(exc))
            return
        self.signals.result.emit(value)


class _Delivery(QObject):
    """UI-thread receiver of one task's signals (a QObject, so delivery is queued to the UI
    thread; a bare Python callable might run in the pool thread)."""

    def __init__(self, runner: "TaskRunner", tid: int, kind: str, on_result, on_error):
        super().__init__(runner)
        self.runner, self.tid, self.kind = runner, tid, kind
        self.on_result, self.on_error = on_result, on_error

    @Slot(object)
    def result(self, value) -> None:
        if self.runner._finish(self.tid, self.kind):
            self.on_result(value)
        self.deleteLater()

    @Slot(str)
    def error(self, message: str) -> None:
        if self.runner._finish(self.tid, self.kind):
            self.on_error(message)
        self.deleteLater()


class TaskRunner(QObject):
    """Starts :class:`Task` s on a private pool and keeps them alive until they report.

    Each task has a ``kind`` ("query", "explain", ...); only the latest task of a kind
    delivers its result (an older query finishing late is dropped), and ``busy()`` tells
    whether anything is still running.
    """

    def __init__(self, parent: QObject | None = None, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._latest: dict[str, int] = {}
        self._running: dict[int, Task] = {}
        self._next = 0

    def start(self, kind: str, fn: Callable[[], Any], on_result: Callable[[Any], None],
              on_error: Callable[[str], None]) -> int:
        self._next += 1
        tid = self._next
        self._latest[kind] = tid
        task = Task(fn)
        self._running[tid] = task
        delivery = _Delivery(self, tid, kind, on_result, on_error)
        task.signals.result.connect(delivery.result)
        task.signals.error.connect(delivery.error)
        self.pool.start(task)
        return tid

    def _finish(self, tid: int, kind: str) -> bool:
        """Forget task ``tid``; True when it is still the latest of its kind."""
        self._running.pop(tid, None)
        return self._latest.get(kind) == tid

    def busy(self, kind: str | None = None) -> bool:
        if kind is None:
            return bool(self._running)
        tid = self._latest.get(kind)
        return tid is not None and tid in self._running

    def wait(self, msecs: int = 60000) -> bool:
        return self.pool.waitForDone(msecs)
