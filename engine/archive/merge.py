"""One search index for an archive, built from its shards without loading every vector.

1. The manifests are read one at a time: the row count of each shard, and the photos'
   paths, file sizes and dates written as row-aligned tables (``paths.bin`` + offsets,
   ``sizes.npy``, ``dates.npy``; memory-mapped when searching).
2. A sample of raw descriptors (``train_size`` rows, at least 30k: the
   :class:`engine.search.ann.AnnConfig` rule) is drawn from randomly chosen shards; the
   method's post-processing (``fit``: whitening...) is fitted on it, and the
   :class:`engine.search.ann.VectorIndex` coarse stage (PCA, IVF-PQ) is trained on its search
   vectors: the desktop's settings and training code.
3. The shards are read again one at a time (each verified against its manifest's size and
   digest): their search vectors are added to the trained coarse stage (PQ codes: ``pq_m`` + 8
   bytes each in RAM) and appended as fp16 to ``refine.npy`` (``2 D`` bytes each, on disk,
   memory-mapped by the search for the exact re-scoring of the shortlist).
4. The rows of RAW side-cars (a JPEG/HEIC with its RAW's folder and name,
   :class:`engine.search.index.HiddenSidecars`, the desktop search's rule) are found in the path
   table and written as ``sidecars.npy``: the search shows the RAW only, as on the desktop.

Archives up to ``exact_threshold`` photos (100k) are searched exactly instead (``kind``
``exact``: the fp16 vectors loaded at open), like a desktop collection of that size.

Each build writes a new folder ``index-<time>-<random>/`` and then ``index.json`` naming it (the
switch is one atomic write); the previous build's folder is removed after the switch, and a
folder a killed build left behind at the start of the next build. A build always reads every
shard: after a rerun of ``archive index`` planned and described new shards
(:mod:`engine.archive.plan`), the next build is a full rebuild over old and new shards (a new
training sample, so the fit and the coarse stage reflect the new photos), not an incremental
add; :func:`index_is_current` tells whether one is needed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import faiss
import numpy as np

from engine.archive.describe import archive_method
from engine.archive.layout import ArchiveError, ArchiveLayout
from engine.search.ann import AnnConfig, VectorIndex, _faiss_threads, auto_nlist
from engine.search.index import HiddenSidecars
from engine.store.atomic import atomic_write_bytes, atomic_write_text
from engine.store.integrity import DamagedFile, npy_bytes, npz_bytes, read_shard

log = logging.getLogger(__name__)
POINTER = "index.json"


@dataclass(frozen=True)
class IndexManifest:
    """``index.json``: the current index folder and what it was built from.

    ``shard_rows``: ``[shard, rows]`` in row order (row ``r`` of the index is in the shard
    whose cumulative count first exceeds ``r``). ``bytes_per_photo``: RAM of the coarse stage
    (``ram``), disk of the fp16 refine copy (``refine``) and of the raw shards (``raw``).
    ``sidecars``: RAW side-cars the search leaves out (``sidecars.npy``); None in an index built
    before side-cars were stored (the search then finds them when it opens the index).
    """

    folder: str
    method: str
    photos: int
    failed: int
    dim: int
    raw_dim: int
    kind: str
    ann: dict[str, Any]
    shard_rows: list[list[int]]
    bytes_per_photo: dict[str, float]
    seconds: dict[str, float]
    built: float
    sidecars: int | None = None


def read_index_manifest(layout: ArchiveLayout) -> IndexManifest | None:
    try:
        return IndexManifest(**json.loads((layout.dir / POINTER).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, TypeError) as exc:
        raise ArchiveError(f"{layout.dir / POINTER} is damaged ({exc}); "
                           f"'lookalike archive build-index {layout.dir}' builds the index again.") from None


def index_is_current(layout: ArchiveLayout, shards: int) -> bool:
    """Whether the built index holds exactly the archive's shards ``0..shards-1`` and no shard
    was committed after it was built (one listing of ``shards/``): else a build is needed."""
    manifest = read_index_manifest(layout)
    if manifest is None or [s for s, _rows in manifest.shard_rows] != list(range(shards)):
        return False
    try:
        with os.scandir(layout.dir / "shards") as entries:
            newest = max((e.stat().st_mtime for e in entries if e.name.endswith(".json") and e.name[:-5].isdigit()),
                         default=0.0)
    except FileNotFoundError:
        return False
    return newest <= manifest.built


class PathTable:
    """The index's photo paths, row-aligned (``paths.bin`` + ``path_offsets.npy``), memory-mapped:
    a read-only sequence of ``str`` (what :func:`engine.imaging.formats.raw_sidecar_pairs` reads)."""

    CHUNK = 65536  # rows decoded per slice when iterating

    def __init__(self, folder: Path):
        self._offsets = np.load(folder / "path_offsets.npy", mmap_mode="r")
        self._data = (np.memmap(folder / "paths.bin", np.uint8, mode="r") if self._offsets[-1] > 0
                      else np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row: int) -> str:
        return os.fsdecode(bytes(self._data[self._offsets[row]:self._offsets[row + 1]]))

    def __iter__(self):
        for start in range(0, len(self), self.CHUNK):
            offsets = np.asarray(self._offsets[start:min(len(self), start + self.CHUNK) + 1])
            blob = bytes(self._data[offsets[0]:offsets[-1]])
            ends = (offsets - offsets[0]).tolist()
            for a, b in zip(ends, ends[1:]):
                yield os.fsdecode(blob[a:b])


def _save_npy(path, array: np.ndarray) -> None:
    data = npy_bytes(array)
    atomic_write_bytes(path, lambda f: f.write(data))


@dataclass(frozen=True)
class _ShardRows:
    """What pass 2 needs of a shard's manifest (not its photo list)."""

    shard: int
    rows: int
    dim: int
    size: int
    digest: str


