"""Folder change detection for an open collection, without Qt.

:class:`FolderWatcher` rescans the collection's folders and compares them with the catalog:
new, changed and deleted photos, by (size, mtime) **and** content hash, so a photo edited
in place by a tool that restored its mtime (and kept its size) is still found. The GUI
hooks a ``QFileSystemWatcher`` to :meth:`FolderWatcher.notify` (events only make the next
rescan come sooner, after a short debounce) and calls :meth:`FolderWatcher.poll` from a
timer; the periodic rescan is the fallback for everything the OS watcher misses (network
drives, too many folders, events lost while asleep).

What a rescan does per file: :func:`engine.indexing.changes.classify_file`, the rule the
indexer applies too (new, changed, touched, unchanged, failed before), with one difference in
cost: the content hash of files whose size and mtime did not change is compared for at most
``hash_budget`` of them per rescan, taken round-robin so every photo is verified every
``ceil(N / hash_budget)`` rescans (the hash reads three 64 KiB samples per file). Such a file
found changed is also listed in ``verify_paths``, which :meth:`engine.api.Collection.index`
takes as ``verify_hashes`` so the indexer recomputes exactly those files. In the catalog and
not on disk -> ``deleted``; a folder that is missing altogether (drive unplugged) is reported
in ``missing_folders`` and its photos are *not* called deleted, nor are those under a
sub-folder that could not be listed (:func:`engine.indexing.changes.vanished`, as the indexer).

Limit (documented in docs/RELIABILITY.md): the hash samples the start, middle and end of a
file, so an in-place edit that keeps size and mtime and touches only bytes between the
samples of an uncompressed file (BMP, raw TIFF) goes unseen; re-encoding formats (JPEG,
PNG, WebP, HEIC) rewrite the whole stream and are always caught.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from engine.store.catalog import CatalogStore
from engine.indexing.changes import FileChange, KnownFile, classify_file, vanished
from engine.indexing.indexer import FoundFile, walk_images


@dataclass(frozen=True)
class FolderChanges:
    """What a rescan found (absolute paths, sorted)."""

    new: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    touched: tuple[str, ...] = ()
    verify_paths: tuple[str, ...] = ()  # changed with the same size and mtime: pass to index()
    missing_folders: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        """True when indexing has work to do (new, changed or deleted photos)."""
        return bool(self.new or self.changed or self.deleted)

    def summary(self) -> str:
        return (f"{len(self.new)} new, {len(self.changed)} changed, {len(self.deleted)} deleted"
                + (f", {len(self.missing_folders)} folder(s) missing" if self.missing_folders else ""))


class FolderWatcher:
    """Periodic rescan of a catalog's folders (thread-safe; no Qt).

    ``interval_s``: time between fallback rescans. ``debounce_s``: after :meth:`notify`,
    wait this long without new events before rescanning (a copy of 500 photos is one
    rescan, not 500). ``hash_budget``: stat-unchanged files hash-verified per rescan
    (None: all). ``clock``: injectable monotonic clock (tests).
    """

    def __init__(self, catalog: CatalogStore, interval_s: float = 300.0, debounce_s: float = 2.0,
                 hash_budget: int | None = 256, clock: Callable[[], float] = time.monotonic):
        self.catalog = catalog
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self.hash_budget = hash_budget
        self.clock = clock
        self._lock = threading.Lock()
        self._last_scan: float | None = None
        self._dirty_at: float | None = None
        self._cursor = 0

    # -- scheduling -----------------------------------------------------------------------
    def notify(self, path: str | os.PathLike | None = None) -> None:
        """A file-system event (from QFileSystemWatcher or similar): rescan soon."""
        with self._lock:
            self._dirty_at = self.clock()

    def due(self) -> bool:
        now = self.clock()
        with self._lock:
            if self._last_scan is None:
                return True
            if self._dirty_at is not None and now - self._dirty_at >= self.debounce_s:
                return True
            return now - self._last_scan >= self.interval_s

    def poll(self) -> FolderChanges | None:
        """Rescan when due (debounced event or interval elapsed); None when not due."""
        return self.rescan() if self.due() else None

    # -- the rescan -----------------------------------------------------------------------
    def rescan(self) -> FolderChanges:
        with self._lock:
            self._dirty_at = None
            self._last_scan = self.clock()
        new: list[str] = []
        changed: list[str] = []
        deleted: list[str] = []
        touched: list[str] = []
        missing: list[str] = []
        stable: list[tuple[FoundFile, KnownFile]] = []  # unchanged size and mtime: hash-verified by budget
        # A file that failed before and is unchanged since is not reported: it waits until it changes.
        reported = {FileChange.NEW: new, FileChange.CHANGED: changed, FileChange.TOUCHED: touched}
        for folder_id, folder in self.catalog.folders():
            if not os.path.isdir(folder):
                missing.append(folder)
                continue
            known = self.catalog.known_files(folder_id)
            failed = self.catalog.failure_stat(folder_id)
            seen: set[str] = set()
            walk_errors: list[tuple[str, str]] = []
            for f in walk_images(folder, lambda p, r: walk_errors.append((p, r))):
                if not isinstance(f, FoundFile):
                    continue
                seen.add(f.path)
                k = known.get(f.path)
                change = classify_file(f, k, failed.get(f.path))
                if change is FileChange.UNCHANGED:
                    stable.append((f, k))
                elif change in reported:
                    reported[change].append(f.path)
            deleted.extend(vanished(known, seen, walk_errors))
        verify = [f.path for f, k in self._hash_sample(stable)
                  if classify_file(f, k, None, verify=True) is FileChange.CHANGED]
        changed.extend(verify)
        return FolderChanges(tuple(sorted(new)), tuple(sorted(changed)), tuple(sorted(deleted)),
                             tuple(sorted(touched)), tuple(sorted(verify)), tuple(sorted(missing)))

    def _hash_sample(self, stable: list[tuple[FoundFile, KnownFile]]) -> list[tuple[FoundFile, KnownFile]]:
        """The next ``hash_budget`` stat-unchanged files, round-robin over rescans (in path order)."""
        stable.sort(key=lambda item: item[0].path)
        if self.hash_budget is None or len(stable) <= self.hash_budget:
            return stable
        with self._lock:
            start = self._cursor % len(stable)
            self._cursor = start + self.hash_budget
        picked = stable[start:start + self.hash_budget]
        return picked + stable[:self.hash_budget - len(picked)]
