"""Synthetic descriptor sets shaped like CNN global descriptors, for the search benchmarks.

Real collections are not uniform noise: photos come in themes (trips, events, places), and
pooled CNN descriptors are non-negative with most energy in a few hundred directions. The
model here (our own, documented in docs/BENCHMARKS.md): a theme centre ``c`` and a
within-theme offset live in a ``rank``-dimensional latent space, are mapped to ``dim``
dimensions by a fixed random matrix with a decaying spectrum, rectified (ReLU, like MAC/R-MAC
components), mixed with a little isotropic noise and l2-normalised. Queries are fresh draws
from the same model (photos of existing themes that are not in the collection).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


class DescriptorModel:
    def __init__(self, dim: int = 1280, rank: int = 128, themes: int = 20_000, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim, self.rank, self.themes = dim, rank, themes
        spectrum = (1.0 / np.sqrt(1.0 + np.arange(rank))).astype(np.float32)
        self.proj = (rng.standard_normal((rank, dim)).astype(np.float32) * spectrum[:, None]) / np.sqrt(rank)
        self.centres = rng.standard_normal((themes, rank)).astype(np.float32)
        self.seed = seed

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` l2-normalised fp32 descriptors ``(n, dim)``."""
        rng = np.random.default_rng((self.seed, seed))
        theme = rng.integers(0, self.themes, n)
        z = self.centres[theme] + 0.7 * rng.standard_normal((n, self.rank), dtype=np.float32)
        x = np.maximum(z @ self.proj, 0.0)
        x += 0.02 * np.abs(rng.standard_normal(x.shape, dtype=np.float32))
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        return x.astype(np.float32, copy=False)

    def chunks(self, n: int, chunk: int = 50_000, seed: int = 1) -> Iterator[np.ndarray]:
        for i, start in enumerate(range(0, n, chunk)):
            yield self.sample(min(chunk, n - start), seed * 1_000_003 + i)


def exact_top_k(store: np.ndarray, queries: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Exact inner-product top-``k`` rows of ``store`` (fp16 or fp32) for each query, by chunks."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(store), chunk):
        s = store[start:start + chunk].astype(np.float32) @ q.T  # (c, Q)
        kk = min(k, len(s))
        part = np.argpartition(-s, kk - 1, axis=0)[:kk].T  # (Q, kk)
        ps = np.take_along_axis(s.T, part, axis=1)
        best_s = np.concatenate([best_s, ps], axis=1)
        best_i = np.concatenate([best_i, part + start], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s = np.take_along_axis(best_s, keep, axis=1)
            best_i = np.take_along_axis(best_i, keep, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1)


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean fraction of the true top-``k`` found in the returned top-``k``."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth)]
    return float(np.mean(hits) / k)
