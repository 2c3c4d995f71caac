"""Incremental indexing of photo folders into a catalog.

Walks folders (recursively, no symlink loops, hidden and system folders skipped, image
extensions matched case-insensitively), computes descriptors only for new or changed files,
forgets deleted ones, decodes on a small thread pool while the model works on the previous
batch, reports progress through a callback and stops between batches when cancelled.
Every batch is committed atomically, so a killed run resumes with no finished work redone.
"""
from __future__ import annotations

import logging
import os
import stat as statmod
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from .catalog import CatalogStore, NewImage, content_hash
from .errors import ImageLoadError, LookalikeError
from .images import is_image_path, load_image
from .methods import Method

log = logging.getLogger(__name__)

SYSTEM_FOLDERS = frozenset({
    "$recycle.bin", "system volume information", "@eadir", "__macosx", "lost+found",
    "thumbs", ".thumbnails", "node_modules", "#recycle",
})


@dataclass
class IndexProgress:
    """Progress of a run: ``done`` of ``total`` files to (re)compute."""

    phase: str  # "scanning" | "preparing" | "indexing" | "finished"
    done: int = 0
    total: int = 0
    failed: int = 0
    images_per_s: float = 0.0
    eta_s: float | None = None
    current: str = ""


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    ignored: int = 0  # files without an image extension (counted, never silently dropped)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False

    def to_json(self) -> dict:
        return {"indexed": self.indexed, "unchanged": self.unchanged, "removed": self.removed,
                "ignored": self.ignored, "failed": [{"path": p, "reason": r} for p, r in self.failed],
                "seconds": round(self.seconds, 3), "cancelled": self.cancelled}


@dataclass(frozen=True)
class FoundFile:
    path: str
    size: int
    mtime_ns: int


def walk_images(root: str | os.PathLike, on_error: Callable[[str, str], None] | None = None
                ) -> Iterator[FoundFile | tuple[str, None]]:
    """Yield :class:`FoundFile` for image files under ``root`` and ``(path, None)`` for others.

    Symlinked folders are followed once (a visited set of (device, inode) breaks loops);
    folders starting with '.' and known system folders are skipped.
    """
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(root)]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError as exc:
            if on_error:
                on_error(d, f"folder cannot be read: {exc.strerror}")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            if on_error:
                on_error(d, f"folder cannot be listed: {exc.strerror}")
            continue
        subdirs = []
        for e in entries:
            name = e.name
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                # A folder named like an image ("x.jpg") is still a folder: walk into it.
                if not name.startswith(".") and name.lower() not in SYSTEM_FOLDERS:
                    subdirs.append(e.path)
                continue
            if name.startswith("."):
                continue
            if not is_image_path(name):
                yield (e.path, None)
                continue
            try:
                s = e.stat(follow_symlinks=True)
            except OSError as exc:
                if on_error:
                    on_error(e.path, f"cannot be read: {exc.strerror or exc}")
                continue
            if not statmod.S_ISREG(s.st_mode):
                if on_error:
                    on_error(e.path, "is not a regular file")
                continue
            yield FoundFile(e.path, s.st_size, s.st_mtime_ns)
        stack.extend(reversed(subdirs))


