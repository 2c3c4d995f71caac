"""Post-processing learned on a collection: PCA-whitening (Jégou & Chum 2012).

A fitted transform is a ``dict[str, np.ndarray]`` so it can be stored in the catalog as a
plain ``.npz`` (no pickle).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6


def l2n_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """l2-normalise rows of a numpy array (zeros stay zeros)."""
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=axis, keepdims=True) + EPS)


def fit_pca_whitening(x: np.ndarray, dims: int | None = None, shrinkage: float = 0.1) -> dict[str, np.ndarray]:
    """Learn PCA-whitening on rows of ``x`` (N, D).

    ``P = diag((λ + s·mean λ)^-1/2) U^T`` on the top ``dims`` eigenvectors of the covariance.
    The shrinkage ``s`` keeps small collections (N ≲ D, a rank-deficient covariance) from
    blowing up noise directions; with N >> D it barely changes the transform.
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if n < 2:
        raise ValueError("PCA-whitening needs at least 2 descriptors")
    mean = x.mean(axis=0)
    xc = x - mean
    cov = xc.T @ xc / (n - 1)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0, None), eigvec[:, order]
    rank = max(1, min(d, n - 1))
    k = rank if dims is None else max(1, min(dims, rank))
    eigval, eigvec = eigval[:k], eigvec[:, :k]
    reg = eigval + shrinkage * eigval.mean() + EPS
    proj = (eigvec / np.sqrt(reg)).T
    return {"mean": mean.astype(np.float32), "proj": proj.astype(np.float32), "eigval": eigval.astype(np.float32)}


def apply_pca_whitening(x: np.ndarray, state: dict[str, np.ndarray], normalize: bool = True) -> np.ndarray:
    """Apply a transform from :func:`fit_pca_whitening`; l2-normalise the result by default."""
    y = (np.asarray(x, dtype=np.float32) - state["mean"]) @ state["proj"].T
    return l2n_np(y) if normalize else y