def _tables(layout: ArchiveLayout, shards: int, folder) -> tuple[list[_ShardRows], int]:
    """Pass 1: the shards' row counts and the row-aligned path, size and date tables
    (``array``: 8 bytes a photo, not a Python object each)."""
    kept: list[_ShardRows] = []
    sizes, dates, offsets = array("q"), array("d"), array("q", [0])
    failed = 0

    def write_paths(f) -> None:
        nonlocal failed
        for shard in range(shards):
            m = layout.read_manifest(shard)
            for p in m.photos:
                data = os.fsencode(p["path"])
                f.write(data)
                offsets.append(offsets[-1] + len(data))
                sizes.append(p["size"])
                dates.append(p["taken"] if p["taken"] is not None else p["mtime_ns"] / 1e9)  # as Collection.search
            failed += len(m.failed)
            kept.append(_ShardRows(m.shard, len(m.photos), m.dim, m.descriptors_bytes, m.descriptors_digest))

    atomic_write_bytes(folder / "paths.bin", write_paths)
    _save_npy(folder / "path_offsets.npy", np.frombuffer(offsets, np.int64))
    _save_npy(folder / "sizes.npy", np.frombuffer(sizes, np.int64))
    _save_npy(folder / "dates.npy", np.frombuffer(dates, np.float64))
    return kept, failed


def _shard_raw(layout: ArchiveLayout, s: _ShardRows) -> np.ndarray:
    try:
        return read_shard(layout.descriptors_path(s.shard), s.rows, s.dim, s.size, s.digest)
    except DamagedFile as exc:
        raise ArchiveError(f"Shard {s.shard} is damaged ({exc.reason}): delete {layout.manifest_path(s.shard)} and "
                           f"run 'lookalike archive index --out {layout.dir}' to describe it again.") from None


def _sample(layout: ArchiveLayout, manifests: list[_ShardRows], size: int, seed: int) -> np.ndarray:
    """About ``size`` raw descriptors, uniformly from shards drawn at random (reading about
    twice the sample, not the archive)."""
    rng = np.random.default_rng(seed)
    full = [m for m in manifests if m.rows]
    picked, rows = [], 0
    for i in rng.permutation(len(full)):
        if rows >= 2 * size:
            break
        picked.append(full[i])
        rows += full[i].rows
    raw = np.concatenate([_shard_raw(layout, m) for m in sorted(picked, key=lambda m: m.shard)])
    return raw if len(raw) <= size else raw[np.sort(rng.choice(len(raw), size, replace=False))]


