"""engine.services.explain: per-part contributions split a similarity score exactly."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_photo
from engine.api import Collection, get_extractor
from engine.services.explain import class_activation_map, explain_match
from engine.descriptors.methods import create_method
from engine.descriptors.postprocess import fit_pca_whitening

SMALL = {"image_side": 160}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """Six generated photos indexed with rmac and mac at a small input size."""
    root = tmp_path_factory.mktemp("explain")
    photos = root / "photos"
    photos.mkdir()
    for i in range(6):
        make_photo(i).save(photos / f"p{i}.jpg", quality=92)
    col = Collection.open(root / "catalog")
    col.add_folder(photos)
    col.index(method="rmac", overrides=SMALL)
    col.index(method="mac", overrides=SMALL)
    yield col, photos
    col.close()


def test_rmac_explain_parts_sum_to_its_search_vector_without_and_with_whitening():
    method = create_method("rmac", SMALL)
    ext = get_extractor(method.config.backbone)
    images = [make_photo(i) for i in range(4)]
    raw = method.describe(images, ext)
    whitening = fit_pca_whitening(raw, dims=3)
    for fit_state in (None, whitening):
        parts = method.explain_parts(images[0], ext, fit_state)
        target = method.search_vectors(raw[:1], fit_state)[0]
        assert parts.kind == "regions"
        assert parts.vectors.shape[0] == len(parts.labels) == parts.masks.shape[0] > 1
        np.testing.assert_allclose(parts.vectors.sum(0) + parts.bias, target, atol=1e-5)
        # every region mask covers part of the grid, and together they cover all of it
        assert (parts.masks.reshape(len(parts.labels), -1).max(1) == 1).all()
        assert parts.masks.max(0).min() == 1
    assert np.abs(method.explain_parts(images[0], ext, whitening).bias).sum() > 0


def test_explain_match_on_rmac_contributions_sum_to_the_search_score(indexed):
    col, photos = indexed
    q = str(photos / "p0.jpg")
    results = col.search(q, method="rmac", top=3, exclude_query=True)
    e = explain_match(col, q, results[0].path, method="rmac", search_score=results[0].score)
    assert e.kind == "regions" and len(e.query.contributions) > 1
    assert e.score == pytest.approx(results[0].score, abs=1e-4)
    for side in (e.query, e.result):
        assert side.contributions.sum() + side.bias_contribution == pytest.approx(e.score, abs=1e-6)
    top = e.query.top_parts(3)
    assert [c for _i, _l, c in top] == sorted((c for _i, _l, c in top), reverse=True)
    assert e.top_channels[0][1] >= e.top_channels[-1][1]
    cmap = e.query.contribution_map()
    assert cmap.shape == e.query.parts.masks.shape[1:]


def test_explain_match_default_one_part_method_gives_the_whole_score_to_the_image(indexed):
    col, photos = indexed
    q = str(photos / "p1.jpg")
    r = col.search(q, method="mac", top=2, exclude_query=True)[0]
    e = explain_match(col, q, r.path, method="mac")
    assert e.kind == "image" and e.query.parts.labels == ["whole image"]
    assert e.query.contributions[0] == pytest.approx(e.score, abs=1e-6)
    assert e.score == pytest.approx(r.score, abs=1e-4)


def test_explaining_an_image_with_itself_scores_one(indexed):
    col, photos = indexed
    q = str(photos / "p2.jpg")
    e = explain_match(col, q, q, method="rmac")
    assert e.score == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(e.query.contributions, e.result.contributions, atol=1e-6)


def test_class_activation_map_is_normalised_to_unit_peak(indexed):
    col, photos = indexed
    cam, cls = class_activation_map(col, str(photos / "p3.jpg"), method="rmac")
    assert cam.ndim == 2 and cam.max() == pytest.approx(1.0) and cam.min() >= 0
    assert 0 <= cls < 1000
