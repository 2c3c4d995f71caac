"""Re-ranking (engine.rerank): αQE and diffusion on tiny hand-made databases."""
from __future__ import annotations

import numpy as np

from engine.rerank import RERANKERS, AqeParams, DiffusionParams, alpha_query_expansion, diffusion, knn_graph


def _unit(*rows):
    a = np.array(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _initial(q, db):
    s = db @ q
    order = np.argsort(-s, kind="stable")
    return s[order], order


def test_registry_has_none_aqe_and_diffusion():
    assert {"none", "aqe", "diffusion"} <= set(RERANKERS)


def test_aqe_pulls_in_a_neighbour_of_a_neighbour():
    q = _unit([1, 0, 0])[0]
    # 0: a, the query's close neighbour (cos 0.9); 1: b, close to a (cos 0.76) but far from
    # q (0.4); 2: c, a distractor closer to q (0.5) than b but unrelated to a.
    db = _unit([0.9, 0.436, 0], [0.4, 0.917, 0], [0.5, 0, 0.866])
    s, order = _initial(q, db)
    assert order.tolist() == [0, 2, 1]  # b is last at first
    _s2, order2 = alpha_query_expansion(q, db, s, order, params=AqeParams(k=1, alpha=3.0))
    assert order2.tolist() == [0, 1, 2]


def test_aqe_with_default_k_weights_by_similarity_power_alpha():
    q = _unit([1, 0])[0]
    db = _unit([1, 1], [0, 1])
    s, order = _initial(q, db)
    new_s, _ = alpha_query_expansion(q, db, s, order)
    expanded = q + (0.5 ** 0.5) ** 3 * db[0] + 0.0 * db[1]
    expanded /= np.linalg.norm(expanded)
    np.testing.assert_allclose(np.sort(new_s)[::-1], np.sort(db @ expanded)[::-1], atol=1e-5)


def _chain_and_distractor():
    # Chain of points along a great circle in the xy-plane (angle 0 .. 1.0 rad, step 0.1) and
    # one isolated distractor in the xz-plane at 0.6 rad from the chain's start.
    angles = np.arange(0, 1.01, 0.1)
    chain = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], 1)
    distractor = np.array([[np.cos(0.6), 0.0, np.sin(0.6)]])
    return np.concatenate([chain, distractor]).astype(np.float32), len(angles)


def test_diffusion_follows_the_manifold_past_an_isolated_distractor():
    db, n_chain = _chain_and_distractor()
    q = db[0]
    s, order = _initial(q, db)
    pos = {int(i): r for r, i in enumerate(order)}
    assert pos[n_chain] < pos[n_chain - 2]  # by cosine the distractor beats the chain's far end
    _f, order2 = diffusion(q, db, s, order, params=DiffusionParams(k=2, query_k=1))
    ranked = [i for i in order2.tolist() if i != 0]  # the query's own node is not scored specially
    assert ranked[:n_chain - 1] == list(range(1, n_chain))  # the chain, in order along it
    assert ranked[-1] == n_chain  # the distractor last


def test_diffusion_graph_is_built_once_per_cache_and_is_mutual():
    db, _ = _chain_and_distractor()
    cache: dict = {}
    s, order = _initial(db[0], db)
    diffusion(db[0], db, s, order, cache=cache, params=DiffusionParams(k=2, query_k=1))
    graphs = list(cache.values())
    diffusion(db[3], db, s, order, cache=cache, params=DiffusionParams(k=2, query_k=1))
    assert len(cache) == 1 and list(cache.values())[0] is graphs[0]
    S = knn_graph(db, 2, 3.0).toarray()
    np.testing.assert_allclose(S, S.T, atol=1e-7)
    assert np.all(S[-1] == 0)  # the distractor is nobody's mutual neighbour


def test_none_is_the_identity():
    s, o = np.array([0.9, 0.1]), np.array([1, 0])
    s2, o2 = RERANKERS["none"](np.zeros(2), np.eye(2), s, o, cache={})
    assert o2 is o and s2 is s