def date_taken(img: Image.Image) -> float | None:
    """EXIF DateTimeOriginal as a POSIX timestamp (local time), or None."""
    try:
        exif = img.getexif()
        raw = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
        if not raw:
            return None
        return time.mktime(time.strptime(str(raw).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S"))
    except Exception:  # malformed EXIF is common and never fatal
        return None


@dataclass
class _Decoded:
    found: FoundFile
    folder_id: int
    image: Image.Image | None = None
    record: NewImage | None = None
    error: str | None = None


def _decode(found: FoundFile, folder_id: int, side: int) -> _Decoded:
    item = _Decoded(found, folder_id)
    try:
        with Image.open(found.path) as raw:
            w, h = raw.size
            orientation = raw.getexif().get(0x0112, 1) if hasattr(raw, "getexif") else 1
            taken = date_taken(raw)
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        img = load_image(found.path, side)
        digest = content_hash(found.path)
        st = os.stat(found.path)
        if (st.st_size, st.st_mtime_ns) != (found.size, found.mtime_ns):
            # Rewritten while we read it: describe what is there now.
            found = FoundFile(found.path, st.st_size, st.st_mtime_ns)
            item.found = found
        item.image = img
        item.record = NewImage(found.path, found.size, found.mtime_ns, digest, w, h, taken, folder_id)
    except ImageLoadError as exc:
        item.error = exc.reason
    except FileNotFoundError:
        item.error = "the file was deleted while indexing"
    except Exception as exc:  # any decoder bug becomes a recorded failure, not a crash
        item.error = f"could not be decoded: {exc.__class__.__name__}: {exc}"
    return item


class Indexer:
    """Index folders of a catalog with one method."""

    def __init__(self, catalog: CatalogStore, method: Method, extractor, batch_size: int = 8,
                 decode_workers: int = 2, prefetch_batches: int = 2):
        self.catalog = catalog
        self.method = method
        self.extractor = extractor
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.prefetch = prefetch_batches

    def scan(self, folders: Sequence[tuple[int, str]], report: IndexReport
             ) -> tuple[list[tuple[FoundFile, int]], list[str], list[tuple[str, int, str]]]:
        """Return (files to compute, paths to remove, walk errors)."""
        have = self.catalog.has_descriptor(self.method.name)
        todo: list[tuple[FoundFile, int]] = []
        gone: list[str] = []
        errors: list[tuple[str, int, str]] = []
        for folder_id, folder in folders:
            if not os.path.isdir(folder):
                raise LookalikeError(f"Folder not found: {folder} (is the drive connected?). "
                                     f"Remove it from the collection or reconnect it.")
            known = self.catalog.known_files(folder_id)
            failed = self.catalog.failure_stat(folder_id)
            seen: set[str] = set()
            for f in walk_images(folder, lambda p, r, fid=folder_id: errors.append((p, fid, r))):
                if isinstance(f, tuple):
                    report.ignored += 1
                    continue
                seen.add(f.path)
                k = known.get(f.path)
                if k and (k[1], k[2]) == (f.size, f.mtime_ns) and k[0] in have:
                    report.unchanged += 1
                elif k and k[1] == f.size and k[0] in have and self._same_content(f, k):
                    # Touched but not edited (copied back, mtime reset): keep the descriptor.
                    self.catalog.update_mtime(k[0], f.mtime_ns)
                    report.unchanged += 1
                elif f.path in failed and failed[f.path] == (f.size, f.mtime_ns):
                    report.failed.append((f.path, "unchanged since it failed before"))
                else:
                    todo.append((f, folder_id))
            gone.extend(p for p in known if p not in seen)
            stale_failures = [p for p in failed if p not in seen]
            if stale_failures:
                self.catalog.clear_failures(stale_failures)
        return todo, gone, errors

    @staticmethod
    def _same_content(f: FoundFile, known: tuple[int, int, int, str]) -> bool:
        try:
            return content_hash(f.path) == known[3]
        except OSError:
            return False

    def run(self, folders: Sequence[tuple[int, str]] | None = None,
            progress: Callable[[IndexProgress], None] | None = None,
            cancel: threading.Event | None = None) -> IndexReport:
        start = time.monotonic()
        report = IndexReport()
        cancel = cancel or threading.Event()
        emit = progress or (lambda p: None)
        folders = list(folders if folders is not None else self.catalog.folders())
        with self.catalog.index_lock():
            emit(IndexProgress("scanning"))
            todo, gone, walk_errors = self.scan(folders, report)
            report.removed = self.catalog.remove_images(gone)
            if walk_errors:
                self.catalog.record_failures([(p, fid, None, None, r) for p, fid, r in walk_errors])
                report.failed.extend((p, r) for p, fid, r in walk_errors)
            self._ensure_prepared(todo, emit)
            self._compute(todo, report, emit, cancel, start)
        report.seconds = time.monotonic() - start
        emit(IndexProgress("finished", report.indexed, report.indexed, len(report.failed)))
        return report

    def _ensure_prepared(self, todo, emit) -> None:
        m = self.method
        if m.prepare_sample_size <= 0:
            return
        stored = self.catalog.load_state(m.name, "prepare")
        if stored is not None:
            m.set_prepared(stored[0])
            return
        emit(IndexProgress("preparing", 0, m.prepare_sample_size))
        step = max(1, len(todo) // max(1, m.prepare_sample_size))
        images = []
        for f, fid in todo[::step]:
            d = _decode(f, fid, m.decode_side())
            if d.image is not None:
                images.append(d.image)
            if len(images) >= m.prepare_sample_size:
                break
        if not images:
            return
        state = m.prepare(images, self.extractor)
        self.catalog.save_state(m.name, "prepare", state)
        m.set_prepared(state)

    def _compute(self, todo, report: IndexReport, emit, cancel: threading.Event, start: float) -> None:
        total = len(todo)
        side = self.method.decode_side()
        t0 = time.monotonic()
        done = 0
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:
            pending: deque[Future] = deque()
            it = iter(todo)

            def refill() -> None:
                while len(pending) < self.batch_size * (self.prefetch + 1):
                    try:
                        f, fid = next(it)
                    except StopIteration:
                        return
                    pending.append(pool.submit(_decode, f, fid, side))

            refill()
            while pending:
                if cancel.is_set():
                    for p in pending:
                        p.cancel()
                    report.cancelled = True
                    return
                batch: list[_Decoded] = []
                while pending and len(batch) < self.batch_size:
                    batch.append(pending.popleft().result())
                refill()
                ok = [b for b in batch if b.image is not None]
                bad = [b for b in batch if b.image is None]
                if ok:
                    try:
                        desc = self.method.describe([b.image for b in ok], self.extractor)
                    except LookalikeError:
                        raise
                    except Exception as exc:
                        # Describe one by one so one odd image cannot sink its whole batch.
                        log.warning("batch failed (%s); retrying images one by one", exc)
                        desc = None
                    if desc is None:
                        good, rows = [], []
                        for b in ok:
                            try:
                                rows.append(self.method.describe([b.image], self.extractor)[0])
                                good.append(b)
                            except LookalikeError:
                                raise
                            except Exception as exc:
                                b.error = f"descriptor failed: {exc.__class__.__name__}: {exc}"
                                bad.append(b)
                        ok = good
                        desc = np.stack(rows) if rows else None
                    if ok:
                        self.catalog.add_batch(self.method.name, [b.record for b in ok], desc)
                        report.indexed += len(ok)
                if bad:
                    self.catalog.record_failures([(b.found.path, b.folder_id, b.found.size, b.found.mtime_ns, b.error)
                                                  for b in bad])
                    report.failed.extend((b.found.path, b.error or "unknown error") for b in bad)
                for b in batch:
                    b.image = None
                done += len(batch)
                elapsed = time.monotonic() - t0
                rate = done / elapsed if elapsed > 0 else 0.0
                emit(IndexProgress("indexing", done, total, len(report.failed), rate,
                                   (total - done) / rate if rate > 0 else None, batch[-1].found.path))
