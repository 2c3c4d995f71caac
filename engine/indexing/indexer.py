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
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from engine.store.catalog import CatalogStore, NewImage, content_hash
from engine.errors import ImageLoadError, LookalikeError
from engine.imaging.images import is_image_path, load_image
from engine.imaging.metadata import PhotoHeader, read_header
from engine.indexing.pixel_budget import PixelBudget
from engine.indexing.changes import FileChange, classify_file, vanished
from engine.descriptors.methods import Method

log = logging.getLogger(__name__)

# What describing an odd but decodable photo can raise: a map too small for the network's
# pooling or out of accelerator memory (RuntimeError), degenerate values (ValueError), a file
# read lazily (OSError). Anything else (TypeError, AttributeError, KeyError, NotImplementedError)
# is a bug of the method: it stops the run instead of becoming a "descriptor failed" row per photo.
DESCRIBE_ERRORS = (RuntimeError, ValueError, OSError)

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


@dataclass
class _Decoded:
    found: FoundFile
    folder_id: int
    image: Image.Image | None = None
    record: NewImage | None = None
    error: str | None = None
    descriptor: np.ndarray | None = None  # set when the worker that decoded it described it too


def _header_or_none(path: str) -> PhotoHeader | None:
    """The file's header, or None when it cannot be read (the decode then says why)."""
    try:
        return read_header(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _decode(found: FoundFile, folder_id: int, side: int, attempts: int = 3,
            header: PhotoHeader | None = None) -> _Decoded:
    """Decode one file; a file rewritten while it is read is read again (up to ``attempts``).

    Pixels, hash and metadata are kept only when the file's (size, mtime) after reading
    them equals the one before, so a descriptor never describes other bytes than the
    stored hash and stat (which would make the next scan skip the new content).
    ``header``: the file's header when the caller already read it (it is then not read again;
    the stat check below covers it like the pixels).
    """
    item = _Decoded(found, folder_id)
    current = found
    try:
        for _ in range(attempts):
            img = load_image(current.path, side)  # first: refuses bombs, readable reasons
            if header is None or current is not found:
                header = read_header(current.path)  # after load_image accepted it: never a bomb
            w, h, taken = header.width, header.height, header.taken
            digest = content_hash(current.path)
            st = os.stat(current.path)
            after = FoundFile(current.path, st.st_size, st.st_mtime_ns)
            if after == current:
                break
            current = after  # rewritten while we read it: read what is there now
        else:
            raise ImageLoadError(found.path, "the file kept changing while it was read; it will be indexed next time")
        item.found = current
        item.image = img
        item.record = NewImage(current.path, current.size, current.mtime_ns, digest, w, h, taken, folder_id)
    except ImageLoadError as exc:
        item.error = exc.reason
    except FileNotFoundError:
        item.error = "the file was deleted while indexing"
    except PermissionError:
        item.error = "permission denied when reading the file"
    except Exception as exc:  # noqa: BLE001 - a decoder's undocumented failure on one hostile file
        # must not stop the run: recorded for the file, and logged with its traceback so that a
        # bug of ours in the reading code shows.
        log.warning("unexpected error decoding %s", current.path, exc_info=True)
        item.error = f"could not be decoded: {exc.__class__.__name__}: {exc}"
    return item


def describe_decoded(method: Method, extractor, items: list[_Decoded]
                     ) -> tuple[list[_Decoded], np.ndarray | None, list[_Decoded]]:
    """Descriptors of one batch of decoded photos: ``(described, descriptors, failed)``.

    When the batch raises one of :data:`DESCRIBE_ERRORS` its photos are described one by one,
    so one odd image cannot sink its whole batch; those that still fail come back in
    ``failed`` with ``error`` set. The desktop indexer and the archive's shard workers
    (:mod:`engine.archive.describe`) both describe through here.
    """
    try:
        return items, method.describe([b.image for b in items], extractor), []
    except (LookalikeError, NotImplementedError):
        raise
    except DESCRIBE_ERRORS as exc:
        log.warning("batch failed (%s); retrying images one by one", exc)
    good, rows, failed = [], [], []
    for b in items:
        try:
            rows.append(method.describe([b.image], extractor)[0])
            good.append(b)
        except (LookalikeError, NotImplementedError):
            raise
        except DESCRIBE_ERRORS as exc:
            b.error = f"descriptor failed: {exc.__class__.__name__}: {exc}"
            failed.append(b)
    return good, (np.stack(rows) if rows else None), failed


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def query_threads(cores: int | None = None, load: float | None = None) -> int:
    """Torch intra-op threads for one interactive query: the cores that are not already busy.

    With every core busy (our own indexer, another program) extra OpenMP threads wait at
    barriers for descheduled siblings: in a benchmark run at load average ~4 on 2 cores,
    drop-to-results took 2005 ms with 2 threads and 180 ms with 1; on the idle machine 2
    threads win (93 vs 134 ms, docs/BENCHMARKS.md). ``load`` defaults to the 1-minute load
    average where the OS has one (not on Windows: then all cores).
    """
    cores = cores or available_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


@dataclass(frozen=True)
class ThreadPlan:
    torch_threads: int
    decode_workers: int
    # Each worker decodes and describes whole photos (one network thread each), so no core
    # waits for another stage: used where the network runs concurrently (ONNX Runtime).
    describe_in_workers: bool = False


def plan_threads(device: torch.device, cores: int | None = None, parallel_describe: bool = False) -> ThreadPlan:
    """How many torch intra-op threads and decode threads an indexing run uses.

    ``parallel_describe``: the extractor runs several forward passes at once without a lock
    (ONNX Runtime on the CPU, :attr:`FeatureExtractor.concurrent`): then one worker per core
    decodes *and* describes its own photos with one network thread, so every core always has
    work. 12 MP JPEGs, rmac-ms, 2 idle cores: 4.8-4.9 images/s with one decode thread and one
    network thread, 6.6-7.2 with two network threads (not spinning) and two decode threads,
    against a CPU bound of 9.6 (docs/BENCHMARKS.md).

    Decode (Pillow, GIL released) and the forward pass run at the same time, so together
    they must not ask for more threads than there are cores: on 2 cores torch's default
    (2 OpenMP threads) plus a decode thread oversubscribes, and OpenMP threads that wait
    for a descheduled sibling at every layer's barrier made indexing several times slower
    (high system time). On the CPU: ``cores // 4`` decode threads (at least 1) and the
    remaining cores for torch; on an accelerator the forward pass needs one host thread
    and every other core decodes (indexing is then decode-bound). Measured in
    docs/BENCHMARKS.md.
    """
    cores = cores or available_cores()
    if device.type == "cpu" and parallel_describe:
        return ThreadPlan(1, cores, describe_in_workers=True)
    if device.type == "cpu":
        decode = max(1, cores // 4)
        return ThreadPlan(max(1, cores - decode), decode)
    return ThreadPlan(1, max(1, cores - 1))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` torch intra-op threads in this block, then restore the previous number."""
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


@contextmanager
def _forward_batch(extractor, n: int | None) -> Iterator[None]:
    if not n or not hasattr(extractor, "batch_size"):
        yield
        return
    old = extractor.batch_size
    extractor.batch_size = n
    try:
        yield
    finally:
        extractor.batch_size = old


class Indexer:
    """Index folders of a catalog with one method."""

    def __init__(self, catalog: CatalogStore, method: Method, extractor, batch_size: int = 8,
                 decode_workers: int | None = None, prefetch_batches: int = 2,
                 torch_threads: int | None = None, forward_batch: int | None = None,
                 verify_hashes: bool | Iterable[str] = False):
        """``batch_size``: photos per catalog commit. ``decode_workers`` / ``torch_threads``:
        None = :func:`plan_threads` for the extractor's device. ``forward_batch``: images per
        forward pass during this run (None = the extractor's own ``batch_size``)."""
        self.catalog = catalog
        self.method = method
        self.extractor = extractor
        if not isinstance(batch_size, int) or batch_size < 1:
            raise LookalikeError(f"The batch size must be a whole number of at least 1, not {batch_size!r}.")
        self.batch_size = batch_size
        device = getattr(extractor, "device", None)
        plan = plan_threads(device if isinstance(device, torch.device) else torch.device("cpu"),
                            parallel_describe=bool(getattr(extractor, "concurrent", False)))
        self.decode_workers = decode_workers or plan.decode_workers
        self.torch_threads = torch_threads or plan.torch_threads
        self.describe_in_workers = plan.describe_in_workers
        self.pixel_budget = PixelBudget()
        self.forward_batch = forward_batch
        self.prefetch = prefetch_batches
        # Also compare content hashes of files whose (size, mtime) did not change: True for
        # every file, or a set of paths (e.g. from engine.indexing.watcher). Catches edits that kept
        # the file's mtime and size (costs three 64 KiB reads per verified file).
        self.verify_hashes = verify_hashes if isinstance(verify_hashes, bool) else frozenset(verify_hashes)

    def scan(self, folders: Sequence[tuple[int, str]], report: IndexReport
             ) -> tuple[list[tuple[FoundFile, int]], list[str], list[tuple[str, int, str]]]:
        """Return (files to compute, paths to remove, walk errors)."""
        have = self.catalog.has_descriptor(self.method.name)
        todo: list[tuple[FoundFile, int]] = []
        gone: list[str] = []
        errors: list[tuple[str, int, str]] = []
        missing = [f for _i, f in folders if not os.path.isdir(f)]
        if missing and len(missing) == len(folders):
            raise LookalikeError(f"Folder not found: {missing[0]} (is the drive connected?). "
                                 f"Remove it from the collection or reconnect it.")
        for folder_id, folder in folders:
            if folder in missing:
                # One unplugged drive must not block the other folders; its photos are kept.
                report.failed.append((folder, "folder not found (is the drive connected?); its photos are kept "
                                              "in the catalog until it is reconnected or removed"))
                continue
            known = self.catalog.known_files(folder_id)
            failed = self.catalog.failure_stat(folder_id)
            seen: set[str] = set()
            for f in walk_images(folder, lambda p, r, fid=folder_id: errors.append((p, fid, r))):
                if isinstance(f, tuple):
                    report.ignored += 1
                    continue
                seen.add(f.path)
                k = known.get(f.path)
                change = classify_file(f, k, failed.get(f.path), verify=self._must_verify(f.path),
                                       described=k is not None and k[0] in have)
                if change is FileChange.TOUCHED:  # not edited: keep the descriptor, store the new mtime
                    self.catalog.update_mtime(k[0], f.mtime_ns)
                if change in (FileChange.UNCHANGED, FileChange.TOUCHED):
                    report.unchanged += 1
                elif change is FileChange.FAILED_BEFORE:
                    report.failed.append((f.path, "unchanged since it failed before"))
                else:
                    todo.append((f, folder_id))
            gone.extend(vanished(known, seen, [(p, r) for p, fid, r in errors if fid == folder_id]))
            stale_failures = [p for p in failed if p not in seen]
            if stale_failures:
                self.catalog.clear_failures(stale_failures)
        return todo, gone, errors

    def _must_verify(self, path: str) -> bool:
        v = self.verify_hashes
        return v if isinstance(v, bool) else path in v

    def run(self, folders: Sequence[tuple[int, str]] | None = None,
            progress: Callable[[IndexProgress], None] | None = None,
            cancel: threading.Event | None = None) -> IndexReport:
        start = time.monotonic()
        report = IndexReport()
        cancel = cancel or threading.Event()
        emit = progress or (lambda p: None)
        with self.catalog.index_lock():
            # Under the lock: leftovers of killed runs removed, nested folders merged, damaged
            # shards forgotten (so this run describes their photos again).
            for repaired in self.catalog.prepare_index_run(self.method.name):
                log.warning("%s", repaired)
            folders = list(folders if folders is not None else self.catalog.folders())
            emit(IndexProgress("scanning"))
            todo, gone, walk_errors = self.scan(folders, report)
            report.removed = self.catalog.remove_images(gone)
            if walk_errors:
                self.catalog.record_failures([(p, fid, None, None, r) for p, fid, r in walk_errors])
                report.failed.extend((p, r) for p, fid, r in walk_errors)
            with torch_threads(self.torch_threads), _forward_batch(self.extractor, self.forward_batch):
                self._ensure_prepared(todo, emit)
                self._compute(todo, report, emit, cancel, start)
            if not report.cancelled:
                self.catalog.compact_if_fragmented(self.method.name)
        report.seconds = time.monotonic() - start
        emit(IndexProgress("finished", report.indexed, report.indexed, len(report.failed)))
        return report

    def _decode_job(self, found: FoundFile, folder_id: int, side: int) -> _Decoded:
        """A worker's job: decode one photo, and describe it too when the plan says so. The
        photo's pixels are held in :attr:`pixel_budget` while it is decoded (and described)."""
        header = _header_or_none(found.path)
        with self.pixel_budget.hold(header.width * header.height if header else 0):
            item = _decode(found, folder_id, side, header=header)
            if self.describe_in_workers and item.image is not None:
                ok, desc, _failed = describe_decoded(self.method, self.extractor, [item])
                if ok:
                    item.descriptor = desc[0]
                item.image = None  # only the descriptor travels on
        return item

    def _described(self, batch: list[_Decoded]) -> tuple[list[_Decoded], np.ndarray | None, list[_Decoded]]:
        """``(described, descriptors, failed)`` of a batch whose workers may have described it."""
        if self.describe_in_workers:
            ok = [b for b in batch if b.descriptor is not None]
            return ok, (np.stack([b.descriptor for b in ok]) if ok else None), [b for b in batch if b.descriptor is None]
        ok = [b for b in batch if b.image is not None]
        bad = [b for b in batch if b.image is None]
        if ok:
            ok, desc, broken = describe_decoded(self.method, self.extractor, ok)
            bad.extend(broken)
            return ok, desc, bad
        return [], None, bad

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
                    pending.append(pool.submit(self._decode_job, f, fid, side))

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
                ok, desc, bad = self._described(batch)
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
