"""Run one method on one dataset through :class:`engine.api.Collection`, with a cache.

The database is indexed into a catalog under ``cache_dir()/eval/<dataset>-<method>-<key>``,
where the key hashes (dataset folder, method, its full config incl. backbone, rotation mode),
so a second run only re-scores (indexing is incremental: changed files are re-described).
The indexing time per image is measured when images are actually described and kept in the
catalog's meta, so a cached run still reports it.

Scoring: by :meth:`engine.search.index.SearchIndex.scores`, the function the app's search
ranks by (the inner product of search vectors with the fitted post-processing, or the
method's exact ``rescore`` when it has one), over the *whole* database (the app re-scores a
faiss shortlist of 200; with full re-scoring the evaluation measures the method, not the
shortlist). Ranking: see :func:`engine.evaluation.metrics.rank_by_score` (ties keep
the database order).

Queries with a ``bbox``: ``query_crop="image"`` describes the cropped image (crop I),
``"activations"`` crops the feature maps (crop X) where the method supports it and falls back
to crop I otherwise (reported per result as ``query_crop``), ``"none"`` ignores the box and
uses the image's stored database descriptor.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from engine.nn.device import select_device
from engine.errors import CatalogBusyError, LookalikeError
from engine.descriptors.methods import METHODS, create_method
from engine.store.paths import cache_dir
from engine.evaluation.dataset import Dataset
from engine.evaluation.metrics import QueryScore, rank_by_score, score_query, summarize

if TYPE_CHECKING:
    from engine.indexing.indexer import IndexReport

log = logging.getLogger(__name__)

QUERY_CROPS = ("image", "none", "activations")
ROTATIONS = ("exif", "stored")


@dataclass
class MethodResult:
    """The evaluation of one method on one dataset."""

    method: str
    dataset: str
    protocol: str
    backbone: str
    image_side: int
    dim: int
    n_images: int
    n_queries: int
    query_crop: str
    rotation: str
    device: str
    metrics: dict[str, float | None]
    ms_per_image: float | None  # wall-clock indexing time per image (when it was indexed)
    cpu_ms_per_image: float | None  # CPU time of this process per image (all its threads)
    index_seconds: float
    query_seconds: float
    cached: bool
    config: dict
    per_query: list[QueryScore] = field(default_factory=list, repr=False)
    paths: dict[str, str] = field(default_factory=dict, repr=False)  # name -> file (report strips)

    def to_json(self, per_query: bool = True) -> dict:
        out = {"method": self.method, **{k: (None if v is None else round(v, 6)) for k, v in self.metrics.items()},
               "backbone": self.backbone, "image_side": self.image_side, "dim": self.dim,
               "images": self.n_images, "queries": self.n_queries, "query_crop": self.query_crop,
               "rotation": self.rotation, "device": self.device,
               "ms_per_image": None if self.ms_per_image is None else round(self.ms_per_image, 2),
               "cpu_ms_per_image": None if self.cpu_ms_per_image is None else round(self.cpu_ms_per_image, 2),
               "index_seconds": round(self.index_seconds, 3), "query_seconds": round(self.query_seconds, 3),
               "cached": self.cached, "config": self.config}
        if per_query:
            out["per_query"] = [s.to_json() for s in self.per_query]
        return out


def cache_key(dataset: Dataset, method: str, config: dict, rotation: str) -> str:
    blob = json.dumps({"dataset": str(dataset.root), "layout": dataset.layout, "images": str(dataset.images_root),
                       "method": method, "config": config, "rotation": rotation}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def catalog_dir_for(dataset: Dataset, method: str, config: dict, rotation: str, cache_root: Path | None = None) -> Path:
    base = Path(cache_root) if cache_root else cache_dir() / "eval"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{dataset.name}-{method}")
    return base / f"{safe}-{cache_key(dataset, method, config, rotation)}"


def _stored_orientation_copy(dataset: Dataset, dest: Path) -> Path:
    """``rotation='stored'``: a mirror of the database with EXIF orientation ignored.

    Files whose EXIF Orientation is absent or 1 are linked as they are (the loader leaves them
    unchanged anyway); a file with another orientation is re-encoded from its stored pixels,
    without EXIF, at JPEG quality 95 (a slight loss), so the engine sees it as stored.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in dataset.images:
        src, dst = dataset.path_of(name), dest / name
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            orientation = im.getexif().get(0x0112, 1)
            if orientation in (None, 1):
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
            else:
                im.convert("RGB").save(dst, "JPEG", quality=95)
    return dest


