"""Query-time re-ranking registry: name -> function re-scoring a ranking.

A reranker gets the query's search vector, the database search vectors and the initial
(scores, indices) of the whole database, best first, and returns new (scores, indices).
``none`` is the identity; αQE and diffusion are registered by their module.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Reranker = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def no_rerank(query: np.ndarray, database: np.ndarray, scores: np.ndarray, order: np.ndarray):
    return scores, order


RERANKERS: dict[str, Reranker] = {"none": no_rerank}