def build_archive_index(directory, ann: AnnConfig | None = None,
                        emit: Callable[[str], None] = lambda message: None) -> IndexManifest:
    """Build the archive's search index from its finished shards (all must be finished)."""
    layout = ArchiveLayout(directory)
    info = layout.read_info()
    ann = ann or AnnConfig()
    with layout.lock():
        missing = info.shards - len(layout.finished_shards(info.shards))
        if missing:
            raise ArchiveError(f"{missing} of {info.shards} shards are not described yet; run "
                               f"'lookalike archive index --out {layout.dir}' first (it continues where it stopped).")
        _remove_unused_folders(layout)
        t0 = time.monotonic()
        folder = Path(tempfile.mkdtemp(prefix=f"index-{time.strftime('%Y%m%d-%H%M%S')}-", dir=layout.dir))
        manifests, failed = _tables(layout, info.shards, folder)
        n = sum(m.rows for m in manifests)
        if n == 0:
            raise ArchiveError(f"No photo of {layout.dir} could be described; see 'lookalike archive status'.")
        sidecars = HiddenSidecars.of(PathTable(folder))
        _save_npy(folder / "sidecars.npy", sidecars.rows)
        method = archive_method(layout, info)
        kind = ann.kind if ann.kind != "auto" else ("exact" if n <= ann.exact_threshold else "ivfpq")
        train_size = ann.train_size or max(30_000, 39 * (ann.nlist or auto_nlist(n)))
        t1 = time.monotonic()
        sample = _sample(layout, manifests, train_size, ann.seed)
        fit_state = method.fit(sample)
        if fit_state is not None:
            data = npz_bytes(fit_state)
            atomic_write_bytes(folder / "fit.npz", lambda f: f.write(data))
        vectors = np.ascontiguousarray(method.search_vectors(sample, fit_state), np.float32)
        if kind != "exact" and len(vectors) <= min(ann.pca_dims, vectors.shape[1]):
            raise ArchiveError(f"{n} photos are too few for an approximate index (its PCA keeps {ann.pca_dims} "
                               f"dimensions); build it with --kind exact or auto.")
        trainer = VectorIndex(vectors.shape[1], ann.replace(kind=kind))
        if kind != "exact":
            emit(f"training the {kind} index on {len(vectors)} of {n} photos")
        trainer.train(vectors, expected_total=n)
        t2 = time.monotonic()
        coarse = None if kind == "exact" else faiss.deserialize_index(trainer.trained_state())
        _fill(layout, folder, manifests, method, fit_state, coarse, n, vectors.shape[1], ann, emit)
        t3 = time.monotonic()
        manifest = _manifest(folder.name, method.name, n, failed, vectors.shape[1], manifests, kind, ann, coarse,
                             {"tables": t1 - t0, "sample_and_train": t2 - t1, "add": t3 - t2, "total": t3 - t0},
                             len(sidecars))
        previous = read_index_manifest(layout)
        atomic_write_text(layout.dir / POINTER, json.dumps(asdict(manifest), indent=1))  # the switch
        if previous is not None and previous.folder != folder.name:
            shutil.rmtree(layout.dir / previous.folder, ignore_errors=True)
    return manifest


def _fill(layout: ArchiveLayout, folder, manifests: list[_ShardRows], method, fit_state, coarse,
          n: int, dim: int, ann: AnnConfig, emit) -> None:
    """Pass 2: every shard's search vectors into the coarse stage and, as fp16, into ``refine.npy``."""
    def write_refine(f) -> None:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                                 "fortran_order": False, "shape": (n, dim)})
        done = 0
        for m in manifests:
            if not m.rows:
                continue
            sv = np.ascontiguousarray(method.search_vectors(_shard_raw(layout, m), fit_state), np.float32)
            if coarse is not None:
                with _faiss_threads(ann.build_threads):  # ann.py's build threads (one on a busy machine)
                    coarse.add(sv)
            f.write(sv.astype(np.float16).tobytes())
            done += len(sv)
            emit(f"added shard {m.shard:05d}: {done} of {n} photos")

    atomic_write_bytes(folder / "refine.npy", write_refine)
    _save_npy(folder / "shard_rows.npy", np.array([[m.shard, m.rows] for m in manifests], np.int64).reshape(-1, 2))
    if coarse is not None:
        atomic_write_bytes(folder / "coarse.faiss", lambda f: faiss.write_index(coarse, faiss.PyCallbackIOWriter(f.write)))


def _manifest(folder: str, method: str, n: int, failed: int, dim: int, manifests: list[_ShardRows], kind: str,
              ann: AnnConfig, coarse, seconds: dict[str, float], sidecars: int) -> IndexManifest:
    raw_dim = max((m.dim for m in manifests), default=0)
    if coarse is not None:
        base = faiss.downcast_index(coarse.index)
        ram = float(base.pq.code_size + 8)  # PQ code + id in the inverted lists
        ann = ann.replace(kind=kind, nlist=int(base.nlist))
    else:
        ram = 2.0 * dim  # exact: the fp16 vectors are loaded
        ann = ann.replace(kind=kind)
    per_photo = {"ram": ram, "refine": 2.0 * dim, "raw": 4.0 * raw_dim, "tables": 24.0}
    return IndexManifest(folder, method, n, failed, dim, raw_dim, kind, ann.to_dict(),
                         [[m.shard, m.rows] for m in manifests], per_photo,
                         {k: round(v, 3) for k, v in seconds.items()}, time.time(), sidecars)


def _remove_unused_folders(layout: ArchiveLayout) -> None:
    """Index folders no ``index.json`` names: what a killed build left behind."""
    current = read_index_manifest(layout)
    for entry in layout.dir.glob("index-*"):
        if entry.is_dir() and (current is None or entry.name != current.folder):
            log.info("removing %s, left by an index build that did not finish", entry)
            shutil.rmtree(entry, ignore_errors=True)