class SharedFeatureMaps:
    """An extractor proxy that remembers feature maps of the images it has seen (evaluation only).

    ``main.py eval`` runs several methods over the same database in one process; methods with
    the same backbone, input side and taps (mac, spoc, gem, rmac all pool the last tap at 512 px)
    then need the CNN only once per image. Maps are keyed by the image's pixels, input side and
    tap, kept up to ``max_bytes`` (then no longer added) and handed out as copies. The CNN time
    recorded when a map was computed is added up in ``saved_wall``/``saved_cpu`` on every reuse,
    so the indexing time per image reported for a method stays what it would cost alone.
    Everything else is forwarded to the wrapped :class:`~engine.nn.features.FeatureExtractor`.
    """

    def __init__(self, extractor, max_bytes: int = 2 << 30):
        self._extractor = extractor
        self._cache: dict[tuple, tuple[dict, float, float]] = {}
        self._bytes = 0
        self.max_bytes = max_bytes
        self.saved_wall = 0.0
        self.saved_cpu = 0.0
        self.hits = 0

    def __getattr__(self, name):
        return getattr(self._extractor, name)

    @staticmethod
    def _key(image, side, taps) -> tuple:
        if isinstance(image, Image.Image):
            digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
            return (digest, image.size, image.mode, side, tuple(taps))
        arr = image.detach().cpu().contiguous().numpy()
        return (hashlib.blake2b(arr.tobytes(), digest_size=16).hexdigest(), tuple(arr.shape), "tensor", side, tuple(taps))

    def feature_maps(self, images, side, taps):
        keys = [self._key(im, side, taps) for im in images]
        out: list = [None] * len(images)
        missing = []
        for i, k in enumerate(keys):
            hit = self._cache.get(k)
            if hit is None:
                missing.append(i)
                continue
            maps, wall, cpu = hit
            out[i] = {t: v.clone() for t, v in maps.items()}
            self.saved_wall += wall
            self.saved_cpu += cpu
            self.hits += 1
        if missing:
            t0, c0 = time.monotonic(), time.process_time()
            computed = self._extractor.feature_maps([images[i] for i in missing], side, taps)
            wall = (time.monotonic() - t0) / len(missing)
            cpu = (time.process_time() - c0) / len(missing)
            for i, maps in zip(missing, computed):
                out[i] = maps
                size = sum(v.numel() * v.element_size() for v in maps.values())
                if self._bytes + size <= self.max_bytes:
                    self._cache[keys[i]] = ({t: v.clone() for t, v in maps.items()}, wall, cpu)
                    self._bytes += size
        return out


_shared_maps: dict[int, SharedFeatureMaps] = {}


def _eval_collection_type():
    from engine.api import Collection

    class EvalCollection(Collection):
        """A Collection whose extractor shares feature maps between methods (see SharedFeatureMaps)."""

        def extractor_for(self, method):
            base = super().extractor_for(method)
            return _shared_maps.setdefault(id(base), SharedFeatureMaps(base))

    return EvalCollection


