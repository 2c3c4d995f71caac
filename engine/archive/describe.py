"""Describing one shard of an archive: what every Ray worker runs.

A shard's photos go through exactly what the desktop indexer does with a photo
(:func:`engine.indexing.indexer._decode`: decode at the method's decode side, header, content
hash, re-read when the file changed while it was read; then
:func:`engine.indexing.indexer.describe_decoded`: the method's ``describe`` in batches, one by
one when a batch fails). So a photo's descriptor in an archive is the one the desktop app
computes for it: bit for bit on the CPU with the same intra-op thread count (ONNX Runtime
may sum in another order with other thread counts), within float rounding on a GPU.

:class:`ShardDescriber` is the callable class Ray Data keeps one of per worker
(``map_batches(ShardDescriber, compute=ActorPoolStrategy(...))``): the method and the model
are built once when the worker starts, then each call describes whole shards and commits
each one (:meth:`engine.archive.layout.ArchiveLayout.commit_shard`).
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from engine.archive.layout import ArchiveInfo, ArchiveLayout, ShardManifest, worker_identity
from engine.descriptors.methods import Method, create_method
from engine.errors import LookalikeError
from engine.indexing.indexer import FoundFile, _decode, _Decoded, describe_decoded, torch_threads
from engine.store.integrity import DamagedFile, read_state

# Photos per describe call: the desktop indexer's commit batch (on the CPU the network still
# sees one photo per forward pass, engine.nn.features.CPU_FORWARD_BATCH).
DESCRIBE_BATCH = 8


def archive_method(layout: ArchiveLayout, info: ArchiveInfo) -> Method:
    """The archive's method with its recorded settings and prepared state. Learned states of
    a collection (MS-RMAC's hedge weights) are left at their defaults, as in a new collection."""
    method = create_method(info.method, info.config)
    if info.prepared is not None:
        try:
            method.set_prepared(read_state(layout.prepare_path, None, info.prepared))
        except DamagedFile as exc:
            raise LookalikeError(f"The archive's prepared state is damaged ({exc.reason}); "
                                 f"the archive must be described again.") from None
    for kind in method.stored_state_kinds:
        method.set_stored_state(kind, None)
    return method


def _decoded(files: list[FoundFile], side: int, threads: int) -> Iterator[_Decoded]:
    """The files decoded in order; with ``threads > 1`` on a thread pool a few photos ahead
    (a GPU worker is decode-bound), never the whole shard at once."""
    if threads <= 1:
        yield from (_decode(f, 0, side) for f in files)
        return
    ahead = threads * 2 + DESCRIBE_BATCH
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        it = iter(files)
        pending = deque(pool.submit(_decode, f, 0, side) for f in itertools.islice(it, ahead))
        while pending:
            done = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_decode, nxt, 0, side))
            yield done


def _batches(items: Iterable[_Decoded], n: int) -> Iterator[list[_Decoded]]:
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def describe_shard(layout: ArchiveLayout, shard: int, method: Method, extractor,
                   decode_threads: int = 1) -> ShardManifest:
    """Describe the planned files of ``shard`` and commit the shard (descriptors, then the
    manifest with each photo's path, size, mtime, content hash, size in pixels and date, and
    every failed file with its reason)."""
    files = layout.read_plan(shard)
    layout.write_claim(shard)
    t0 = time.monotonic()
    photos: list[dict] = []
    failed: list[dict] = []
    rows: list[np.ndarray] = []
    for batch in _batches(_decoded(files, method.decode_side(), decode_threads), DESCRIBE_BATCH):
        ok = [d for d in batch if d.image is not None]
        bad = [d for d in batch if d.image is None]
        if ok:
            ok, desc, broken = describe_decoded(method, extractor, ok)
            bad.extend(broken)
            if ok:
                rows.append(np.asarray(desc, np.float32))
                photos.extend({"path": r.path, "size": r.size, "mtime_ns": r.mtime_ns, "hash": r.hash,
                               "width": r.width, "height": r.height, "taken": r.taken}
                              for r in (d.record for d in ok))
        failed.extend({"path": d.found.path, "size": d.found.size, "mtime_ns": d.found.mtime_ns,
                       "reason": d.error or "unknown error"} for d in bad)
        for d in batch:
            d.image = None
    descriptors = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    worker = {**worker_identity(), "runtime": extractor.runtime_description()}
    return layout.commit_shard(shard, descriptors, photos, failed, worker, time.monotonic() - t0)


class ShardDescriber:
    """One per Ray worker: the archive's method and model, built once; called with batches
    of shard numbers (``{"shard": array}``), returns one summary row per shard described.

    ``threads``: intra-op threads of the network (the CPUs Ray gave the worker);
    ``decode_threads``: threads decoding ahead of the network (more than 1 for GPU workers).
    """

    def __init__(self, archive_dir: str, device: str = "cpu", threads: int = 1, decode_threads: int = 1):
        from engine.nn.features import FeatureExtractor

        self.layout = ArchiveLayout(archive_dir)
        info = self.layout.read_info()
        self.method = archive_method(self.layout, info)
        self.extractor = FeatureExtractor(self.method.config.backbone, device, info.weights)
        self.threads = threads
        self.decode_threads = decode_threads

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = []
        with torch_threads(self.threads):
            for shard in batch["shard"]:
                done.append(describe_shard(self.layout, int(shard), self.method, self.extractor, self.decode_threads))
        return {"shard": np.array([m.shard for m in done], np.int64),
                "photos": np.array([len(m.photos) for m in done], np.int64),
                "failed": np.array([len(m.failed) for m in done], np.int64),
                "seconds": np.array([m.seconds for m in done], np.float64),
                "host": np.array([m.worker["host"] for m in done]),
                "pid": np.array([m.worker["pid"] for m in done], np.int64)}
