"""Normalized Cut (Shi & Malik, PAMI 2000) on a dense affinity matrix, numpy/scipy only.

Used by cluster-MAC (Chen et al. 2017) to cluster the ``H·W`` local descriptors of a feature
map **without a spatial term**: only the feature distance enters the affinity.

* Affinity (Chen et al. eqs. (2)-(3)): ``d_ij = sqrt(sum_k w_k (f_ik - f_jk)^2)``,
  ``S_ij = exp(-d_ij / z)^2`` with ``z = 0.05 · max d``.
* Normalized cut relaxation (Shi & Malik eq. (6)-(8)): the generalized eigenproblem
  ``(D - W) y = λ D y`` with ``D = diag(W 1)``. We solve the equivalent symmetric problem on
  ``M = D^-1/2 W D^-1/2`` (normalized Laplacian ``I - M``): ``z`` = eigenvectors of the
  largest eigenvalues of ``M``, ``y = D^-1/2 z``.
* k-way (two variants): ``"kmeans"`` = k-means on the row-normalised top-k eigenvectors
  (the multi-eigenvector k-way cut, Shi & Malik §3.3 / Ng, Jordan & Weiss 2001), and
  ``"recursive"`` = recursive two-way cuts (Shi & Malik §3.1): split the segment whose
  Fiedler-vector bipartition has the lowest Ncut, with the splitting point chosen among
  evenly spaced thresholds by the Ncut value (their "l evenly spaced possible splitting
  points"), until k segments.
* Eigen solver: dense LAPACK ``eigh`` restricted to the top-k eigenpairs for small graphs,
  Lanczos (``scipy.sparse.linalg.eigsh``) above ``DENSE_MAX_NODES``. Measured on this
  2-core CPU for a 1024-node graph and 20 eigenvectors, see ``docs/METHODS.md``.

All functions are deterministic (fixed seeds) so descriptors are reproducible.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from engine.descriptors.kmeans import kmeans

# Above this many nodes the Lanczos solver is used (similar speed at 1024 nodes; measured).
DENSE_MAX_NODES = 1024
Z_FRACTION = 0.05


def weighted_distances(features: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Chen et al. eq. (2): ``d_ij = sqrt(sum_k w_k (f_ik - f_jk)^2)``; ``(N,C) -> (N,N)``."""
    f = np.asarray(features, dtype=np.float64)
    if weights is not None:
        f = f * np.sqrt(np.asarray(weights, dtype=np.float64))[None, :]
    sq = (f * f).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (f @ f.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def affinity(dist: np.ndarray, z_fraction: float = Z_FRACTION) -> np.ndarray | None:
    """Chen et al. eq. (3): ``S = exp(-d/z)^2`` with ``z = z_fraction · max d``.

    Returns None when all distances are zero (every node identical: one cluster).
    """
    dmax = float(dist.max()) if dist.size else 0.0
    if dmax <= 0.0:
        return None
    z = z_fraction * dmax
    return np.exp(-2.0 * dist / z)


def _normalized(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    deg = S.sum(1)
    dis = 1.0 / np.sqrt(np.maximum(deg, 1e-300))
    return S * dis[:, None] * dis[None, :], dis


def top_eigenvectors(M: np.ndarray, k: int, solver: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenpairs of the symmetric ``M`` (values descending, vectors as columns).

    ``solver``: ``"dense"`` (LAPACK, subset of eigenpairs), ``"lanczos"`` (ARPACK eigsh) or
    ``"auto"`` (dense up to ``DENSE_MAX_NODES`` nodes).
    """
    n = M.shape[0]
    k = max(1, min(k, n))
    if solver == "auto":
        solver = "dense" if n <= DENSE_MAX_NODES else "lanczos"
    if solver == "lanczos" and k < n - 1:
        v0 = np.full(n, 1.0 / np.sqrt(n))
        vals, vecs = scipy.sparse.linalg.eigsh(M, k=k, which="LA", v0=v0, tol=1e-8)
    else:
        vals, vecs = scipy.linalg.eigh(M, subset_by_index=[n - k, n - 1], check_finite=False)
    order = np.argsort(-vals, kind="stable")
    return vals[order], vecs[:, order]


def _compact(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..K-1 in order of first appearance (empty clusters vanish)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inv].astype(np.int64)


def ncut_value(S: np.ndarray, mask: np.ndarray) -> float:
    """Shi & Malik eq. (2): ``Ncut(A,B) = cut/assoc(A,V) + cut/assoc(B,V)``."""
    a, b = mask, ~mask
    cut = S[np.ix_(a, b)].sum()
    assoc_a, assoc_b = S[a].sum(), S[b].sum()
    if assoc_a <= 0 or assoc_b <= 0:
        return np.inf
    return float(cut / assoc_a + cut / assoc_b)


def ncut_bipartition(S: np.ndarray, n_thresholds: int = 32, solver: str = "auto") -> tuple[np.ndarray, float]:
    """Two-way normalized cut of affinity ``S`` (Shi & Malik §3.1).

    The second smallest generalized eigenvector ``y`` of ``(D-W) y = λ D y`` is thresholded
    at the one of ``n_thresholds`` evenly spaced values that minimises the Ncut.
    Returns (boolean mask of one side, its Ncut); a graph that cannot be split gives an
    all-False mask and ``inf``.
    """
    n = S.shape[0]
    if n < 2:
        return np.zeros(n, bool), np.inf
    M, dis = _normalized(S)
    _, vecs = top_eigenvectors(M, 2, solver)
    y = vecs[:, 1] * dis
    lo, hi = float(y.min()), float(y.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(n, bool), np.inf
    best_mask, best = np.zeros(n, bool), np.inf
    for t in np.linspace(lo, hi, n_thresholds + 2)[1:-1]:
        mask = y > t
        if not mask.any() or mask.all():
            continue
        v = ncut_value(S, mask)
        if v < best:
            best, best_mask = v, mask
    return best_mask, best


def ncut_recursive(S: np.ndarray, k: int, solver: str = "auto") -> np.ndarray:
    """k segments by recursive two-way cuts: split the segment with the lowest-Ncut bipartition."""
    n = S.shape[0]
    labels = np.zeros(n, np.int64)
    cache: dict[int, tuple[np.ndarray, float]] = {}
    while labels.max() + 1 < min(k, n):
        best_seg, best_val, best_mask = -1, np.inf, None
        for seg in range(labels.max() + 1):
            if seg not in cache:
                idx = np.flatnonzero(labels == seg)
                mask, val = ncut_bipartition(S[np.ix_(idx, idx)], solver=solver) if len(idx) > 1 else (None, np.inf)
                cache[seg] = (mask, val)
            mask, val = cache[seg]
            if val < best_val:
                best_seg, best_val, best_mask = seg, val, mask
        if best_mask is None or not np.isfinite(best_val):
            break
        idx = np.flatnonzero(labels == best_seg)
        new = labels.max() + 1
        labels[idx[best_mask]] = new
        cache.pop(best_seg, None)
    return _compact(labels)


def ncut_kway(S: np.ndarray, ks: Sequence[int], solver: str = "auto", seed: int = 0) -> list[np.ndarray]:
    """k-way normalized cuts of ``S`` for every k in ``ks``, sharing one eigendecomposition.

    k-means on the row-normalised eigenvectors of the k largest eigenvalues of
    ``D^-1/2 W D^-1/2`` (= the k smallest of the generalized problem, Shi & Malik eq. (8)).
    """
    n = S.shape[0]
    kmax = max(min(max(ks), n), 1)
    M, _dis = _normalized(S)
    _, vecs = top_eigenvectors(M, kmax, solver)
    out = []
    for k in ks:
        k = max(1, min(k, n))
        if k == 1:
            out.append(np.zeros(n, np.int64))
            continue
        emb = vecs[:, :k]
        emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
        out.append(_compact(kmeans(emb, k, seed=seed, restarts=3)[1]))
    return out


def normalized_cut(features: np.ndarray, ks: Sequence[int] | int, weights: np.ndarray | None = None,
                   method: str = "kmeans", z_fraction: float = Z_FRACTION, solver: str = "auto") -> list[np.ndarray]:
    """Cluster the rows of ``features`` (N,C) by normalized cut at each count in ``ks``.

    No spatial term: two rows with the same features always have the same affinity to
    every other row, wherever they lie in the image. Returns one ``(N,)`` int64 label array
    (labels 0..K-1, K <= k) per requested count.
    """
    if isinstance(ks, int):
        ks = [ks]
    n = len(features)
    S = affinity(weighted_distances(features, weights), z_fraction) if n > 1 else None
    if S is None or n <= 1:
        return [np.zeros(n, np.int64) for _ in ks]
    if method == "kmeans":
        return ncut_kway(S, ks, solver)
    if method == "recursive":
        return [ncut_recursive(S, k, solver) for k in ks]
    raise ValueError(f"unknown normalized-cut method {method!r} (kmeans or recursive)")
