"""MS-RMAC (Li et al. 2017): region geometry, weighted distance, hedge state, search, explanation."""
import json
import math

import numpy as np
import pytest
import torch

from engine.api import Collection, get_extractor
from engine.descriptors.methods import create_method
from engine.descriptors.methods.ms_rmac import region_mac_sum, weighted_layer_distance
from engine.descriptors.pooling import rmac_regions
from engine.search.index import SearchIndex
from tests.conftest import make_photo, write_scene_folder

SMALL = {"image_side": 160}


def test_region_mac_sum_matches_hand_computed_4x4():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    # l=1: one 4x4 region (max 15); l=2: side floor(8/3)=2 at offsets {0,2}: 5,7,13,15;
    # l=3: side 2 at offsets {0,1,2}: 5,6,7,9,10,11,13,14,15.
    assert region_mac_sum(x).item() == 15 + (5 + 7 + 13 + 15) + (5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15)


@pytest.mark.parametrize("H,W", [(15, 20), (20, 15), (12, 12), (24, 36)])
def test_regions_have_the_paper_side_and_about_40_percent_overlap(H, W):
    regions = rmac_regions(H, W, 3, 0.4)
    for level in (1, 2, 3):
        rs = [r for r in regions if r.level == level]
        side = math.floor(2 * min(H, W) / (level + 1))
        assert all(r.h == side and r.w == side for r in rs)
        xs = sorted({r.x for r in rs})
        # the regions of a level span the whole map
        assert xs[0] == 0 and xs[-1] + side >= W - 1
        if len(xs) > 1:
            overlap = 1 - (xs[1] - xs[0]) / side
            assert 0.2 <= overlap <= 0.75


def test_weighted_layer_distance_is_a_weighted_sum_of_unsquared_norms():
    q = [np.array([0.0, 0.0]), np.array([1.0])]
    p = [np.array([[3.0, 4.0]]), np.array([[3.0]])]
    assert weighted_layer_distance(q, p, np.array([0.25, 0.75]))[0] == pytest.approx(0.25 * 5 + 0.75 * 2)


def _method_with_dims(dims=(3, 2)):
    m = create_method("ms-rmac", {"layers": ("stage6", "stage7")[:len(dims)]})
    m._dims = dims
    return m


def test_alpha_is_uniform_until_a_hedge_state_is_given():
    m = _method_with_dims()
    np.testing.assert_allclose(m.weights(), [0.5, 0.5])
    m.set_stored_state("hedge", {"alpha": np.array([0.8, 0.2])})
    np.testing.assert_allclose(m.weights(), [0.8, 0.2])
    m.set_stored_state("hedge", None)
    np.testing.assert_allclose(m.weights(), [0.5, 0.5])


def test_rescore_is_minus_weighted_distance_and_search_vectors_are_its_squared_proxy():
    rng = np.random.default_rng(0)
    m = _method_with_dims()
    m.set_stored_state("hedge", {"alpha": np.array([0.7, 0.3])})

    def blocks(n):
        a, b = rng.uniform(size=(n, 3)), rng.uniform(size=(n, 2))
        return np.concatenate([a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)], 1)

    q, db = blocks(1)[0], blocks(6)
    exact = -(0.7 * np.linalg.norm(db[:, :3] - q[:3], axis=1) + 0.3 * np.linalg.norm(db[:, 3:] - q[3:], axis=1))
    np.testing.assert_allclose(m.rescore(q, db, None), exact, rtol=1e-6)
    ip = m.search_vectors(db, None) @ m.search_vectors(q[None], None)[0]
    proxy = 1 - 0.5 * (0.7 * np.sum((db[:, :3] - q[:3]) ** 2, 1) + 0.3 * np.sum((db[:, 3:] - q[3:]) ** 2, 1))
    np.testing.assert_allclose(ip, proxy, rtol=1e-5)
    d = m.layer_distances(q, db)
    assert d.shape == (2, 6)
    np.testing.assert_allclose(m.weights() @ d, -exact, rtol=1e-6)


def test_describe_gives_l2_normalised_layer_blocks():
    ex = get_extractor(device="cpu")
    m = create_method("ms-rmac", SMALL)
    raw = m.describe([make_photo(0, (200, 150))], ex)
    dims = tuple(ex.backbone.tap_channels[t] for t in m.layers())
    assert raw.shape == (1, sum(dims))
    for b in m.split(raw[0]):
        assert np.linalg.norm(b) == pytest.approx(1.0, abs=1e-4)