def _index_waiting_for_lock(col, method: str, progress, overrides, wait_s: float = 3600.0):
    """Index; when another process holds the catalog's lock (a parallel ``eval`` of the same
    dataset and method), wait for it (up to ``wait_s``) instead of failing."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            return col.index(method=method, progress=progress, overrides=overrides)
        except CatalogBusyError:
            if time.monotonic() > deadline:
                raise
            if not told:
                log.warning("another process is indexing %s; waiting for it", col.directory)
                told = True
            time.sleep(5.0)


def _check_options(method: str, query_crop: str, rotation: str, rerank: str) -> None:
    from engine.search.rerank import RERANKERS

    if query_crop not in QUERY_CROPS:
        raise LookalikeError(f"Unknown query crop '{query_crop}'; choose one of {', '.join(QUERY_CROPS)}.")
    if rotation not in ROTATIONS:
        raise LookalikeError(f"Unknown rotation mode '{rotation}'; choose one of {', '.join(ROTATIONS)}.")
    if method not in METHODS:
        raise LookalikeError(f"Unknown method '{method}'. Available: {', '.join(sorted(METHODS))}.")
    if rerank not in RERANKERS:
        raise LookalikeError(f"Unknown re-ranking '{rerank}'; choose one of {', '.join(RERANKERS)}.")


@dataclass
class _IndexTiming:
    report: IndexReport
    seconds: float
    ms_per_image: float | None  # of the run that described the images (kept in the catalog's meta)
    cpu_ms_per_image: float | None


def _index_timed(col, method: str, progress, overrides) -> _IndexTiming:
    """Index (incrementally) and measure the time per described image; a cached run reads the
    time measured when its images were described."""
    shared = col.extractor_for(col.method(method, overrides))
    saved0 = (shared.saved_wall, shared.saved_cpu)
    t0, cpu0 = time.monotonic(), time.process_time()
    report = _index_waiting_for_lock(col, method, progress, overrides)
    seconds = time.monotonic() - t0
    index_cpu = time.process_time() - cpu0
    # CNN time of feature maps reused from another method's run counts as this method's cost.
    index_wall_alone = report.seconds + shared.saved_wall - saved0[0]
    index_cpu += shared.saved_cpu - saved0[1]
    if report.cancelled:
        raise LookalikeError("Evaluation cancelled while indexing.")
    if report.indexed:
        # Time per described image, measured now; kept for later cached runs.
        col.catalog.set_meta("eval_ms_per_image", f"{1000.0 * index_wall_alone / report.indexed:.3f}")
        col.catalog.set_meta("eval_cpu_ms_per_image", f"{1000.0 * index_cpu / report.indexed:.3f}")
        col.catalog.set_meta("eval_ms_images", str(report.indexed))
    ms_meta = col.catalog.get_meta("eval_ms_per_image")
    cpu_meta = col.catalog.get_meta("eval_cpu_ms_per_image")
    return _IndexTiming(report, seconds, float(ms_meta) if ms_meta else None, float(cpu_meta) if cpu_meta else None)


def _database_rows(col, idx, dataset: Dataset, images_root: Path) -> np.ndarray:
    """The search index's row of every database image, in the dataset's order."""
    rows, missing = [], []
    for name in dataset.images:
        r = idx.row_of(os.fspath(images_root / name))
        if r is None:
            missing.append(name)
        rows.append(r)
    if missing:
        failed = dict(col.catalog.failures())
        why = failed.get(os.fspath(images_root / missing[0]), "not indexed")
        raise LookalikeError(f"{len(missing)} database image(s) of {dataset.name} could not be indexed, "
                             f"e.g. {missing[0]}: {why}")
    return np.array(rows, dtype=np.int64)


def _score_queries(col, idx, dataset: Dataset, images_root: Path, rows: np.ndarray, query_crop: str,
                   rerank: str) -> tuple[list[QueryScore], str]:
    """Every query's metrics, and the query crop actually used. Scores are the app's
    (:meth:`engine.search.index.SearchIndex.scores`) over the whole database, not a shortlist."""
    from engine.search.rerank import RERANKERS, RerankContext

    m = idx.method
    db_vectors = idx.vectors[rows]
    pos_of = {name: i for i, name in enumerate(dataset.images)}
    db_paths = [os.fspath(images_root / name) for name in dataset.images]
    used_crop = query_crop
    scores_out: list[QueryScore] = []
    rerank_cache: dict = {}  # the database stays the same for every query
    for q in dataset.queries:
        if q.bbox is not None and query_crop != "none":
            mode = "activations" if (query_crop == "activations" and m.supports_activation_crop) else "image"
            if query_crop == "activations" and mode == "image":
                used_crop = "image (activations not supported)"
            q_raw = col.describe_query(images_root / q.image, m.name, box=q.bbox, box_mode=mode)
        else:
            q_raw = idx.raw[rows[pos_of[q.image]]]
        qv = idx.query_vector(q_raw)
        scores = idx.scores(q_raw, rows, qv)
        order = rank_by_score(scores)
        if rerank != "none":
            box = q.bbox if query_crop != "none" else None
            context = RerankContext(db_paths, os.fspath(images_root / q.image), box=box)
            _, order = RERANKERS[rerank](qv[0], db_vectors, scores[order], order, cache=rerank_cache,
                                         context=context)
        ranking = [dataset.images[i] for i in order]
        scores_out.append(score_query(ranking, q.image, q.positives, q.junk,
                                      exclude_query=dataset.excludes_query, label=q.label))
    return scores_out, used_crop


def evaluate(dataset: Dataset, method: str, device: str = "auto", query_crop: str = "image",
             rotation: str = "exif", weights: str | None = None, cache_root: str | os.PathLike | None = None,
             progress: Callable | None = None, overrides: dict | None = None,
             rerank: str = "none") -> MethodResult:
    """Index ``dataset`` with ``method`` (cached) and score every query.

    ``rerank`` (a name of :data:`engine.search.rerank.RERANKERS`) re-ranks each query's full ranking
    of the database, as the app does with its shortlist; the result is named ``method+rerank``.
    """
    _check_options(method, query_crop, rotation, rerank)
    Collection = _eval_collection_type()  # heavy imports only when evaluating
    if dataset.protocol != "holidays":
        rotation = "exif"  # the option is Holidays' (other sets are evaluated upright per EXIF)
    m0 = create_method(method, overrides)
    config = m0.config.to_dict()
    cat_dir = catalog_dir_for(dataset, method, {**config, "weights": weights}, rotation,
                              Path(cache_root) if cache_root else None)
    images_root = dataset.images_root
    if rotation == "stored":
        images_root = _stored_orientation_copy(dataset, cat_dir / "stored-orientation")
    images_root = images_root.resolve()

    col = Collection.open(cat_dir, device=device, weights=weights)
    try:
        col.add_folder(images_root)
        timing = _index_timed(col, method, progress, overrides)
        idx = col.search_index(method)
        rows = _database_rows(col, idx, dataset, images_root)
        t1 = time.monotonic()
        scores_out, used_crop = _score_queries(col, idx, dataset, images_root, rows, query_crop, rerank)
        query_seconds = time.monotonic() - t1
        metrics: dict[str, float | None] = summarize(scores_out)
        if dataset.protocol != "ukbench":
            metrics["ns"] = None  # N-S is UKBench's score only
        m = idx.method
        return MethodResult(
            method=method if rerank == "none" else f"{method}+{rerank}", dataset=dataset.label,
            protocol=dataset.protocol, backbone=m.config.backbone,
            image_side=int(getattr(m.config, "image_side", 0)), dim=int(idx.vectors.shape[1]),
            n_images=len(dataset.images), n_queries=len(dataset.queries), query_crop=used_crop,
            rotation=rotation, device=str(select_device(device)), metrics=metrics,
            ms_per_image=timing.ms_per_image, cpu_ms_per_image=timing.cpu_ms_per_image,
            index_seconds=timing.seconds, query_seconds=query_seconds, cached=timing.report.indexed == 0,
            config=config, per_query=scores_out, paths={n: os.fspath(images_root / n) for n in dataset.images})
    finally:
        col.close()
