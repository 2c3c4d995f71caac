"""Normalized Cut (engine.descriptors.ncut): blobs, no spatial term, solvers, degenerate graphs."""
from __future__ import annotations

import numpy as np
import pytest

from engine.descriptors import ncut


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when label arrays a and b define the same partition (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("method", ["kmeans", "recursive"])
def test_two_obviously_different_blobs_are_separated(method):
    rng = np.random.default_rng(0)
    blob_a = rng.normal(0.0, 0.3, (40, 4))
    blob_b = rng.normal(0.0, 0.3, (60, 4)) + np.array([5.0, -4.0, 3.0, 0.0])
    feats = np.concatenate([blob_a, blob_b])
    truth = np.r_[np.zeros(40, int), np.ones(60, int)]
    labels = ncut.normalized_cut(feats, [2], method=method)[0]
    assert _same_partition(labels, truth)


@pytest.mark.parametrize("method", ["kmeans", "recursive"])
def test_far_apart_patches_with_the_same_feature_end_in_one_cluster(method):
    # 12x12 map: background feature B everywhere, feature A in two opposite corners.
    rng = np.random.default_rng(1)
    h = w = 12
    feats = np.tile(np.array([0.0, 0.0, 1.0]), (h, w, 1)) + rng.normal(0, 0.02, (h, w, 3))
    a = np.array([3.0, 2.0, 0.0])
    feats[0:3, 0:3] = a + rng.normal(0, 0.02, (3, 3, 3))
    feats[9:12, 9:12] = a + rng.normal(0, 0.02, (3, 3, 3))
    labels = ncut.normalized_cut(feats.reshape(-1, 3), [2], method=method)[0].reshape(h, w)
    corner1, corner2 = set(labels[0:3, 0:3].ravel()), set(labels[9:12, 9:12].ravel())
    assert len(corner1) == 1 and corner1 == corner2
    assert labels[6, 6] not in corner1


def test_feature_weights_scale_the_distance_per_dimension():
    f = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    d = ncut.weighted_distances(f, np.array([0.75, 0.25]))
    assert d[0, 1] == pytest.approx(np.sqrt(0.75))
    assert d[0, 2] == pytest.approx(np.sqrt(0.25))
    assert d[1, 2] == pytest.approx(1.0)


def test_affinity_is_exp_minus_d_over_z_squared_with_z_five_percent_of_max():
    d = np.array([[0.0, 1.0], [1.0, 0.0]]) * 4.0
    S = ncut.affinity(d)
    z = 0.05 * 4.0
    assert S[0, 1] == pytest.approx(np.exp(-4.0 / z) ** 2)
    assert S[0, 0] == 1.0


def test_identical_features_give_one_cluster_and_tiny_inputs_do_not_crash():
    same = np.ones((30, 5))
    assert set(ncut.normalized_cut(same, [5])[0].tolist()) == {0}
    one = ncut.normalized_cut(np.ones((1, 5)), [5, 20])
    assert [x.tolist() for x in one] == [[0], [0]]
    few = ncut.normalized_cut(np.arange(6, dtype=float).reshape(3, 2), [20])[0]
    assert few.max() < 3


def test_cluster_counts_never_exceed_the_request_and_labels_are_compact():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(192, 6))
    for k, labels in zip([5, 20], ncut.normalized_cut(feats, [5, 20])):
        uniq = np.unique(labels)
        assert len(uniq) <= k and uniq.tolist() == list(range(len(uniq)))


def test_dense_and_lanczos_solvers_agree():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(4, 5)) * 3
    feats = centers[rng.integers(0, 4, 300)] + rng.normal(size=(300, 5))
    M, _ = ncut._normalized(ncut.affinity(ncut.weighted_distances(feats)))
    vd, _ = ncut.top_eigenvectors(M, 6, "dense")
    vl, _ = ncut.top_eigenvectors(M, 6, "lanczos")
    np.testing.assert_allclose(vd, vl, atol=1e-6)


def test_bipartition_cut_is_lower_than_a_random_split():
    rng = np.random.default_rng(4)
    feats = np.concatenate([rng.normal(0, 0.5, (30, 3)), rng.normal(3, 0.5, (30, 3))])
    S = ncut.affinity(ncut.weighted_distances(feats))
    mask, value = ncut.ncut_bipartition(S)
    random_mask = rng.permutation(np.r_[np.ones(30, bool), np.zeros(30, bool)])
    assert value < ncut.ncut_value(S, random_mask)
