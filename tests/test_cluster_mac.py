"""Cluster-MAC (Chen et al.): one cluster = MAC, activation crop, explanation parts, prepare."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import LookalikeError
from engine.descriptors.methods import METHODS, create_method
from engine.descriptors.methods.cluster_mac import ClusterMacMethod, aggregate_clusters, cluster_mac_vectors
from tests.conftest import make_photo


class FakeExtractor:
    """Deterministic stand-in for FeatureExtractor: a ReLU of a fixed colour projection on a 12x16 grid."""

    def __init__(self, channels: int = 24, grid: tuple[int, int] = (12, 16)):
        rng = np.random.default_rng(0)
        self.w = rng.normal(size=(3, channels)).astype(np.float32)
        self.b = rng.normal(0, 0.3, channels).astype(np.float32)
        self.grid = grid
        self.backbone = SimpleNamespace(tap_names=("head",))

    def feature_maps(self, images, side, taps):
        out = []
        for img in images:
            h, w = self.grid
            arr = np.asarray(img.convert("RGB").resize((w, h), Image.Resampling.BOX), np.float32) / 255.0
            x = np.maximum(arr @ self.w + self.b, 0).transpose(2, 0, 1)
            out.append({t: torch.from_numpy(np.ascontiguousarray(x)) for t in taps})
        return out


@pytest.fixture(scope="module")
def ex():
    return FakeExtractor()


@pytest.fixture(scope="module")
def photos():
    return [make_photo(i) for i in range(6)]


@pytest.fixture(scope="module")
def cmac(ex, photos):
    m = create_method("cluster-mac", {"pca_dims": 3, "whiten": True})  # the whitening path
    m.set_prepared(m.prepare(photos, ex))
    return m


def test_one_cluster_without_whitening_is_exactly_mac(ex, photos):
    m = create_method("cluster-mac", {"feature_clusters": [1], "rgb_clusters": 0, "whiten": False, "pca_dims": 3})
    m.set_prepared(m.prepare(photos[:2], ex))
    mac = create_method("mac")
    np.testing.assert_allclose(m.describe(photos, ex), mac.describe(photos, ex), atol=1e-6)


def test_registered_with_activation_crop_and_a_prepare_sample():
    spec = METHODS["cluster-mac"]
    assert spec.cls is ClusterMacMethod
    assert ClusterMacMethod.supports_activation_crop and ClusterMacMethod.prepare_sample_size > 0
    assert tuple(spec.config.feature_clusters) == (5, 20) and spec.config.rgb_clusters == 5
    assert spec.config.whiten is False  # whitening learned on 100 sample photos overfits them


def test_prepare_learns_local_pca_weights_and_cluster_whitening(cmac):
    st = cmac.prepared
    assert st["pca_proj"].shape == (3, 24) and st["pca_var"].shape == (3,)
    assert np.all(np.diff(st["pca_var"]) <= 0)  # variances in decreasing order
    assert st["wh_proj"].shape[1] == 24 and st["wh_mean"].shape == (24,)


def test_describe_is_unit_norm_deterministic_and_separates_images(cmac, ex, photos):
    a = cmac.describe(photos, ex)
    b = cmac.describe(photos, ex)
    assert a.shape == (6, 24) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    sims = a @ a.T
    assert np.all(sims[~np.eye(6, dtype=bool)] < 0.9999)


def test_describe_without_prepared_state_is_a_clear_error(ex, photos):
    with pytest.raises(LookalikeError, match="prepared"):
        create_method("cluster-mac").describe(photos[:1], ex)


def test_cluster_mac_vectors_max_pool_each_cluster():
    x = torch.zeros(2, 2, 2)
    x[0] = torch.tensor([[1.0, 5.0], [3.0, 0.0]])
    x[1] = torch.tensor([[2.0, 0.0], [4.0, 7.0]])
    labels = np.array([[0, 1], [0, 1]])
    v = cluster_mac_vectors(x, labels).numpy()
    np.testing.assert_allclose(v[0], np.array([3.0, 4.0]) / 5.0, atol=1e-6)
    np.testing.assert_allclose(v[1], np.array([5.0, 7.0]) / np.sqrt(74.0), atol=1e-6)


def test_aggregate_whitens_each_cluster_then_sums():
    vecs = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    wh = {"wh_mean": np.array([0.5, 0.5], np.float32), "wh_proj": np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)}
    final, parts = aggregate_clusters(vecs, wh)
    # whitened: [1,-0.5] and [-1,0.5] -> l2 -> opposite unit vectors: sum 0 stays 0 (no NaN)
    assert np.all(np.isfinite(final))
    np.testing.assert_allclose(parts.sum(0), final, atol=1e-6)


def test_activation_crop_of_the_whole_image_equals_the_plain_descriptor(cmac, ex, photos):
    img = photos[0]
    whole = cmac.describe_query(img, ex, box=(0, 0, img.width, img.height), box_mode="activations")
    np.testing.assert_allclose(whole, cmac.describe([img], ex)[0], atol=1e-6)
    half = cmac.describe_query(img, ex, box=(0, 0, img.width / 2, img.height), box_mode="activations")
    crop_i = cmac.describe_query(img, ex, box=(0, 0, img.width / 2, img.height), box_mode="image")
    assert float(half @ whole) < 0.9999 and half.shape == crop_i.shape


def test_box_cells_cover_the_box_and_never_are_empty():
    assert ClusterMacMethod.box_cells((0, 0, 160, 120), (320, 240), 12, 16) == (0, 6, 0, 8)
    assert ClusterMacMethod.box_cells((10, 10, 11, 11), (320, 240), 12, 16) == (0, 1, 0, 1)
    assert ClusterMacMethod.box_cells((330, 250, 400, 300), (320, 240), 12, 16) == (11, 12, 15, 16)


def test_explain_parts_are_clusters_that_sum_to_the_search_vector(cmac, ex, photos):
    img = photos[1]
    parts = cmac.explain_parts(img, ex, None)
    sv = cmac.search_vectors(cmac.describe([img], ex), None)[0]
    assert parts.kind == "clusters"
    np.testing.assert_allclose(parts.vectors.sum(0) + parts.bias, sv, atol=1e-5)
    assert parts.masks.shape == (len(parts.labels), 12, 16) and len(parts.labels) == len(parts.vectors)
    label_maps = {k: v for k, v in parts.extras.items() if k.startswith("labels ")}
    assert set(label_maps) == {"labels features k=5", "labels features k=20", "labels rgb k=5"}
    for lab in label_maps.values():
        assert lab.shape == (12, 16)
    # each clustering's masks partition the map
    n5 = int(label_maps["labels features k=5"].max()) + 1
    np.testing.assert_array_equal(parts.masks[:n5].sum(0), np.ones((12, 16)))


def test_collection_index_and_search_with_cluster_mac_and_rerankers(tmp_path, photo_folder):
    from engine.api import Collection

    col = Collection.open(tmp_path / "cat", device="cpu")
    # Whitened (the prepared-state path): on 12 generated photos unwhitened cluster vectors are
    # all alike, and αQE's 10 neighbours are most of the collection.
    col.index(method="cluster-mac", folders=[str(photo_folder)],
              overrides={"image_side": 160, "tap": "stage7", "whiten": True})
    assert col.catalog.load_state("cluster-mac", "prepare") is not None
    q = photo_folder / "scene2.jpg"
    for rerank in ("none", "aqe", "diffusion"):
        res = col.search(str(q), method="cluster-mac", top=3, exclude_query=True, rerank=rerank)
        assert res[0].path.endswith("scene2_copy.jpg"), rerank
    box = col.search(str(q), method="cluster-mac", top=3, box=(0, 0, 200, 200), box_mode="activations")
    assert len(box) == 3
    col.close()
