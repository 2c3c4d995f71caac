"""Query-time re-ranking registry: name -> function re-scoring a ranking.

A reranker gets the query's search vector ``(D,)``, the database search vectors ``(N, D)``
(l2-normalised rows) and the initial ``(scores, indices)`` shortlist, best first, and returns
new ``(scores, indices)`` best first (it may rank the whole database). The keyword ``cache``
is a dict owned by the caller that lives as long as the database vectors stay the same
(``SearchIndex`` gives one per collection generation); rerankers keep derived structures
there (diffusion's kNN graph).

* ``none``: identity.
* ``aqe``: α-query expansion (Radenović, Tolias & Chum 2018 §5, "αQE"): the new query is
  ``l2(q + sum_{i in top-k} max(q·x_i, 0)^α x_i)``, k = 10, α = 3, and the whole database is
  re-scored by inner product with it.
* ``diffusion``: Iscen, Tolias, Avrithis, Furon & Chum 2017 (global descriptors, no
  regions): mutual-kNN graph of the database, ``a_ij = max(x_i·x_j, 0)^γ`` (γ = 3),
  ``S = D^-1/2 A D^-1/2``; the query vector ``y_i = max(q·x_i, 0)^γ`` on its ``query_k``
  nearest items, 0 elsewhere; ranking by ``f`` solving ``(I - αS) f = y`` with conjugate
  gradient (Iscen et al. eq. (4)/(8), 20 iterations). Our defaults k = 10, α = 0.8 instead
  of the paper's 50 / 0.99 (measured; see :class:`DiffusionParams`).
  The graph is built lazily on the first diffusion query and cached for the collection
  generation; after photos are added or removed its kNN lists are **updated incrementally**
  from the previous generation's (``engine.search.knn_graph``), or rebuilt when the other photos'
  vectors changed (a re-fitted whitening moves every vector).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from engine.search.knn_graph import KnnLists, build_knn_lists, update_knn_lists

Reranker = Callable[..., tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class RerankContext:
    """What a reranker may know about the query besides its vector: the photos themselves
    (spatial verification matches their local features). ``paths``: the photo of each database
    row; ``query_path``: the query photo when it is a file, else ``query_image`` (a PIL image);
    ``box``: the query region in the query photo's pixels (a region query), or None."""

    paths: Sequence[str]
    query_path: str | None = None
    query_image: object | None = None
    box: tuple[float, float, float, float] | None = None


def no_rerank(query: np.ndarray, database: np.ndarray, scores: np.ndarray, order: np.ndarray,
              cache: dict | None = None, context: RerankContext | None = None):
    return scores, order


@dataclass(frozen=True)
class AqeParams:
    k: int = 10
    alpha: float = 3.0


def alpha_query_expansion(query: np.ndarray, database: np.ndarray, scores: np.ndarray, order: np.ndarray,
                          cache: dict | None = None, context: RerankContext | None = None,
                          params: AqeParams = AqeParams()):
    """αQE: expand the query with its top-k neighbours weighted by ``sim^α``, re-score all."""
    top = np.asarray(order[: params.k], np.int64)
    if len(top) == 0:
        return scores, order
    s = database @ expanded_query(query, database[top], params.alpha)
    idx = np.argsort(-s, kind="stable")
    return s[idx], idx


def expanded_query(query: np.ndarray, neighbours: np.ndarray, alpha: float) -> np.ndarray:
    """αQE's new query ``l2(q + sum_i max(q·x_i, 0)^α x_i)`` over the rows ``neighbours``."""
    q = np.asarray(query, np.float32)
    if len(neighbours) == 0:
        return q
    sims = np.clip(neighbours @ q, 0.0, None)
    new_q = q + (sims[:, None] ** alpha * neighbours).sum(0)
    return new_q / (np.linalg.norm(new_q) + 1e-6)


@dataclass(frozen=True)
class DiffusionParams:
    """Iscen et al. use k = 50, α = 0.99 on 5k-105k images. On our small collections that
    graph is nearly complete and α = 0.99 lets the degree term swamp the query (measured:
    oxford_dev R-MAC mAP 0.680 -> 0.543, ukbench56 N-S 4.00 -> 1.57). Our defaults k = 10,
    α = 0.8 were chosen on those two sets (0.680 -> 0.757 and 4.00 -> 3.98); see docs/METHODS.md."""

    k: int = 10
    query_k: int = 10
    gamma: float = 3.0
    alpha: float = 0.8
    iters: int = 20


