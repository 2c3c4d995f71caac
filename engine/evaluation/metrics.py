"""Retrieval metrics of one query's ranking of the database (pure functions, numpy only).

**Ties** (our documented rule): :func:`rank_by_score` sorts by decreasing score with a
*stable* sort, so equal scores keep the database order (the order of ``images`` in
``ground_truth.json``). Rankings are therefore deterministic, and a tie is never resolved
in favour of the positives.

**Exclusions**, applied by :func:`score_query` before any metric:
- junk images are removed from the ranking (every protocol; Oxford's "junk");
- the query image is removed from its own ranking and from its positives for ``holidays`` and
  ``folders`` (``exclude_query=True``); ``ukbench`` and ``oxford`` keep it (it is listed in its
  own positives, as in the classic protocols).

**AP** is Oxford's / revisited-Oxford's ``compute_ap``: for the j-th positive found (0-based)
at rank r (0-based, after exclusions), precision just before it is j / r (1 when r = 0) and
just after it (j + 1) / (r + 1); AP = sum over found positives of their mean times the recall
step 1 / (number of positives) (the trapezoid rule over recall steps). Positives never
retrieved contribute 0. The same AP is used for every protocol.

**N-S** (UKBench): positives in the top 4, query included; max 4.0 with 4-image groups.
**P@k** = positives in the top k / k (k, not the list length, is the denominator).
**R@k** = positives in the top k / number of positives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def rank_by_score(scores: np.ndarray) -> np.ndarray:
    """Database indices best first: decreasing score, ties in database order (stable sort)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-scores, kind="stable")


def compute_ap(ranks: Sequence[int], n_positives: int) -> float:
    """Oxford's ``compute_ap``: ``ranks`` are the 0-based ranks of the retrieved positives
    (junk already removed), sorted ascending; ``n_positives`` counts all positives."""
    if n_positives <= 0:
        raise ValueError("compute_ap needs at least one positive")
    ap = 0.0
    step = 1.0 / n_positives
    for j, rank in enumerate(sorted(int(r) for r in ranks)):
        precision_0 = 1.0 if rank == 0 else j / rank
        precision_1 = (j + 1) / (rank + 1)
        ap += (precision_0 + precision_1) * step / 2.0
    return ap


def relevance(ranking: Sequence[str], positives: Sequence[str], junk: Sequence[str] = (),
              exclude: Sequence[str] = ()) -> np.ndarray:
    """Boolean relevance of ``ranking`` (names best first) with junk and ``exclude`` removed."""
    pos, drop = set(positives), set(junk) | set(exclude)
    return np.array([name in pos for name in ranking if name not in drop], dtype=bool)


def average_precision(ranking: Sequence[str], positives: Sequence[str], junk: Sequence[str] = (),
                      exclude: Sequence[str] = ()) -> float:
    """AP of a ranking of names (best first); see the module docstring for the rules."""
    drop = set(exclude)
    pos = [p for p in dict.fromkeys(positives) if p not in drop]
    rel = relevance(ranking, pos, junk, exclude)
    return compute_ap(np.flatnonzero(rel), len(pos))


def precision_recall_curve(rel: np.ndarray, n_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each rank of a relevance vector (junk already removed)."""
    hits = np.cumsum(rel.astype(np.float64))
    ranks = np.arange(1, len(rel) + 1, dtype=np.float64)
    return hits / ranks, hits / max(1, n_positives)


@dataclass
class QueryScore:
    """Metrics of one query. ``relevant`` is its relevance vector (after exclusions)."""

    query: str
    ap: float
    ns: float
    p_at_1: float
    p_at_5: float
    r_at_10: float
    n_positives: int
    top: list[str] = field(default_factory=list)
    relevant: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    def to_json(self) -> dict:
        return {"query": self.query, "ap": round(self.ap, 6), "ns": self.ns, "p@1": self.p_at_1,
                "p@5": round(self.p_at_5, 6), "r@10": round(self.r_at_10, 6),
                "positives": self.n_positives, "top": self.top}


def score_query(ranking: Sequence[str], query: str, positives: Sequence[str], junk: Sequence[str] = (),
                exclude_query: bool = False, label: str | None = None, keep_top: int = 10) -> QueryScore:
    """All metrics of one query's full ranking of the database (names best first)."""
    exclude = (query,) if exclude_query else ()
    pos = [p for p in dict.fromkeys(positives) if p not in set(exclude)]
    if not pos:
        raise ValueError(f"query {query!r} has no positive left after exclusions")
    drop = set(junk) | set(exclude)
    kept = [n for n in ranking if n not in drop]
    rel = np.array([n in set(pos) for n in kept], dtype=bool)
    ap = compute_ap(np.flatnonzero(rel), len(pos))
    return QueryScore(
        query=label or query, ap=ap, ns=float(rel[:4].sum()),
        p_at_1=float(rel[:1].sum()), p_at_5=float(rel[:5].sum()) / 5.0,
        r_at_10=float(rel[:10].sum()) / len(pos), n_positives=len(pos),
        top=kept[:keep_top], relevant=rel)


def summarize(scores: Sequence[QueryScore]) -> dict[str, float]:
    """Means over queries: ``mAP``, ``ns``, ``p@1``, ``p@5``, ``r@10``."""
    if not scores:
        raise ValueError("no query scores to summarise")
    return {
        "mAP": float(np.mean([s.ap for s in scores])),
        "ns": float(np.mean([s.ns for s in scores])),
        "p@1": float(np.mean([s.p_at_1 for s in scores])),
        "p@5": float(np.mean([s.p_at_5 for s in scores])),
        "r@10": float(np.mean([s.r_at_10 for s in scores])),
    }
