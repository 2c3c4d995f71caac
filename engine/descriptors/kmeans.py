"""Lloyd's k-means with k-means++ seeding, shared by the normalized cut (engine/descriptors/ncut.py)
and Principal Feature Analysis (engine/descriptors/pfa.py). Small inputs only (dense distances)."""
from __future__ import annotations

import numpy as np


def kmeans_pp_seeds(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``(k', d)`` rows of ``x``, k' <= k
    (fewer when every remaining point already coincides with a seed)."""
    n = len(x)
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            break
        i = rng.choice(n, p=d2 / total)
        centres.append(x[i])
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(1))
    return np.array(centres)


def kmeans(points: np.ndarray, k: int, seed: int = 0, iters: int = 50,
           restarts: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(centres (k', d), labels (n,))``, k' = min(k, distinct rows); the best of ``restarts``
    runs by inertia. An empty cluster is re-seeded with the worst-fitted row."""
    x = np.asarray(points, dtype=np.float64)
    n = len(x)
    k = max(1, min(k, len(np.unique(x, axis=0))))
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(1)

    def distances(c: np.ndarray) -> np.ndarray:
        return sq[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]

    best: tuple[np.ndarray, np.ndarray] | None = None
    best_inertia = np.inf
    for _ in range(restarts):
        c = kmeans_pp_seeds(x, k, rng)
        labels = np.full(n, -1, np.int64)
        for _it in range(iters):
            dist = distances(c)
            new = dist.argmin(1)
            if np.array_equal(new, labels):
                break
            labels = new
            for j in range(len(c)):
                members = labels == j
                if members.any():
                    c[j] = x[members].mean(0)
                else:
                    far = dist[np.arange(n), labels].argmax()
                    c[j] = x[far]
                    labels[far] = j
        labels = distances(c).argmin(1)
        inertia = float(((x - c[labels]) ** 2).sum())
        if inertia < best_inertia - 1e-12:
            best, best_inertia = (c.copy(), labels.copy()), inertia
    assert best is not None
    return best
