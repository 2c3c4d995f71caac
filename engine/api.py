"""The engine's small public API, used by the CLI and the GUI (through a worker thread).

    col = Collection.open(catalog_dir)          # creates the catalog if needed
    col.add_folder("~/Pictures")
    report = col.index(method="rmac", progress=print, cancel=event)
    results = col.search("query.jpg", top=20)   # [SearchResult(path, score, image_id)]

Heavy objects (backbone, faiss index) are built once and reused while valid.

The desktop window reaches the engine only through this module, :mod:`engine.services` and
:mod:`engine.errors` (``tests/test_architecture.py``), so what it needs from elsewhere in the
engine is re-exported or wrapped here: image decoding and thumbnails, the catalog folder's
default place, the accelerator's name, score calibration, the folder watcher, training and
the catalog facts and decisions it shows (``Collection`` methods below).
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from engine.nn.backbones import DEFAULT_BACKBONE, imagenet_category  # noqa: F401  (re-exported for the GUI)
from engine.store.catalog import DB_NAME, CatalogStore, weights_fingerprint
from engine.errors import LookalikeError
from engine.nn.features import FeatureExtractor
from engine.imaging.images import crop_box, is_image_path, load_image  # noqa: F401  (crop_box, is_image_path: the GUI)
from engine.imaging.thumbnails import bucket_for as thumbnail_bucket, load_thumbnail  # noqa: F401  (the GUI)
from engine.indexing.indexer import Indexer, IndexProgress, IndexReport, query_threads, torch_threads
from engine.indexing.watcher import FolderChanges, FolderWatcher  # noqa: F401  (FolderChanges: the GUI)
from engine.descriptors.methods import DEFAULT_METHOD, METHODS, Method, create_method
from engine.descriptors.methods.base import is_trainable
from engine.store.paths import config_dir, data_home, default_catalog_dir  # noqa: F401  (the GUI)
from engine.search.index import SearchIndex, SearchResult
from engine.search.score_calibration import ScoreCalibration, score_calibration, stored_calibration  # noqa: F401

_extractors: dict[tuple, FeatureExtractor] = {}
_extractor_lock = threading.Lock()


def get_extractor(backbone: str = DEFAULT_BACKBONE, device: str = "auto", weights: str | None = None) -> FeatureExtractor:
    """Shared feature extractor (one model per backbone/device/weights in a process)."""
    key = (backbone, device, weights)
    with _extractor_lock:
        if key not in _extractors:
            _extractors[key] = FeatureExtractor(backbone, device, weights)
        return _extractors[key]


def list_methods() -> list[dict[str, Any]]:
    """Every registered method (see :meth:`MethodSpec.info`: words, ``default``, ``recommended``,
    ``supports``, measured ``images_per_s`` and accuracy), by name."""
    from engine.descriptors.methods.measured import load_measured

    measured = load_measured()
    return [s.info(DEFAULT_METHOD, measured) for s in sorted(METHODS.values(), key=lambda s: s.name)]


def catalog_exists(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a catalog (a remembered collection on an unplugged drive does not)."""
    return (Path(directory).expanduser() / DB_NAME).exists()


def network_runtime(device: str = "auto") -> str:
    """What runs the network for ``device`` ("ONNX Runtime 1.32.0 on the CPU", "PyTorch 2.14.1
    on CUDA"), as the window's device picker and ``lookalike methods`` show it."""
    from engine.nn.features import planned_runtime

    return planned_runtime(device)


def accelerator_name() -> str | None:
    """Name of the accelerator the ``auto`` device would use (a CUDA GPU, Apple's MPS), or
    None when the CPU computes."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "Apple Metal (MPS)"
    return None


@dataclass(frozen=True)
class KeypointMatches:
    """Matched points of a query and a result: ``query_xy`` / ``result_xy`` (K, 2) in the
    upright full-size pixels of photos of ``query_size`` / ``result_size`` (width, height);
    ``verified``: enough of them agree on one geometry to call it the same object or place."""

    query_xy: np.ndarray
    result_xy: np.ndarray
    query_size: tuple[int, int]
    result_size: tuple[int, int]
    verified: bool


def matched_keypoints(query: str | os.PathLike | Image.Image, result_path: str | os.PathLike,
                      features_dir: Path) -> KeypointMatches:
    """:meth:`Collection.matched_keypoints` with the local features cached in ``features_dir``
    (a collection's catalog folder; an archive's folder in the user cache)."""
    from engine.search.local_features import LocalFeatureStore, extract, verify
    from engine.search.spatial_verification import SpatialParams

    params = SpatialParams()
    store = LocalFeatureStore(params.features, features_dir)
    q = extract(query, params.features) if isinstance(query, Image.Image) else store.get(os.fspath(query))
    r = store.get(os.fspath(result_path))
    v = verify(q, r, params.check)
    return KeypointMatches(np.asarray(v.points_a, np.float32).reshape(-1, 2),
                           np.asarray(v.points_b, np.float32).reshape(-1, 2),
                           tuple(q.image_size), tuple(r.image_size), bool(v.verified))


def is_archive(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` is an archive (:mod:`engine.archive`, described on a Ray cluster)
    rather than a desktop collection's catalog."""
    from engine.archive.layout import ArchiveLayout

    return ArchiveLayout(directory).is_archive()


