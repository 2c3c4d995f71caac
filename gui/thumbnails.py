"""Lazily loaded thumbnails for item views: decoded off the UI thread, cached in memory and on disk.

Usage from a model's ``data(DecorationRole)``::

    pix = provider.request(path, 160)   # QPixmap, or None while it is being decoded
    provider.ready.connect(on_ready)    # ready(path) once it can be requested again

Decoding and the disk cache are in :mod:`engine.imaging.thumbnails` (Qt-free). Requests are served
newest first (a LIFO stack), so while the user scrolls a long grid the rows now visible are
decoded before those scrolled past. A file that cannot be decoded gets a "broken image"
placeholder (and ``failed(path, reason)``), never an endless "loading" state.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap

from engine.errors import ImageLoadError
from engine.imaging.thumbnails import bucket_for, load_thumbnail


def pil_to_qimage(img) -> QImage:
    """A deep-copied QImage of an RGB PIL image (safe to build in any thread)."""
    img = img.convert("RGB")
    data = img.tobytes("raw", "RGB")
    q = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888)
    return q.copy()


class _Relay(QObject):
    """Lives in the UI thread; worker threads emit on it (queued to the UI thread)."""

    done = Signal(str, int, QImage)
    error = Signal(str, int, str)


class _Job(QRunnable):
    def __init__(self, provider: "ThumbnailProvider"):
        super().__init__()
        self.setAutoDelete(True)
        self._provider = provider

    def run(self) -> None:  # worker thread
        item = self._provider._pop()
        if item is None:
            return
        path, bucket = item
        try:
            qimg = pil_to_qimage(load_thumbnail(path, bucket))
        except ImageLoadError as exc:
            self._provider._relay.error.emit(path, bucket, exc.reason)
            return
        except Exception as exc:  # a decoder bug must not kill the pool thread
            self._provider._relay.error.emit(path, bucket, f"{exc.__class__.__name__}: {exc}")
            return
        self._provider._relay.done.emit(path, bucket, qimg)


class ThumbnailProvider(QObject):
    """Thumbnails of image files for any view; shared by the search, browse and duplicates views."""

    ready = Signal(str)  # path: request() now returns its pixmap
    failed = Signal(str, str)  # path, readable reason (a placeholder pixmap is served)

    def __init__(self, parent: QObject | None = None, memory_items: int = 2000, threads: int = 2):
        super().__init__(parent)
        self._pixmaps: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self._scaled: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
        self._memory_items = memory_items
        self._errors: dict[str, str] = {}
        self._stack: list[tuple[str, int]] = []
        self._queued: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, threads))
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)
        self._relay.error.connect(self._on_error, Qt.ConnectionType.QueuedConnection)

    # -- public -------------------------------------------------------------------------
    def request(self, path: str, size: int) -> QPixmap | None:
        """The thumbnail of ``path`` fitting ``size`` px, or None while it is being loaded."""
        bucket = bucket_for(size)
        key = (path, bucket)
        pix = self._pixmaps.get(key)
        if pix is None:
            if path in self._errors:
                return self._broken(size)
            self._enqueue(key)
            return None
        self._pixmaps.move_to_end(key)
        if max(pix.width(), pix.height()) <= size:
            return pix
        skey = (path, size)
        scaled = self._scaled.get(skey)
        if scaled is None:
            scaled = pix.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                Qt.TransformationMode.SmoothTransformation)
            self._scaled[skey] = scaled
            while len(self._scaled) > self._memory_items:
                self._scaled.popitem(last=False)
        return scaled

    def error(self, path: str) -> str | None:
        """Why ``path`` has no thumbnail (None when it has one or is still loading)."""
        return self._errors.get(path)

    def clear_pending(self) -> None:
        """Forget queued requests (e.g. a new query replaced the results)."""
        with self._lock:
            self._stack.clear()
            self._queued.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self._stack)

    def wait_idle(self, msecs: int = 30000) -> bool:
        """Block until queued decodes finished (tests and the screenshot hook)."""
        return self._pool.waitForDone(msecs)

    # -- internals ----------------------------------------------------------------------
    def _enqueue(self, key: tuple[str, int]) -> None:
        with self._lock:
            if key in self._queued:
                # Already waiting: move it to the top so visible rows come first.
                try:
                    self._stack.remove(key)
                except ValueError:
                    return  # being decoded right now
                self._stack.append(key)
                return
            self._queued.add(key)
            self._stack.append(key)
        self._pool.start(_Job(self))

    def _pop(self) -> tuple[str, int] | None:
        with self._lock:
            return self._stack.pop() if self._stack else None

    def _on_done(self, path: str, bucket: int, qimg: QImage) -> None:
        key = (path, bucket)
        with self._lock:
            self._queued.discard(key)
        self._pixmaps[key] = QPixmap.fromImage(qimg)
        while len(self._pixmaps) > self._memory_items:
            self._pixmaps.popitem(last=False)
        self.ready.emit(path)

    def _on_error(self, path: str, bucket: int, reason: str) -> None:
        with self._lock:
            self._queued.discard((path, bucket))
        self._errors[path] = reason
        self.failed.emit(path, reason)
        self.ready.emit(path)

    def _broken(self, size: int) -> QPixmap:
        key = ("\0broken", size)
        pix = self._scaled.get(key)
        if pix is None:
            pix = QPixmap(size, size)
            pix.fill(QColor(90, 90, 90))
            p = QPainter(pix)
            p.setPen(QPen(QColor(220, 80, 80), max(2, size // 24)))
            m = size // 4
            p.drawLine(m, m, size - m, size - m)
            p.drawLine(size - m, m, m, size - m)
            p.end()
            self._scaled[key] = pix
        return pix
