"""engine.search.ann: exact and approximate vector indexes, auto switching, persisted training."""
import numpy as np
import pytest

from engine.search.ann import AnnConfig, VectorIndex, build_vector_index
from engine.store.catalog import CatalogStore

D = 32
SMALL = dict(pca_dims=16, pq_m=8, nlist=4, nprobe=4, train_size=2000, refine_min=50)


def _vectors(n, seed=0, d=D):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d))
    x = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, d))
    x = np.abs(x).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(x, q, k):
    s = x @ q
    order = np.argsort(-s, kind="stable")[:k]
    return s[order], order


def test_exact_index_matches_brute_force_inner_product():
    x, q = _vectors(500), _vectors(1, seed=9)[0]
    idx = VectorIndex.build(x, AnnConfig(kind="exact"))
    scores, rows = idx.search(q, 10)
    want_s, want_r = _brute(x, q, 10)
    assert rows[0].tolist() == want_r.tolist()
    np.testing.assert_allclose(scores[0], want_s, rtol=1e-5)
    assert idx.describe()["storage"] == "fp32"


def test_exact_index_above_fp16_threshold_stores_fp16_with_close_scores():
    x, q = _vectors(600), _vectors(1, seed=3)[0]
    idx = VectorIndex.build(x, AnnConfig(kind="exact", fp16_above=100))
    assert idx.describe()["storage"] == "fp16"
    assert idx.memory_bytes_per_vector() == 2 * D
    scores, rows = idx.search(q, 5)
    np.testing.assert_allclose(scores[0], x[rows[0]] @ q, atol=2e-3)
    assert rows[0][0] == _brute(x, q, 1)[1][0]


def test_fewer_vectors_than_k_pads_rows_with_minus_one():
    idx = VectorIndex.build(_vectors(3), AnnConfig(kind="exact"))
    _s, rows = idx.search(_vectors(1, seed=5), 5)
    assert rows[0][:3].min() >= 0 and rows[0][3:].tolist() == [-1, -1]


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_approximate_index_returns_exact_scores_and_finds_a_stored_vector(kind):
    x = _vectors(3000)
    idx = VectorIndex.build(x, AnnConfig(kind=kind, **SMALL))
    assert idx.kind == kind and idx.ntotal == 3000
    scores, rows = idx.search(x[[17, 2500]], 10)
    assert rows[0][0] == 17 and rows[1][0] == 2500
    # refine stage: reported scores are the exact inner products (fp16-rounded store)
    np.testing.assert_allclose(scores[0], x[rows[0]] @ x[17], atol=2e-3)
    assert np.all(np.diff(scores[0]) <= 1e-6)


def test_ivfpq_recall_against_exact_is_high_on_clustered_data():
    x, q = _vectors(4000), _vectors(40, seed=11)
    idx = VectorIndex.build(x, AnnConfig(kind="ivfpq", **{**SMALL, "pca_dims": D, "refine_min": 100}))
    _s, rows = idx.search(q, 10)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows.tolist(), truth.tolist())])
    assert recall >= 0.9


def test_auto_index_turns_approximate_when_growing_past_threshold_and_keeps_rows():
    x = _vectors(2500)
    cfg = AnnConfig(kind="auto", exact_threshold=2000, **SMALL)
    idx = VectorIndex.build(x[:1500], cfg)
    assert idx.kind == "exact"
    idx.add(x[1500:1900])
    assert idx.kind == "exact" and idx.ntotal == 1900
    idx.add(x[1900:])
    assert idx.kind == "ivfpq" and idx.ntotal == 2500
    _s, rows = idx.search(x[[100, 2400]], 1)
    assert rows[:, 0].tolist() == [100, 2400]
    # later additions are encoded with the trained codebooks (no retraining)
    coarse = idx._coarse
    idx.add(_vectors(10, seed=4))
    assert idx._coarse is coarse and idx.ntotal == 2510


def test_trained_state_round_trip_gives_the_same_results_without_training(monkeypatch):
    x = _vectors(3000)
    cfg = AnnConfig(kind="ivfpq", **SMALL)
    first = VectorIndex.build(x, cfg)
    state = first.trained_state()
    assert state.dtype == np.uint8
    monkeypatch.setattr(VectorIndex, "train", lambda self, v: pytest.fail("trained again"))
    second = VectorIndex.build(x, cfg, trained_state=state)
    q = _vectors(5, seed=2)
    np.testing.assert_array_equal(first.search(q, 10)[1], second.search(q, 10)[1])


def test_build_vector_index_persists_training_in_the_catalog_and_reuses_it(tmp_path, monkeypatch):
    cat = CatalogStore(tmp_path / "cat")
    x = _vectors(3000)
    cfg = AnnConfig(kind="auto", exact_threshold=1000, **SMALL)
    idx = build_vector_index(cat, "mac", x, cfg)
    assert idx.kind == "ivfpq" and cat.load_state("mac", "ann") is not None
    monkeypatch.setattr(VectorIndex, "train", lambda self, v: pytest.fail("trained again"))
    again = build_vector_index(cat, "mac", np.concatenate([x, _vectors(100, seed=8)]), cfg)
    assert again.ntotal == 3100
    small = build_vector_index(cat, "mac", x[:500], cfg)  # below the threshold: exact
    assert small.kind == "exact"
    cat.close()


def test_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(Exception, match="ivfpq"):
        AnnConfig(kind="lsh")


def test_lists_follow_the_collection_size_not_the_training_sample():
    """A chunked build trains on a sample; its lists must suit the whole collection."""
    import faiss

    from engine.search.ann import auto_nlist

    cfg = AnnConfig(kind="ivfpq", pca_dims=16, pq_m=8)
    idx = VectorIndex(D, cfg)
    idx.train(_vectors(20_000), expected_total=10_000)
    base = faiss.downcast_index(idx._coarse.index)
    assert base.nlist == auto_nlist(10_000) == 400  # not auto_nlist(20_000) = 565
    assert base.nprobe == 400 // 16
    small = VectorIndex(D, cfg)
    small.train(_vectors(2000))  # 178 lists wanted, but only 2000 // 39 = 51 can be trained
    assert faiss.downcast_index(small._coarse.index).nlist == 51
    assert faiss.downcast_index(small._coarse.index).nprobe == 16
