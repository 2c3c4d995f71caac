"""Re-ranking (engine.search.rerank): αQE and diffusion on tiny hand-made databases."""
from __future__ import annotations

import numpy as np

from engine.search.rerank import RERANKERS, AqeParams, DiffusionParams, alpha_query_expansion, diffusion, knn_graph


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
    key = ("diffusion_graph", 2, 3.0, len(db))
    graph = cache[key]
    diffusion(db[3], db, s, order, cache=cache, params=DiffusionParams(k=2, query_k=1))
    assert cache[key] is graph and set(cache) == {key, ("knn_lists", 2)}
    S = knn_graph(db, 2, 3.0).toarray()
    np.testing.assert_allclose(S, S.T, atol=1e-7)
    assert np.all(S[-1] == 0)  # the distractor is nobody's mutual neighbour


def test_none_is_the_identity():
    s, o = np.array([0.9, 0.1]), np.array([1, 0])
    s2, o2 = RERANKERS["none"](np.zeros(2), np.eye(2), s, o, cache={})
    assert o2 is o and s2 is s


def _lists_as_sets(lists):
    return [({int(lists.ids[j]) for j in row}, ) for row in lists.neighbours]


def _random_unit(n, d=24, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_lists_updated_for_added_and_removed_photos_equal_a_full_build():
    from engine.search.knn_graph import build_knn_lists, update_knn_lists

    x = _random_unit(300)
    ids = np.arange(1000, 1300)
    old = build_knn_lists(ids[:260], x[:260], 5)
    # Photos 1000-1019 were deleted, 1260-1299 added; the others keep their vectors.
    keep = np.r_[20:300]
    new = update_knn_lists(old, ids[keep], x[keep], 5)
    full = build_knn_lists(ids[keep], x[keep], 5)
    assert new.how == "incremental"
    assert _lists_as_sets(new) == _lists_as_sets(full)
    np.testing.assert_allclose(new.sims, full.sims, atol=1e-6)


def test_knn_lists_are_rebuilt_when_the_kept_vectors_changed():
    from engine.search.knn_graph import build_knn_lists, update_knn_lists

    x = _random_unit(200)
    ids = np.arange(200)
    old = build_knn_lists(ids[:180], x[:180], 4)
    moved = _random_unit(200, seed=1)  # e.g. whitening re-fitted on the grown collection
    new = update_knn_lists(old, ids, moved, 4)
    assert new.how == "full" and _lists_as_sets(new) == _lists_as_sets(build_knn_lists(ids, moved, 4))


def test_diffusion_after_indexing_more_photos_updates_the_graph_and_ranks_as_a_fresh_build(tmp_path):
    from engine.api import Collection
    from tests.conftest import make_photo

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(14):
        make_photo(300 + i, (160, 120)).save(photos / f"p{i:02d}.jpg", quality=90)
    col = Collection.open(tmp_path / "cat")
    small = {"image_side": 128}
    col.index(method="rmac", folders=[str(photos)], overrides=small)
    col.search(str(photos / "p00.jpg"), method="rmac", top=5, rerank="diffusion")
    for i in range(14, 18):
        make_photo(300 + i, (160, 120)).save(photos / f"p{i:02d}.jpg", quality=90)
    col.index(method="rmac", overrides=small)
    got = col.search(str(photos / "p00.jpg"), method="rmac", top=8, rerank="diffusion")
    lists = col.search_index("rmac").rerank_cache[("knn_lists", DiffusionParams().k)]
    assert lists.how == "incremental" and len(lists.ids) == 18
    fresh = Collection.open(tmp_path / "cat")
    want = fresh.search(str(photos / "p00.jpg"), method="rmac", top=8, rerank="diffusion")
    assert fresh.search_index("rmac").rerank_cache[("knn_lists", DiffusionParams().k)].how == "full"
    assert [r.path for r in got] == [r.path for r in want]
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], atol=1e-5)
    col.close()
    fresh.close()
