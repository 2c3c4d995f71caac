"""Lazily loaded thumbnails for item views: decoded off the UI thread, cached in memory and on disk.

Usage from a model's ``data(DecorationRole)``::

    pix = provider.request(path, 160)   # QPixmap, or None while it is being decoded
    provider.ready.connect(on_ready)    # ready(path) once it can be requested again

Decoding and the disk cache are the engine's (``engine.api.load_thumbnail``, Qt-free); the
decodes run as tasks of the GUI's :class:`gui.workers.TaskRunner` (a runner of its own, so a
screenful of thumbnails never waits behind a query). Requests are served newest first (a LIFO
stack: each task decodes whatever was asked for last), so while the user scrolls a long grid
the rows now visible are decoded before those scrolled past. A file that cannot be decoded gets
a "broken image" placeholder (and ``failed(path, reason)``), never an endless "loading" state.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap

from engine.api import load_thumbnail, thumbnail_bucket
from engine.errors import ImageLoadError

from .qimages import pil_to_qimage
from .workers import TaskRunner

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class _Decoded:
    """What one decode task hands back: the (path, bucket) key and the image or why there is none."""

    key: tuple[str, int]
    image: QImage | None = None
    reason: str = ""


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
        self._runner = TaskRunner(self, threads)

    # -- public -------------------------------------------------------------------------
    def request(self, path: str, size: int) -> QPixmap | None:
        """The thumbnail of ``path`` fitting ``size`` px, or None while it is being loaded."""
        bucket = thumbnail_bucket(size)
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
        return self._runner.wait(msecs)

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
        # Errors are turned into placeholders inside the task, so none reaches on_error.
        self._runner.start("thumbnail", self._decode_newest, self._on_decoded, lambda _message: None,
                           latest_only=False)

    def _decode_newest(self, _task) -> _Decoded | None:  # pool thread
        with self._lock:
            if not self._stack:
                return None  # cleared meanwhile (a new query replaced the results)
            key = self._stack.pop()
        try:
            return _Decoded(key, pil_to_qimage(load_thumbnail(*key)))
        except ImageLoadError as exc:
            return _Decoded(key, reason=exc.reason)
        except Exception as exc:  # a decoder bug: the photo gets the placeholder, the log the traceback
            log.exception("could not make the thumbnail of %s", key[0])
            return _Decoded(key, reason=f"{exc.__class__.__name__}: {exc}")

    def _on_decoded(self, decoded: _Decoded | None) -> None:
        if decoded is None:
            return
        path = decoded.key[0]
        with self._lock:
            self._queued.discard(decoded.key)
        if decoded.image is None:
            self._errors[path] = decoded.reason
            self.failed.emit(path, decoded.reason)
        else:
            self._pixmaps[decoded.key] = QPixmap.fromImage(decoded.image)
            while len(self._pixmaps) > self._memory_items:
                self._pixmaps.popitem(last=False)
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