def affinity_from_lists(lists: KnnLists, gamma: float) -> scipy.sparse.csr_matrix:
    """Normalised mutual-kNN affinity ``S = D^-1/2 A D^-1/2`` (Iscen et al. 2017 §3) with
    ``a_ij = max(x_i·x_j, 0)^γ`` on the kNN lists."""
    n, kk = lists.neighbours.shape
    rows = np.repeat(np.arange(n), kk)
    vals = np.clip(lists.sims.reshape(-1), 0, None).astype(np.float64) ** gamma
    A = scipy.sparse.csr_matrix((vals, (rows, lists.neighbours.reshape(-1))), shape=(n, n))
    A.setdiag(0)
    A.eliminate_zeros()
    A = A.minimum(A.T)  # mutual neighbours only (min of a_ij, a_ji: zero unless both)
    deg = np.asarray(A.sum(1)).ravel()
    dis = scipy.sparse.diags(1.0 / np.sqrt(np.maximum(deg, 1e-12)))
    return (dis @ A @ dis).tocsr()


def knn_graph(database: np.ndarray, k: int, gamma: float) -> scipy.sparse.csr_matrix:
    """The affinity of a full kNN build of ``database``."""
    return affinity_from_lists(build_knn_lists(np.arange(len(database)), database, k), gamma)


def _knn_lists(database: np.ndarray, k: int, cache: dict | None) -> KnnLists:
    """The database's kNN lists: cached; else updated from the previous generation's lists
    when the cache has them (``SearchIndex`` passes them on with the photos' ``ids``); else built."""
    key = ("knn_lists", k)
    if cache is not None and key in cache:
        return cache[key]
    ids = cache.get("ids") if cache is not None else None
    previous = cache.get("previous", {}).get(key) if cache is not None else None
    if ids is not None and len(ids) == len(database) and previous is not None:
        lists = update_knn_lists(previous, ids, database, k)
    else:
        lists = build_knn_lists(np.arange(len(database)) if ids is None else ids, database, k)
    if cache is not None:
        cache[key] = lists
        cache.pop("previous", None)
    return lists


def diffusion(query: np.ndarray, database: np.ndarray, scores: np.ndarray, order: np.ndarray,
              cache: dict | None = None, context: RerankContext | None = None,
              params: DiffusionParams = DiffusionParams()):
    """Diffusion re-ranking on the cached kNN graph; ties (unreached items) keep the first ranking."""
    n = len(database)
    key = ("diffusion_graph", params.k, params.gamma, n)
    S = cache.get(key) if cache is not None else None
    if S is None:
        S = affinity_from_lists(_knn_lists(database, params.k, cache), params.gamma)
        if cache is not None:
            cache[key] = S
    q = np.asarray(query, np.float32)
    sims = database @ q
    qk = min(params.query_k, n)
    near = np.argpartition(-sims, qk - 1)[:qk] if qk < n else np.arange(n)
    y = np.zeros(n)
    y[near] = np.clip(sims[near], 0, None) ** params.gamma
    op = scipy.sparse.identity(n, format="csr") - params.alpha * S
    f, _info = scipy.sparse.linalg.cg(op, y, maxiter=params.iters, rtol=1e-6)
    first = np.full(n, n, np.int64)
    first[np.asarray(order, np.int64)] = np.arange(len(order))
    idx = np.lexsort((first, -f))
    return f[idx].astype(np.float32), idx


def spatial_verification(query, database, scores, order, cache=None, context=None):
    """``sv``: see :mod:`engine.search.spatial_verification` (imported on use: OpenCV loads only then)."""
    from engine.search.spatial_verification import spatial_rerank

    return spatial_rerank(query, database, scores, order, cache=cache, context=context)


def verified_query_expansion(query, database, scores, order, cache=None, context=None):
    """``sv+aqe``: αQE over the spatially verified top results only, then ``sv``'s bonus
    (see :func:`engine.search.spatial_verification.verified_expansion`)."""
    from engine.search.spatial_verification import verified_expansion

    return verified_expansion(query, database, scores, order, cache=cache, context=context)


def diffusion_then_verification(query, database, scores, order, cache=None, context=None):
    """``diffusion+sv``: diffusion's ranking, then ``sv`` on its top results."""
    s, o = diffusion(query, database, scores, order, cache=cache, context=context)
    return spatial_verification(query, database, s, o, cache=cache, context=context)


RERANKERS: dict[str, Reranker] = {"none": no_rerank, "aqe": alpha_query_expansion, "diffusion": diffusion,
                                  "sv": spatial_verification, "sv+aqe": verified_query_expansion,
                                  "diffusion+sv": diffusion_then_verification}
# What a new collection's searches use (the app, `search` and `eval` without --rerank): the one
# re-ranking that raised strict mAP on both landmark sets, crop and whole photo, with the
# default method (docs/RESULTS.md, crop / whole photo: oxford_dev 0.568 -> 0.750 / 0.715 -> 0.754,
# paris_dev 0.990 -> 0.990 / 0.982 -> 0.988; with the RANSAC check of 2026-12-01 oxford_dev 0.716 / 0.751); αQE and diffusion alone lower oxford_dev's
# whole-photo mAP (0.513, 0.564).
DEFAULT_RERANK = "sv+aqe"