def test_explain_parts_regions_sum_to_the_search_vector():
    ex = get_extractor(device="cpu")
    m = create_method("ms-rmac", SMALL)
    m.set_stored_state("hedge", {"alpha": np.array([0.1, 0.2, 0.3, 0.4])})
    img = make_photo(1, (200, 150))
    parts = m.explain_parts(img, ex, None)
    sv = m.search_vectors(m.describe([img], ex), None)[0]
    assert parts.kind == "regions"
    assert len(parts.labels) == len(parts.vectors) == len(parts.masks)
    np.testing.assert_allclose(parts.vectors.sum(0) + parts.bias, sv, atol=1e-5)
    assert parts.masks.min() >= 0 and parts.masks.max() <= 1 and (parts.masks.reshape(len(parts.masks), -1).sum(1) > 0).all()
    # each part lives in one layer's block only
    assert set(parts.extras["layer_of_part"]) == {0, 1, 2, 3}


@pytest.fixture(scope="module")
def ms_rmac_catalog(tmp_path_factory):
    """Six generated scenes and a cropped copy of each, indexed once with ms-rmac at 160 px."""
    root = tmp_path_factory.mktemp("msrmac")
    folder = write_scene_folder(root / "photos")
    col = Collection.open(root / "cat", device="cpu")
    col.index("ms-rmac", folders=[str(folder)], overrides=SMALL)
    col.close()
    return root / "cat", folder


def test_faiss_shortlist_size_does_not_change_ms_rmac_results(ms_rmac_catalog):
    col = Collection.open(ms_rmac_catalog[0], device="cpu")
    try:
        m = col.method("ms-rmac")
        m.set_stored_state("hedge", {"alpha": np.array([0.55, 0.05, 0.1, 0.3])})
        n = len(SearchIndex(col.catalog, m))
        half, *near_full = [SearchIndex(col.catalog, m, shortlist=k) for k in (n // 2, n - 2, n)]
        raw = half.raw
        for row in range(n):
            exact = np.argsort(-m.rescore(raw[row], raw, None), kind="stable")[:3]
            expected = [half.paths[i] for i in exact]
            for idx in near_full:
                assert [r.path for r in idx.search(raw[row], top=3, rerank="none")] == expected
            # a shortlist of half the collection is an inner-product proxy: it keeps the best
            # match (the photo itself, then its copy) but may miss a weak third one
            assert [r.path for r in half.search(raw[row], top=2, rerank="none")] == expected[:2]
    finally:
        col.close()


def test_train_weights_stores_alpha_that_the_collection_then_uses(ms_rmac_catalog, tmp_path, capsys):
    from engine.cli import main

    catalog_dir, folder = ms_rmac_catalog
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    queries = [{"image": f"scene{i}.jpg", "positives": [f"scene{i}.jpg", f"trip/scene{i}_copy.jpg"], "junk": []}
               for i in range(6)]
    # The dataset is the collection's own folder ("images_dir": "."): a dataset's paths must
    # stay inside it (an absolute images_dir is refused, issue 20).
    ds = folder
    (ds / "ground_truth.json").write_text(json.dumps(
        {"protocol": "holidays", "images_dir": ".", "images": images, "queries": queries}))
    try:
        code = main(["train-weights", str(ds), "--method", "ms-rmac", "--catalog", str(catalog_dir), "--device", "cpu",
                     "--json"])
    finally:
        (ds / "ground_truth.json").unlink()
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["queries"] == 6 and len(out["alpha"]) == 4
    assert sum(out["alpha"]) == pytest.approx(1.0)
    col2 = Collection.open(catalog_dir, device="cpu")
    try:
        np.testing.assert_allclose(col2.method("ms-rmac").weights(), out["alpha"])
        assert len(col2.search(folder / "scene0.jpg", "ms-rmac", top=2)) == 2
    finally:
        col2.close()


def test_train_weights_refuses_a_method_without_layer_weights(tmp_path):
    from engine.cli.train_weights import learn_weights
    from engine.errors import LookalikeError

    col = Collection.open(tmp_path / "c", device="cpu")
    try:
        with pytest.raises(LookalikeError, match="no hedge-learned layer weights"):
            learn_weights(col, tmp_path, "rmac")
    finally:
        col.close()
