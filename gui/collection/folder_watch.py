"""Watching the collection's folders while the window is open.

The engine's folder watcher (``Collection.folder_watcher()``) decides *what* changed (size,
mtime and content hash, debounced rescans, a periodic fallback rescan). This module is only
the Qt glue: a ``QFileSystemWatcher`` on the collection's folders turns OS events into
``FolderWatcher.notify``, a timer asks ``FolderWatcher.due`` and runs the rescan as a task of
the window's :class:`gui.workers.TaskRunner` (never on the UI thread), and ``changes_found``
tells the window, which starts an incremental index.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from engine.api import FolderChanges, FolderWatcher

from ..workers import TaskRunner

MAX_WATCHED_DIRS = 2000  # OS watch handles are limited; deeper trees rely on the periodic rescan


def folder_tree(folders: list[str], limit: int = MAX_WATCHED_DIRS) -> list[str]:
    """The folders and their sub-folders (hidden ones skipped, as the indexer does), at most ``limit``."""
    out: list[str] = []
    for top in folders:
        for root, dirs, _files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            out.append(root)
            if len(out) >= limit:
                return out
    return out


class FolderWatchController(QObject):
    """Rescans the open collection's folders on file-system events and every ``interval_s``.

    ``changes_found(FolderChanges)`` is emitted when a rescan finds new, changed or deleted
    photos; ``folders_missing(list[str])`` when a collection folder is unreachable (its
    photos are kept). ``set_paused(True)`` while indexing: the index run sees the changes.
    """

    changes_found = Signal(object)
    folders_missing = Signal(list)

    def __init__(self, tasks: TaskRunner, parent: QObject | None = None, poll_ms: int = 1000,
                 interval_s: float = 300.0, debounce_s: float = 2.0):
        super().__init__(parent)
        self.tasks = tasks
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self.watcher: FolderWatcher | None = None
        self.enabled = True
        self.paused = False
        self._collection = None
        self._missing: tuple[str, ...] = ()
        self.fs = QFileSystemWatcher(self)
        self.fs.directoryChanged.connect(self._on_event)
        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    # -- control (UI thread) ---------------------------------------------------------------
    def set_collection(self, collection) -> None:
        self._collection = collection
        self._missing = ()
        self.watcher = None if collection is None else collection.folder_watcher(
            interval_s=self.interval_s, debounce_s=self.debounce_s)
        self.rewatch()

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        self.rewatch()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    def rewatch(self) -> None:
        """Watch the collection's current folder tree (listed in the background)."""
        if self.fs.directories():
            self.fs.removePaths(self.fs.directories())
        col = self._collection
        if col is None or not self.enabled:
            return
        folders = col.folders()
        # A folder tree that cannot be listed is simply not watched: the periodic rescan still runs.
        self.tasks.start("watch-dirs", lambda _task: folder_tree(folders), self._watch, lambda _m: None)

    def stop(self) -> None:
        self.timer.stop()
        self.set_collection(None)

    # -- internals ---------------------------------------------------------------------------
    def _watch(self, dirs: list[str]) -> None:
        if self._collection is not None and self.enabled and dirs:
            self.fs.addPaths(dirs)

    def _on_event(self, path: str) -> None:
        if self.watcher is not None:
            self.watcher.notify(path)

    def _tick(self) -> None:
        w = self.watcher
        if w is None or not self.enabled or self.paused or self.tasks.busy("rescan") or not w.due():
            return
        # A failed rescan (logged by the task) is tried again at the next due time.
        self.tasks.start("rescan", lambda _task: w.rescan(), lambda ch, w=w: self._on_rescanned(w, ch),
                         lambda _m: None)

    def _on_rescanned(self, watcher: FolderWatcher, changes: FolderChanges) -> None:
        if watcher is not self.watcher:
            return  # the collection changed meanwhile
        if changes.missing_folders != self._missing:
            self._missing = changes.missing_folders
            if changes.missing_folders:
                self.folders_missing.emit(list(changes.missing_folders))
        if changes and not self.paused:
            self.changes_found.emit(changes)