def open_archive(directory: str | os.PathLike, device: str = "auto"):
    """An archive opened read-only (:class:`engine.archive.collection.ArchiveCollection`): the
    ``search`` / ``search_index`` / ``method`` interface of a :class:`Collection` the search view
    and why-matched use; actions that would change it raise :class:`LookalikeError`."""
    from engine.archive.collection import ArchiveCollection

    return ArchiveCollection.open(directory, device)


def method_capabilities(name: str) -> set[str] | None:
    """What method ``name`` can do beyond searching (:meth:`Method.capabilities`: overlay kind,
    CAM, activation crop, training), or None for an unknown name."""
    spec = METHODS.get(name)
    return None if spec is None else set(spec.create().capabilities())


class Collection:
    """A photo collection: its folders and catalog, and the methods indexed in it."""

    # False: indexed and changed here. An archive (:func:`open_archive`) is True: searched only.
    read_only = False

    def __init__(self, catalog: CatalogStore, device: str = "auto", weights: str | None = None):
        self.catalog = catalog
        self.device = device
        self.weights = weights
        self._search: dict[str, SearchIndex] = {}
        self._carried: dict[str, dict] = {}  # per method: what a stale search index passes on
        self._methods: dict[str, Method] = {}
        self._lock = threading.RLock()

    @classmethod
    def open(cls, catalog_dir: str | os.PathLike | None = None, create: bool = True, device: str = "auto",
             weights: str | None = None) -> "Collection":
        return cls(CatalogStore(catalog_dir or default_catalog_dir(), create=create), device, weights)

    @property
    def directory(self) -> Path:
        return self.catalog.dir

    def close(self) -> None:
        self.catalog.close()

    # -- configuration ------------------------------------------------------------------
    @property
    def active_method(self) -> str:
        return self.catalog.get_meta("method") or DEFAULT_METHOD

    def set_active_method(self, name: str) -> None:
        create_method(name)  # validates the name
        self.catalog.set_meta("method", name)

    def add_folder(self, path: str | os.PathLike) -> int:
        return self.catalog.add_folder(path)

    def remove_folder(self, path: str | os.PathLike) -> int:
        n = self.catalog.remove_folder(path)
        self._search.clear()
        return n

    def folders(self) -> list[str]:
        return [p for _i, p in self.catalog.folders()]

    def method(self, name: str | None = None, overrides: dict[str, Any] | None = None) -> Method:
        """The method ``name`` as configured in this collection (with its prepared state)."""
        name = name or self.active_method
        with self._lock:
            if name in self._methods and not overrides:
                return self._methods[name]
            stored = self.catalog.method_config(name)
            if stored is not None and not overrides:
                if name not in METHODS:
                    raise LookalikeError(f"Unknown method '{name}'. Available: {', '.join(sorted(METHODS))}.")
                spec = METHODS[name]
                m = spec.cls(name, type(spec.config).from_dict(stored), spec.description, spec.cost)
            else:
                m = create_method(name, overrides)
            prepared = self.catalog.load_state(name, "prepare")
            if prepared is not None:
                m.set_prepared(prepared[0])
            for kind in m.stored_state_kinds:
                extra = self.catalog.load_state(name, kind)
                m.set_stored_state(kind, None if extra is None else extra[0])
            self._methods[name] = m
            return m

    def extractor_for(self, method: Method) -> FeatureExtractor:
        return get_extractor(method.config.backbone, self.device, self.weights)

    # -- indexing -----------------------------------------------------------------------
    def index(self, method: str | None = None, folders: list[str] | None = None,
              progress: Callable[[IndexProgress], None] | None = None,
              cancel: threading.Event | None = None, batch_size: int = 8,
              overrides: dict[str, Any] | None = None, verify_hashes: bool | list[str] | set[str] = False) -> IndexReport:
        """Index the collection's folders (plus ``folders``, added first) with ``method``.

        ``verify_hashes``: also re-hash files whose size and mtime did not change (True: all;
        or the paths :class:`engine.indexing.watcher.FolderWatcher` reported as edited in place)."""
        for f in folders or []:
            self.add_folder(f)
        if not self.catalog.folders():
            raise LookalikeError("This collection has no folders yet; add a photo folder first.")
        m = self.method(method, overrides)
        self.catalog.ensure_method(m.name, m.config.to_dict(), weights_fingerprint(self.weights))
        if self.catalog.get_meta("method") is None or method:
            self.catalog.set_meta("method", m.name)
        extractor = self.extractor_for(m)
        report = Indexer(self.catalog, m, extractor, batch_size=batch_size,
                         verify_hashes=verify_hashes).run(progress=progress, cancel=cancel)
        self.catalog.set_meta("last_indexed", str(time.time()))
        old = self._search.pop(m.name, None)
        if old is not None and old.generation != self.catalog.generation(m.name):
            self._carried[m.name] = old.carry_over()  # diffusion's kNN lists, to update not rebuild
        return report

    # -- search -------------------------------------------------------------------------
    def search_index(self, method: str | None = None) -> SearchIndex:
        m = self.method(method)
        self.catalog.check_weights(m.name, weights_fingerprint(self.weights))  # no query with other weights
        with self._lock:
            idx = self._search.get(m.name)
            if idx is None or idx.is_stale():
                carried = idx.carry_over() if idx is not None else self._carried.get(m.name)
                idx = SearchIndex(self.catalog, m, carried=carried)
                self._carried.pop(m.name, None)
                self._search[m.name] = idx
            return idx

    def warm_up(self, method: str | None = None) -> None:
        """Load the model and the search index of ``method`` now, so the first query pays neither.

        The GUI calls this in the background when a collection opens. One small forward
        pass also builds the CPU kernels' first-call caches (the first pass is several
        times slower than the next).
        """
        m = self.method(method)
        extractor = self.extractor_for(m)
        with torch_threads(query_threads()):
            m.describe([Image.new("RGB", (96, 96), (128, 128, 128))], extractor)
        if self.catalog.has_descriptor(m.name):
            self.search_index(m.name)

    def describe_query(self, query: str | os.PathLike | Image.Image, method: str | None = None,
                       box: tuple[float, float, float, float] | None = None, box_mode: str = "image") -> np.ndarray:
        """Raw descriptor of a query image (a path or a PIL image), optionally of a box of it."""
        m = self.method(method)
        if isinstance(query, Image.Image):
            img = query.convert("RGB")
        else:
            if not Path(query).exists():
                raise LookalikeError(f"Query image not found: {query}")
            # A box is in the photo's own pixels, so only a whole-image query may be
            # decoded reduced (JPEG draft: 40 ms instead of 118 ms for 12 MP).
            img = load_image(query, None if box is not None else m.decode_side())
        with torch_threads(query_threads()):
            return m.describe_query(img, self.extractor_for(m), box=box, box_mode=box_mode)

    def search(self, query: str | os.PathLike | Image.Image, method: str | None = None, top: int = 20,
               exclude_query: bool = False, box=None, box_mode: str = "image",
               rerank: str | None = None,
               preview: Callable[[list[SearchResult]], None] | None = None) -> list[SearchResult]:
        """Most similar indexed photos to ``query``, best first.

        A query that is itself indexed uses its stored descriptor (unless a box is given).
        ``rerank``: a name of :data:`engine.search.rerank.RERANKERS` (None: ``DEFAULT_RERANK``, what a
        new collection uses). ``preview``, when given and there is a re-ranking, is called with
        the ranking before it (the global descriptor's first stage) while the re-ranking runs:
        spatial verification takes seconds a query, the window shows the preview meanwhile.
        """
        from engine.search.rerank import DEFAULT_RERANK

        rerank = DEFAULT_RERANK if rerank is None else rerank
        idx = self.search_index(method)
        qpath = None if isinstance(query, Image.Image) else os.path.abspath(os.fspath(query))
        row = idx.row_of(qpath) if qpath else None
        if row is not None and box is None:
            q = idx.raw[row]
        else:
            q = self.describe_query(query, idx.method.name, box, box_mode)
        exclude = {qpath} if (exclude_query and qpath) else set()
        first = None if preview is None else (lambda results: preview(self._with_details(results)))
        return self._with_details(idx.search(q, top=top, exclude=exclude, rerank=rerank,
                                             photo=qpath or query, box=box, preview=first))

    def _with_details(self, results: list[SearchResult]) -> list[SearchResult]:
        """The results with their date and file size from the catalog (for sorting and the
        views), read for these photos only."""
        details: dict[int, tuple[float, int]] = {}
        # One bound JSON array instead of N placeholders: constant SQL, no parameter limit.
        rows = self.catalog.query("SELECT id, size, mtime_ns, taken FROM images WHERE id IN "
                                  "(SELECT value FROM json_each(?))",
                                  (json.dumps([int(r.image_id) for r in results]),))
        for image_id, size, mtime_ns, taken in rows:
            details[image_id] = (taken if taken is not None else mtime_ns / 1e9, size)
        return [dataclasses.replace(r, date=details[r.image_id][0], size=details[r.image_id][1])
                if r.image_id in details else r for r in results]

    def matched_keypoints(self, query: str | os.PathLike | Image.Image, result_path: str | os.PathLike) -> "KeypointMatches":
        """Local features of the query and a result that agree on one geometry (SIFT ->
        RootSIFT matches kept by RANSAC, :func:`engine.search.local_features.verify`), for drawing
        lines between the two photos in "why matched". About 0.2 s per photo on one core.
        The same check and the same cached features as the ``sv`` re-ranking, so the lines
        drawn are the matches that moved the result."""
        return matched_keypoints(query, result_path, self.catalog.dir / "local_features")

    # -- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        last = self.catalog.get_meta("last_indexed")
        return {
            "catalog": str(self.catalog.dir),
            "folders": self.folders(),
            "images": self.catalog.image_count(),
            "failed": [{"path": p, "reason": r} for p, r in self.catalog.failures()],
            "methods": [{"name": n, "descriptors": c} for n, c, _g in self.catalog.methods()],
            "active_method": self.active_method,
            "last_indexed": float(last) if last else None,
        }

    # -- what the window shows and records ------------------------------------------------
    def image_count(self) -> int:
        return self.catalog.image_count()

    def indexed_counts(self) -> dict[str, int]:
        """Photos with a descriptor, per method indexed in this collection."""
        return {name: count for name, count, _generation in self.catalog.methods()}

    def unsearchable_count(self, method: str | None = None) -> int:
        """Photos the last search of ``method`` could not look at: their stored descriptors are
        damaged (the next index run or ``lookalike repair`` describes them again)."""
        return self.catalog.skipped_at_last_load(self.method(method).name)

    def has_descriptors(self, method: str | None = None) -> bool:
        """Whether any photo is indexed with ``method`` (default: the active one)."""
        return bool(self.catalog.has_descriptor(method or self.active_method))

    def has_method_settings(self, method: str) -> bool:
        """Whether ``method`` was configured for this collection (its first indexing stores them)."""
        return self.catalog.method_config(method) is not None

    def generation(self, method: str | None = None) -> int:
        """Changes with every change of ``method``'s descriptors (views cache on it)."""
        return self.catalog.generation(method or self.active_method)

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be indexed."""
        return self.catalog.failures()

    def remove_photos(self, paths: list[str]) -> int:
        """Forget photos moved out of the collection (or to the trash): their catalog rows go
        (the search index sees the new generation and is rebuilt on the next search)."""
        return self.catalog.remove_images(paths)

    def browser(self):
        """An :class:`engine.services.browse.CollectionBrowser` of this collection's catalog."""
        from engine.services.browse import CollectionBrowser

        return CollectionBrowser(self.catalog)

    def folder_watcher(self, interval_s: float = 300.0, debounce_s: float = 2.0) -> FolderWatcher:
        """A :class:`engine.indexing.watcher.FolderWatcher` of this collection's folders."""
        return FolderWatcher(self.catalog, interval_s=interval_s, debounce_s=debounce_s)

    def is_trainable(self, method: str | None = None) -> bool:
        """Whether ``method`` has a head that ``train`` can adapt (ACTNET, DARAC)."""
        return is_trainable(self.method(method))

    def train(self, method: str, *, epochs: int = 5, progress=None, cancel: threading.Event | None = None):
        """Self-supervised training of ``method``'s head on this collection's photos, kept only
        if held-out retrieval improves (:func:`engine.training.pipeline.train_for_collection`)."""
        from engine.training.pipeline import train_for_collection

        return train_for_collection(self, method, epochs=epochs, progress=progress, cancel=cancel)

    # -- duplicate review decisions (engine.services.duplicates) ---------------------------
    def pair_decisions(self) -> dict[tuple[str, str], str]:
        return self.catalog.pair_decisions()

    def mark_not_duplicates(self, members) -> int:
        """Remember that these photos (``PhotoInfo``) are different photos."""
        from engine.services.duplicates import not_duplicates

        return not_duplicates(self.catalog, members)

    def mark_resolved(self, members) -> int:
        """Remember that this group was reviewed and every photo kept."""
        from engine.services.duplicates import mark_resolved

        return mark_resolved(self.catalog, members)

    def keep_rules(self):
        from engine.services.duplicates import load_keep_rules

        return load_keep_rules(self.catalog)

    def set_keep_rules(self, rules) -> None:
        from engine.services.duplicates import save_keep_rules

        save_keep_rules(self.catalog, rules)
