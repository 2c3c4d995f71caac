"""Principal Feature Analysis (Lu, Cohen, Zhou & Tian, ACM MM 2007), as used by Seddati et al.

PFA *selects* original dimensions (unlike PCA, which mixes them):

1. covariance of the descriptors (rows of ``x``), its eigenvectors sorted by eigenvalue;
2. ``A_q``: the top-``q`` principal axes as columns, shape ``(D, q)``; its rows ``V_i`` (one per
   original dimension i) say how dimension i loads on the principal axes;
3. k-means on the rows ``V_i`` into ``p`` clusters (``p`` = the number of kept dimensions);
4. per cluster, keep the dimension whose ``V_i`` is nearest the cluster centre.

Dimensions that are exact copies of each other have identical rows ``V_i``, so they always fall
in the same cluster and at most one of them is kept.

**Our design where the paper is silent**: Seddati et al. use ``q = p`` (768). A collection with
``N`` descriptors has a covariance of rank ``≤ N − 1``; eigenvectors beyond the rank are an
arbitrary basis of the null space, so we use ``q = min(p, rank)`` axes (Lu et al. allow
``p ≥ q``). The rows are snapped to a 1e-9 grid before clustering so that copies of a
dimension, equal up to rounding noise, count as one point. k-means uses k-means++ seeding with a fixed seed (deterministic) and Lloyd
iterations; a cluster that empties is re-seeded with the row farthest from its centre.
Fewer than ``p`` *distinct* rows means fewer than ``p`` dimensions can be selected: PFA then
returns one per distinct row.
"""
from __future__ import annotations

import numpy as np

from engine.descriptors.kmeans import kmeans


def principal_axes(x: np.ndarray, q: int) -> np.ndarray:
    """``A_q`` (D, q'): top principal axes of the covariance of rows of ``x``, q' = min(q, rank)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    xc = x - x.mean(axis=0)
    if n <= d:
        # Thin SVD of the centred data: same eigenvectors, cheaper than the D x D covariance.
        _u, s, vt = np.linalg.svd(xc, full_matrices=False)
        eigval, eigvec = s ** 2 / max(1, n - 1), vt.T
    else:
        eigval, eigvec = np.linalg.eigh(xc.T @ xc / (n - 1))
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = eigval[order], eigvec[:, order]
    rank = int(np.sum(eigval > eigval.max() * 1e-10)) if eigval.size and eigval.max() > 0 else 0
    k = max(1, min(q, rank if rank else 1))
    return eigvec[:, :k]


def principal_feature_analysis(x: np.ndarray, p: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted, int64) of at most ``p`` original dimensions of ``x`` (N, D) kept by PFA."""
    x = np.asarray(x, dtype=np.float64)
    d = x.shape[1]
    if p >= d:
        return np.arange(d, dtype=np.int64)
    rows = principal_axes(x, p)               # V_i = rows of A_q
    # Rows of exactly copied dimensions are equal in exact arithmetic but may differ by
    # rounding noise (~1e-16) after the eigendecomposition; snap them to a 1e-9 grid (relative
    # to the largest loading) so copies are one distinct point for k-means and its seeding.
    scale = float(np.abs(rows).max()) or 1.0
    rows = np.round(rows / scale, 9)
    centres, labels = kmeans(rows, p, seed=seed, iters=30)
    keep = []
    for j in range(len(centres)):
        members = np.flatnonzero(labels == j)
        if len(members) == 0:
            continue
        err = ((rows[members] - centres[j]) ** 2).sum(1)
        keep.append(int(members[err.argmin()]))
    return np.array(sorted(set(keep)), dtype=np.int64)
