"""NormalHedge (MS-RMAC layer weights) and Principal Feature Analysis (Seddati) on toy problems."""
import math

import numpy as np
import pytest

from engine.descriptors.hedge import (NormalHedge, hedge_losses, ranking_ap, learn_layer_weights, normalhedge_scale,
                          normalhedge_weights)
from engine.descriptors.kmeans import kmeans
from engine.descriptors.pfa import principal_feature_analysis


def test_normalhedge_scale_solves_the_defining_equation():
    r = np.array([0.0, 0.3, 1.2, 2.5])
    c = normalhedge_scale(r)
    assert c > 0
    assert np.mean(np.exp(r ** 2 / (2 * c))) == pytest.approx(math.e, rel=1e-6)


def test_weights_are_uniform_when_no_expert_has_positive_regret():
    np.testing.assert_allclose(normalhedge_weights(np.array([0.0, -1.0, -0.5])), np.full(3, 1 / 3))


def test_hedge_weights_follow_the_normalhedge_formula():
    r = np.array([-0.2, 0.5, 1.0])
    c = normalhedge_scale(np.clip(r, 0, None))
    rp = np.clip(r, 0, None)
    expect = (rp / c) * np.exp(rp ** 2 / (2 * c))
    np.testing.assert_allclose(normalhedge_weights(r), expect / expect.sum(), rtol=1e-9)


def test_clearly_best_expert_gains_weight_round_after_round():
    hedge = NormalHedge(3)
    accuracy = np.array([0.9, 0.4, 0.5])  # expert 0 always retrieves best
    history = [hedge.weights[0]]
    for _ in range(20):
        system = float(hedge.weights @ accuracy)
        hedge.update(hedge_losses(accuracy, system))
        history.append(hedge.weights[0])
    assert history[-1] > 0.9
    assert all(b >= a - 1e-12 for a, b in zip(history, history[1:]))
    assert hedge.weights.sum() == pytest.approx(1.0)


def test_all_equal_experts_keep_uniform_weights():
    hedge = NormalHedge(4)
    for _ in range(10):
        hedge.update(hedge_losses(np.full(4, 0.7), 0.7))
    np.testing.assert_allclose(hedge.weights, np.full(4, 0.25))


def test_hedge_loss_sign_gives_better_layers_less_loss():
    losses = hedge_losses(np.array([0.8, 0.2]), 0.5)
    assert losses[0] < losses[1]


def test_ranking_ap_removes_the_query_and_junk_before_oxford_ap():
    dist = np.array([0.0, 0.1, 0.2, 0.3])
    # Query row 0 and junk row 2 removed: ranking 1, 3 -> both positives first: AP 1.
    assert ranking_ap(dist, (0, {0, 1, 3}, {2})) == pytest.approx(1.0)
    # Ranking 1, 2, 3 with the only other positive last: (0/2 + 1/3) / 2.
    assert ranking_ap(dist, (0, {0, 3}, set())) == pytest.approx((0 + 1 / 3) / 2)
    assert ranking_ap(dist, (0, {0}, set())) == 0.0  # no other positive


def test_learn_layer_weights_prefers_the_layer_that_ranks_positives_first():
    rng = np.random.default_rng(0)
    Q, N = 12, 40
    dist = rng.uniform(1, 2, size=(2, Q, N))
    queries = []
    for t in range(Q):
        pos = {(t * 3 + k) % N for k in range(1, 4)}
        queries.append((t * 3 % N, pos, set()))
        for p in pos:
            dist[0, t, p] = 0.1  # layer 0 finds every positive first; layer 1 is noise
    alpha, trace = learn_layer_weights(dist, queries)
    assert alpha[0] > 0.8 and alpha.sum() == pytest.approx(1.0)
    assert trace["weights"].shape == (Q, 2)
    assert np.all(trace["layer_ap"][:, 0] == pytest.approx(1.0))


def _with_copies(seed=0, n=60, d=10):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d)
    return np.concatenate([base, base[:, :5]], axis=1)  # dims 10..14 copy dims 0..4


@pytest.mark.parametrize("p", [4, 8, 10])
def test_pfa_never_selects_a_dimension_and_its_copy(p):
    x = _with_copies()
    keep = principal_feature_analysis(x, p)
    assert len(keep) == p and len(set(keep)) == p
    for i in range(5):
        assert not (i in keep and i + 10 in keep), f"dim {i} and its copy {i + 10} both kept"


def test_pfa_returns_sorted_indices_and_is_deterministic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 20))
    a, b = principal_feature_analysis(x, 6), principal_feature_analysis(x, 6)
    np.testing.assert_array_equal(a, b)
    assert list(a) == sorted(a) and a.min() >= 0 and a.max() < 20


def test_pfa_keeping_all_dims_is_the_identity():
    x = np.random.default_rng(2).normal(size=(8, 5))
    np.testing.assert_array_equal(principal_feature_analysis(x, 5), np.arange(5))


def test_kmeans_separates_two_far_groups():
    pts = np.concatenate([np.zeros((5, 2)), np.full((5, 2), 10.0)]) + np.random.default_rng(3).normal(0, 0.1, (10, 2))
    _c, labels = kmeans(pts, 2)
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]
