"""Search over a collection's descriptors with a faiss inner-product index.

Search vectors are l2-normalised, so inner product = cosine similarity. Methods whose
similarity is not an inner product re-score a faiss shortlist exactly (``Method.rescore``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.search.ann import AnnConfig, build_vector_index
from engine.store.catalog import CatalogStore
from engine.errors import LookalikeError
from engine.imaging.formats import raw_sidecar_pairs
from engine.descriptors.methods import Method
from engine.search.rerank import RERANKERS, RerankContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    path: str
    score: float
    image_id: int
    date: float = 0.0  # EXIF date taken, else file modification time (POSIX s); set by Collection.search
    size: int = 0  # file size in bytes; set by Collection.search
    # The method's own similarity of the pair, before any re-ranking (``score`` is the
    # re-ranker's: relative to the top result, plus verification bonuses). What the GUI's
    # calibrated % and near-duplicate threshold read; None from code that does not set it.
    base_score: float | None = None


class HiddenSidecars:
    """The rows a search leaves out of its results: every JPEG/HEIC side-car of a RAW in the
    index (one exposure saved twice by the camera is one result, the RAW;
    :func:`engine.imaging.formats.raw_sidecar_pairs` is the rule). The desktop
    :class:`SearchIndex` finds them when it is built; an archive's index build stores them
    (``sidecars.npy``, :mod:`engine.archive.merge`) and its search reads them from there."""

    def __init__(self, rows: np.ndarray):
        self.rows = np.asarray(rows, np.int64)  # sorted

    @classmethod
    def of(cls, paths: Sequence[str]) -> "HiddenSidecars":
        return cls(np.array(sorted(s for _raw, s in raw_sidecar_pairs(paths)), np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def shortlist_extra(self, top: int) -> int:
        """Candidates to fetch beyond ``top`` so that hiding side-cars still fills ``top``."""
        return min(len(self.rows), top)

    def hidden(self, rows: np.ndarray) -> np.ndarray:
        """Per candidate row: whether the results leave it out."""
        rows = np.asarray(rows, np.int64)
        if not len(self.rows) or not len(rows):
            return np.zeros(len(rows), bool)
        return self.rows[np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)] == rows


class SearchIndex:
    """The faiss index of one method over one catalog, with the method's fitted state."""

    def __init__(self, catalog: CatalogStore, method: Method, shortlist: int = 200,
                 ann: AnnConfig | None = None, carried: dict | None = None):
        """``ann``: exact vs approximate index settings (default :class:`AnnConfig`: exact up
        to 100k photos, IVF-PQ with exact re-scoring above; see :mod:`engine.search.ann`).
        ``carried``: :meth:`carry_over` of an earlier generation's index: its diffusion kNN
        lists are updated rather than rebuilt (see :mod:`engine.search.knn_graph`)."""
        self.catalog = catalog
        self.method = method
        self.shortlist = shortlist
        self.generation = catalog.generation(method.name)
        self.ids, self.paths, self.raw = catalog.load_descriptors(method.name)
        if len(self.ids) == 0:
            raise LookalikeError(f"No photos are indexed with method '{method.name}' in {catalog.dir}; run 'lookalike index' first.")
        self.fit_state = self._fitted_state()
        self.vectors = np.ascontiguousarray(method.search_vectors(self.raw, self.fit_state), dtype=np.float32)
        self.index = build_vector_index(catalog, method.name, self.vectors, ann)
        self._row_of_path = {p: i for i, p in enumerate(self.paths)}
        # A RAW's JPEG/HEIC side-car is the same exposure: results show the RAW only.
        self._sidecar_rows = HiddenSidecars.of(self.paths)
        # Rerankers' derived structures (diffusion graph) for this generation; the photos' ids
        # and the previous generation's kNN lists let diffusion update instead of rebuild.
        # Spatial verification keeps the photos' local features next to the catalog.
        self.rerank_cache: dict = {"ids": self.ids, "local_features_dir": catalog.dir / "local_features"}
        if carried:
            self.rerank_cache["previous"] = carried

    def _fitted_state(self):
        stored = self.catalog.load_state(self.method.name, "fit")
        if stored is not None and stored[1] == self.generation:
            return stored[0]
        state = self.method.fit(self.raw)
        if state is not None:
            self.catalog.save_state(self.method.name, "fit", state, self.generation)
        return state

    def carry_over(self) -> dict:
        """What the next generation's index can reuse: the kNN lists diffusion built (small:
        ids, one fingerprint and k+1 neighbours per photo), or what this index was given and
        has not used yet."""
        got = {k: v for k, v in self.rerank_cache.items() if isinstance(k, tuple) and k[0] == "knn_lists"}
        return got or dict(self.rerank_cache.get("previous", {}))

    def __len__(self) -> int:
        return len(self.ids)

    def is_stale(self) -> bool:
        return self.catalog.generation(self.method.name) != self.generation

    def row_of(self, path: str) -> int | None:
        return self._row_of_path.get(path)

    # -- scoring (what search() ranks by; the evaluation scores through these too) -----------
    def query_vector(self, query_raw: np.ndarray) -> np.ndarray:
        """The query's search vector, ``(1, D)`` float32, with the fitted post-processing."""
        raw = np.asarray(query_raw, np.float32)[None, :]
        return np.ascontiguousarray(self.method.search_vectors(raw, self.fit_state), dtype=np.float32)

    def exact_rescores(self, query_raw: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """The method's exact similarity to the photos at ``rows`` (float64, higher is better),
        or None for methods whose similarity is the inner product of search vectors."""
        exact = self.method.rescore(np.asarray(query_raw, np.float32), self.raw[rows], self.fit_state)
        return None if exact is None else np.asarray(exact, dtype=np.float64)

    def scores(self, query_raw: np.ndarray, rows: np.ndarray, qv: np.ndarray | None = None) -> np.ndarray:
        """The method's similarity of the query to the photos at ``rows``: its exact re-score,
        else the inner product of search vectors (``qv``: :meth:`query_vector`, if known)."""
        exact = self.exact_rescores(query_raw, rows)
        if exact is not None:
            return exact
        qv = self.query_vector(query_raw) if qv is None else qv
        return self.vectors[rows] @ qv[0]

    def search(self, query_raw: np.ndarray, top: int = 20, exclude: set[str] | None = None,
               rerank: str = "none", photo=None, box=None,
               preview: Callable[[list[SearchResult]], None] | None = None) -> list[SearchResult]:
        """Best ``top`` results for a raw query descriptor, best first. ``photo`` (the query's
        path or PIL image) and ``box`` (its region, if any) are for rerankers that look at the
        photos (``sv``). ``preview``, with a re-ranking, gets the first stage's best ``top``
        before the re-ranking runs (the same shortlist: nothing is searched twice)."""
        if rerank not in RERANKERS:
            raise LookalikeError(f"Unknown re-ranking '{rerank}'; choose one of {', '.join(RERANKERS)}.")
        exclude = exclude or set()
        n = len(self.ids)
        qv = self.query_vector(query_raw)
        hidden = len(exclude) + self._sidecar_rows.shortlist_extra(top)
        k = min(n, max(top + hidden, self.shortlist) if (rerank != "none" or self._rescores()) else top + hidden)
        scores, idx = self.index.search(qv, k)
        scores, idx = scores[0], idx[0]
        keep = idx >= 0
        scores, idx = scores[keep], idx[keep]
        exact = self.exact_rescores(query_raw, idx)
        if exact is not None:
            order = np.argsort(-exact, kind="stable")
            scores, idx = exact[order], idx[order]
        base = dict(zip(idx.tolist(), scores.tolist()))  # first-stage scores, before re-ranking
        if rerank != "none":
            if preview is not None:
                preview(self._results(scores, idx, top, exclude, base, query_raw, qv))
            is_path = isinstance(photo, (str, os.PathLike))
            context = RerankContext(self.paths, os.fspath(photo) if is_path else None,
                                    None if is_path else photo, box)
            scores, idx = RERANKERS[rerank](qv[0], self.vectors, scores, idx, cache=self.rerank_cache,
                                            context=context)
        return self._results(scores, idx, top, exclude, base, query_raw, qv)

    def _results(self, scores: np.ndarray, idx: np.ndarray, top: int, exclude: set[str], base: dict[int, float],
                 query_raw: np.ndarray, qv: np.ndarray) -> list[SearchResult]:
        """The best ``top`` of a ranking, excluded paths and hidden side-cars left out, each with
        its first-stage score (``base``, completed for rows the re-ranker brought in)."""
        out = []
        for s, i, sidecar in zip(scores, idx, self._sidecar_rows.hidden(idx)):
            p = self.paths[i]
            if p in exclude or sidecar:
                continue
            out.append((p, float(s), int(i)))
            if len(out) >= top:
                break
        missing = np.array([i for _p, _s, i in out if i not in base], np.int64)
        if len(missing):  # brought in by the re-ranker (query expansion): score them as the method does
            base.update(zip(missing.tolist(), np.asarray(self.scores(query_raw, missing, qv), np.float64).tolist()))
        return [SearchResult(p, s, int(self.ids[i]), base_score=float(base[i])) for p, s, i in out]

    def _rescores(self) -> bool:
        return type(self.method).rescore is not Method.rescore
