"""An archive opened read-only, searched like a desktop collection.

:class:`ArchiveCollection` has the part of :class:`engine.api.Collection` that searching,
the results grid and why-matched use (``search``, ``search_index``, ``method``,
``extractor_for``, ``describe_query``, ``matched_keypoints``, ``status``, counts), so
:func:`engine.services.explain.explain_match` and the search view work on it unchanged.
Everything that would write (index, folders, training, duplicate decisions) raises
:class:`ReadOnlyArchiveError`: an archive changes only through ``lookalike archive``.

Paths are shown as the workers recorded them; a photo this machine cannot read (another
host's disk) keeps its result and its score, and :meth:`ArchiveCollection.unreachable_reason`
gives the words for its placeholder.

A RAW and its JPEG/HEIC side-car (same folder, same name) are one result, the RAW, as in
the desktop search (:class:`engine.search.index.HiddenSidecars`; the index build stores the
side-car rows).

Queries are searched without re-ranking: every re-ranker either looks at all vectors
(``aqe``, ``diffusion``: not in RAM at archive scale) or at the photos themselves (``sv``),
which may be on other hosts.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from PIL import Image

from engine.api import Collection, get_extractor, matched_keypoints
from engine.archive.describe import archive_method
from engine.archive.layout import ArchiveError, ArchiveLayout
from engine.archive.merge import IndexManifest, PathTable, read_index_manifest
from engine.descriptors.methods import Method
from engine.errors import LookalikeError
from engine.indexing.indexer import query_threads, torch_threads
from engine.search.ann import AnnConfig, VectorIndex
from engine.search.index import HiddenSidecars, SearchResult
from engine.store.integrity import DamagedFile, read_state
from engine.store.paths import cache_dir

log = logging.getLogger(__name__)


class ReadOnlyArchiveError(LookalikeError):
    """A write action (index, add a folder, duplicates...) asked of an archive."""


class ArchiveSearchIndex:
    """The merged index of an archive (:mod:`engine.archive.merge`) with its row tables
    memory-mapped: RAM holds the coarse stage only (``manifest.bytes_per_photo["ram"]``)."""

    SHORTLIST = 200  # candidates re-scored by methods whose similarity is not an inner product
    OPEN_SHARDS = 256  # raw shards kept mapped for re-scoring (each mapping is one file)

    def __init__(self, layout: ArchiveLayout, method: Method, manifest: IndexManifest):
        folder = layout.dir / manifest.folder
        self.layout = layout
        self.method = method
        self.manifest = manifest
        self.fit_state = read_state(folder / "fit.npz", None, None) if (folder / "fit.npz").exists() else None
        refine = np.load(folder / "refine.npy", mmap_mode="r")
        config = AnnConfig(**manifest.ann)
        if manifest.kind == "exact":
            self.index = VectorIndex.build(np.asarray(refine, np.float32), config)
        else:
            self.index = VectorIndex.from_coarse(faiss.read_index(str(folder / "coarse.faiss")), refine, config)
        self._paths = PathTable(folder)
        self._sizes = np.load(folder / "sizes.npy", mmap_mode="r")
        self._dates = np.load(folder / "dates.npy", mmap_mode="r")
        rows = np.asarray(manifest.shard_rows, np.int64).reshape(-1, 2)
        self._shards = rows[:, 0]
        self._starts = np.concatenate([[0], np.cumsum(rows[:, 1])])
        self._raw: OrderedDict[int, np.ndarray] = OrderedDict()
        if (folder / "sidecars.npy").exists():
            self.sidecars = HiddenSidecars(np.load(folder / "sidecars.npy"))
        else:  # built before the side-cars were stored: found now, as the desktop does at each open
            log.info("%s has no sidecars.npy (built by an older Lookalike); finding the RAW side-cars", folder)
            self.sidecars = HiddenSidecars.of(self._paths)

    def __len__(self) -> int:
        return self.manifest.photos

    def path(self, row: int) -> str:
        return self._paths[row]

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """Raw descriptors of index rows, read from their shards (memory-mapped)."""
        out = np.empty((len(rows), self.manifest.raw_dim), np.float32)
        where = np.searchsorted(self._starts, rows, side="right") - 1
        for i, (row, k) in enumerate(zip(rows, where)):
            out[i] = self._shard(int(self._shards[k]))[int(row - self._starts[k])]
        return out

    def _shard(self, shard: int) -> np.ndarray:
        arr = self._raw.pop(shard, None)
        if arr is None:
            arr = np.load(self.layout.descriptors_path(shard), mmap_mode="r")
            if len(self._raw) >= self.OPEN_SHARDS:
                self._raw.popitem(last=False)
        self._raw[shard] = arr
        return arr

    def search(self, query_raw: np.ndarray, top: int = 20, exclude: set[str] | None = None) -> list[SearchResult]:
        """Best ``top`` photos for a raw query descriptor: the coarse shortlist, re-scored by
        the method where its similarity is not an inner product (as
        :meth:`engine.search.index.SearchIndex.search` without re-ranking). A RAW's side-cars
        are left out, as there."""
        exclude = exclude or set()
        rescores = type(self.method).rescore is not Method.rescore
        qv = np.ascontiguousarray(self.method.search_vectors(np.asarray(query_raw, np.float32)[None, :],
                                                             self.fit_state), np.float32)
        hidden = len(exclude) + self.sidecars.shortlist_extra(top)
        k = min(len(self), max(top + hidden, self.SHORTLIST) if rescores else top + hidden)
        scores, rows = self.index.search(qv, k)
        keep = rows[0] >= 0
        scores, rows = scores[0][keep].astype(np.float64), rows[0][keep]
        exact = self.method.rescore(np.asarray(query_raw, np.float32), self.raw(rows), self.fit_state) if rescores else None
        if exact is not None:
            order = np.argsort(-np.asarray(exact, np.float64), kind="stable")
            scores, rows = np.asarray(exact, np.float64)[order], rows[order]
        out = []
        for s, r, sidecar in zip(scores, rows, self.sidecars.hidden(rows)):
            if sidecar:
                continue
            path = self.path(int(r))
            if path in exclude:
                continue
            out.append(SearchResult(path, float(s), int(r), float(self._dates[r]), int(self._sizes[r]), float(s)))
            if len(out) >= top:
                break
        return out


class ArchiveCollection:
    """An archive folder opened read-only with the search side of :class:`engine.api.Collection`."""

    read_only = True

    def __init__(self, layout: ArchiveLayout, device: str = "auto"):
        self.layout = layout
        self.info = layout.read_info()
        self.device = device
        self._method: Method | None = None
        self._index: ArchiveSearchIndex | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike, device: str = "auto") -> "ArchiveCollection":
        return cls(ArchiveLayout(directory), device)

    @property
    def directory(self) -> Path:
        return self.layout.dir

    def close(self) -> None:
        self._index = None

    # -- what the window shows ------------------------------------------------------------
    @property
    def active_method(self) -> str:
        return self.info.method

    def folders(self) -> list[str]:
        return list(self.info.sources)

    def _manifest(self) -> IndexManifest:
        manifest = read_index_manifest(self.layout)
        if manifest is None:
            raise ArchiveError(f"The archive {self.layout.dir} has no search index yet; "
                               f"'lookalike archive build-index {self.layout.dir}' builds it.")
        return manifest

    def image_count(self) -> int:
        manifest = read_index_manifest(self.layout)
        return 0 if manifest is None else manifest.photos

    def indexed_counts(self) -> dict[str, int]:
        return {self.info.method: self.image_count()}

    def has_descriptors(self, method: str | None = None) -> bool:
        return (method or self.info.method) == self.info.method and self.image_count() > 0

    def has_method_settings(self, method: str) -> bool:
        return method == self.info.method

    def unsearchable_count(self, method: str | None = None) -> int:
        """0: a damaged shard stops the index build (it is named there), so every photo of a
        built index is searchable."""
        return 0

    def generation(self, method: str | None = None) -> int:
        """Changes when the index is rebuilt (views cache on it)."""
        manifest = read_index_manifest(self.layout)
        return 0 if manifest is None else int(manifest.built * 1000)

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every file the listing or the workers could not describe."""
        out = [(f["path"], f["reason"]) for f in self.info.listing_failed]
        for shard in sorted(self.layout.finished_shards(self.info.shards)):
            out.extend((f["path"], f["reason"]) for f in self.layout.read_manifest(shard).failed)
        return out

    def status(self) -> dict[str, Any]:
        from engine.archive.status import archive_status

        return archive_status(self.layout.dir)

    def unreachable_reason(self, path: str) -> str | None:
        """None when this machine can read ``path``; else the words for its placeholder."""
        if os.path.isfile(path):
            return None
        return f"Not reachable from this machine: {path} (recorded by the archive's workers)"

    def is_trainable(self, method: str | None = None) -> bool:
        return False

    # -- method, model, index ---------------------------------------------------------------
    def method(self, name: str | None = None, overrides: dict[str, Any] | None = None) -> Method:
        if (name and name != self.info.method) or overrides:
            raise ReadOnlyArchiveError(f"This archive was described with '{self.info.method}' "
                                       f"{self.info.config}; it is searched with that method only.")
        if self._method is None:
            self._method = archive_method(self.layout, self.info)
        return self._method

    def extractor_for(self, method: Method):
        return get_extractor(method.config.backbone, self.device, self.info.weights)

    def search_index(self, method: str | None = None) -> ArchiveSearchIndex:
        m = self.method(method)
        manifest = self._manifest()
        if self._index is None or self._index.manifest.folder != manifest.folder:
            try:
                self._index = ArchiveSearchIndex(self.layout, m, manifest)
            except (OSError, ValueError, DamagedFile, RuntimeError) as exc:
                raise ArchiveError(f"The archive's index cannot be read ({exc}); "
                                   f"'lookalike archive build-index {self.layout.dir}' builds it again.") from None
        return self._index

    def warm_up(self, method: str | None = None) -> None:
        """Load the model and the index now, so the first query pays neither."""
        m = self.method(method)
        with torch_threads(query_threads()):
            m.describe([Image.new("RGB", (96, 96), (128, 128, 128))], self.extractor_for(m))
        if self.image_count():
            self.search_index(m.name)

    # The same query decoding and description as a desktop collection (it uses only
    # ``method`` and ``extractor_for``).
    describe_query = Collection.describe_query

    def search(self, query: str | os.PathLike | Image.Image, method: str | None = None, top: int = 20,
               exclude_query: bool = False, box=None, box_mode: str = "image",
               rerank: str | None = None, preview=None) -> list[SearchResult]:
        """Most similar photos of the archive to ``query``, best first (``rerank``: None or
        ``"none"``; see the module docstring). ``preview`` is never called: with no re-ranking
        the first ranking is the final one."""
        if rerank not in (None, "none"):
            raise LookalikeError(f"An archive is searched without re-ranking ('{rerank}' needs every vector in memory "
                                 f"or every photo on this machine); use --rerank none.")
        idx = self.search_index(method)
        q = self.describe_query(query, idx.method.name, box, box_mode)
        qpath = None if isinstance(query, Image.Image) else os.path.abspath(os.fspath(query))
        return idx.search(q, top=top, exclude={qpath} if (exclude_query and qpath) else set())

    def matched_keypoints(self, query, result_path):
        """As :meth:`engine.api.Collection.matched_keypoints`; the local features are cached
        in the user cache (the archive folder is not written)."""
        key = hashlib.blake2b(os.fsencode(self.layout.dir), digest_size=8).hexdigest()
        return matched_keypoints(query, result_path, cache_dir() / "archive_local_features" / key)

    # -- what an archive does not do --------------------------------------------------------
    def _refuse(self, what: str):
        raise ReadOnlyArchiveError(f"An archive is opened read-only: {what} is not possible here. "
                                   f"It changes only through 'lookalike archive index --out {self.layout.dir}'.")

    def index(self, *args, **kwargs):
        self._refuse("indexing")

    def add_folder(self, path):
        self._refuse("adding a folder")

    def remove_folder(self, path):
        self._refuse("removing a folder")

    def remove_photos(self, paths):
        self._refuse("removing photos")

    def set_active_method(self, name: str) -> None:
        if name != self.info.method:
            self._refuse("another method")

    def train(self, *args, **kwargs):
        self._refuse("adapting the method to the photos")

    def browser(self):
        self._refuse("browsing by folder and date")

    def folder_watcher(self, *args, **kwargs):
        self._refuse("watching folders")

    def pair_decisions(self):
        self._refuse("reviewing duplicates")

    def mark_not_duplicates(self, members):
        self._refuse("reviewing duplicates")

    def mark_resolved(self, members):
        self._refuse("reviewing duplicates")

    def keep_rules(self):
        self._refuse("reviewing duplicates")

    def set_keep_rules(self, rules):
        self._refuse("reviewing duplicates")
