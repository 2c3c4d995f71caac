"""Parameter-free hedge (NormalHedge, Chaudhuri, Freund & Hsu, NIPS 2009) for MS-RMAC layer weights.

MS-RMAC (Li et al., IEEE SPL 2017, Sec. "Hedge Weight for MS-RMAC") treats each layer j as an
expert and each labelled training query as a round t:

* ``S_{j,t}``: retrieval accuracy of query t using layer j alone; ``S_t``: accuracy with all
  layers weighted by the current ``alpha_t``.
* Loss of expert j — **our choice**, the paper's formula was lost in the extraction:
  ``l_{j,t} = S_t − S_{j,t}`` (a layer that retrieves better than the weighted system gets a
  *negative* loss, i.e. less loss than a worse layer).
* Mixture loss ``l̄_t = Σ_j alpha_{j,t} l_{j,t}``; instantaneous regret ``r_{j,t} = l̄_t − l_{j,t}``;
  cumulative regret ``R_{j,t} = Σ_{τ≤t} r_{j,τ}``.
* NormalHedge: find the scale ``c_t > 0`` with ``(1/L) Σ_j exp([R_{j,t}]_+² / (2 c_t)) = e``; then
  ``alpha_{j,t+1} ∝ ([R_{j,t}]_+ / c_t) · exp([R_{j,t}]_+² / (2 c_t))``; uniform when every
  ``[R_{j,t}]_+ = 0``.

Note: with this loss, ``r_{j,t} = S_{j,t} − Σ_k alpha_{k,t} S_{k,t}``: ``S_t`` cancels out, so the
regret only compares each layer with the current mixture of layers. The sign convention is
what matters (better layers gain regret, hence weight); it is tested in ``tests/test_hedge_pfa.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.evaluation.metrics import compute_ap


def normalhedge_scale(regret_plus: np.ndarray, tol: float = 1e-10, max_iter: int = 200) -> float:
    """Solve ``(1/L) Σ_j exp(R_j² / (2c)) = e`` for ``c > 0`` (NormalHedge, Chaudhuri et al. 2009).

    ``regret_plus``: the clipped cumulative regrets ``[R_j]_+`` (at least one > 0). The left side
    decreases monotonically in ``c`` (from +inf to 1 < e), so bisection on ``log c`` finds it.
    """
    r2 = np.asarray(regret_plus, dtype=np.float64) ** 2
    if not np.any(r2 > 0):
        raise ValueError("normalhedge_scale needs at least one positive regret")

    def excess(c: float) -> float:
        # log-mean-exp of r2/(2c) minus 1 (log e), computed stably.
        z = r2 / (2.0 * c)
        m = z.max()
        return m + math.log(np.mean(np.exp(z - m))) - 1.0

    # Bracket: at c = max r2 / 2 each exponent is <= 1, so the mean is <= e (excess <= 0);
    # shrink lo until excess(lo) > 0.
    hi = float(r2.max()) / 2.0
    lo = hi
    while excess(lo) <= 0:
        lo /= 2.0
    a, b = math.log(lo), math.log(hi)
    for _ in range(max_iter):
        mid = 0.5 * (a + b)
        if excess(math.exp(mid)) > 0:
            a = mid
        else:
            b = mid
        if b - a < tol:
            break
    return math.exp(b)


def normalhedge_weights(cum_regret: np.ndarray) -> np.ndarray:
    """Weights ``alpha_j ∝ ([R_j]_+/c) exp([R_j]_+²/(2c))`` summing to 1; uniform if all ``[R_j]_+ = 0``."""
    r = np.clip(np.asarray(cum_regret, dtype=np.float64), 0.0, None)
    L = len(r)
    if not np.any(r > 0):
        return np.full(L, 1.0 / L)
    c = normalhedge_scale(r)
    z = r * r / (2.0 * c)
    # (r/c) exp(z) normalised; subtract the max exponent first (the factor cancels).
    w = (r / c) * np.exp(z - z.max())
    return w / w.sum()


@dataclass
class NormalHedge:
    """Online NormalHedge over ``n_experts`` experts. ``weights`` are the current ``alpha_t``."""

    n_experts: int
    cum_regret: np.ndarray = field(init=False)
    weights: np.ndarray = field(init=False)
    rounds: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.n_experts < 1:
            raise ValueError("NormalHedge needs at least one expert")
        self.cum_regret = np.zeros(self.n_experts)
        self.weights = np.full(self.n_experts, 1.0 / self.n_experts)

    def update(self, losses: np.ndarray) -> np.ndarray:
        """One round: expert ``losses`` (L,) -> new weights ``alpha_{t+1}`` (also stored)."""
        losses = np.asarray(losses, dtype=np.float64)
        if losses.shape != (self.n_experts,):
            raise ValueError(f"expected {self.n_experts} losses, got shape {losses.shape}")
        mixture = float(self.weights @ losses)            # l̄_t = Σ_j alpha_{j,t} l_{j,t}
        self.cum_regret += mixture - losses               # R_{j,t} += r_{j,t} = l̄_t − l_{j,t}
        self.weights = normalhedge_weights(self.cum_regret)
        self.rounds += 1
        return self.weights


def hedge_losses(layer_accuracy: np.ndarray, system_accuracy: float) -> np.ndarray:
    """MS-RMAC expert losses ``l_{j,t} = S_t − S_{j,t}`` (our documented sign; see module doc)."""
    return float(system_accuracy) - np.asarray(layer_accuracy, dtype=np.float64)


def ranking_ap(dist: np.ndarray, query: tuple[int, set[int], set[int]]) -> float:
    """AP of ranking the database by ``dist`` (ascending) for ``query = (own row or -1,
    positive rows, junk rows)``: the query itself and junk are removed, then Oxford's
    ``compute_ap`` (the evaluation's AP); 0 when the query has no other positive."""
    own, pos, junk = query
    order = [i for i in np.argsort(dist, kind="stable") if i != own and i not in junk]
    n_pos = len(pos - {own})
    if n_pos <= 0:
        return 0.0
    return compute_ap(np.flatnonzero([i in pos for i in order]), n_pos)


def learn_layer_weights(layer_dist: np.ndarray, queries: list[tuple[int, set[int], set[int]]],
                        epochs: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Learn MS-RMAC layer weights with NormalHedge, one round per labelled query.

    ``layer_dist``: ``(L, Q, N)`` per-layer distances ``||F_j(p) − F_j(q)||`` of each query to
    every database image; ``queries[t] = (query's own database row or -1, positive rows, junk rows)``.
    Accuracy ``S`` = average precision of the ranking (query itself and junk removed). Returns
    the final weights and a trace (per-round weights, per-layer and system accuracies).
    """
    L, Q, N = layer_dist.shape
    hedge = NormalHedge(L)
    trace_w, trace_s, trace_sj = [], [], []

    def ap_of(dist: np.ndarray, t: int) -> float:
        return ranking_ap(dist, queries[t])

    for _ in range(max(1, epochs)):
        for t in range(Q):
            s_j = np.array([ap_of(layer_dist[j, t], t) for j in range(L)])
            s_t = ap_of(np.tensordot(hedge.weights, layer_dist[:, t], axes=1), t)
            hedge.update(hedge_losses(s_j, s_t))
            trace_w.append(hedge.weights.copy())
            trace_s.append(s_t)
            trace_sj.append(s_j)
    return hedge.weights.copy(), {"weights": np.array(trace_w), "system_ap": np.array(trace_s),
                                  "layer_ap": np.array(trace_sj)}
