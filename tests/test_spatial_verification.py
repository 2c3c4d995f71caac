"""Spatial verification re-ranking (engine.search.spatial_verification, rerankers ``sv`` and ``sv+aqe``)
on generated photos with hand-made global vectors: the warped copy moves up, a picture of the
same repeated tile and unrelated pictures do not, the bonus is bounded, and the expansion of
``sv+aqe`` uses verified results only."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.errors import LookalikeError
from engine.search.local_features import extract, verify
from engine.search.rerank import RERANKERS, AqeParams, RerankContext, alpha_query_expansion
from engine.search.spatial_verification import (SpatialParams, VerifiedExpansionParams, evidence, spatial_rerank,
                                                verified_expansion)
from test_local_features import WARPS, repeated_pair, textured


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """query (the 4x3 tile grid), 0: an unrelated picture, 1: the other tile picture,
    2: an affine-warped copy of the query, 3: another unrelated picture; part: the query's
    top-left quarter enlarged 2x."""
    d = tmp_path_factory.mktemp("sv")
    a, b = repeated_pair()
    imgs = {"query": a, "other1": textured(21), "tiles": b,
            "warped": cv2.warpAffine(a, WARPS["affine"][:2], (640, 480)), "other2": textured(22),
            "part": cv2.resize(a[0:240, 0:320], (640, 480), interpolation=cv2.INTER_CUBIC)}
    paths = {}
    for name, img in imgs.items():
        paths[name] = str(d / f"{name}.png")
        Image.fromarray(img).save(paths[name])
    return paths


def _db(photos):
    return [photos["other1"], photos["tiles"], photos["warped"], photos["other2"]]


def _vectors(sims):
    """Unit database vectors with the given cosines to the query e0 (each in its own plane)."""
    n = len(sims)
    db = np.zeros((n, n + 1), np.float32)
    for i, s in enumerate(sims):
        db[i, 0], db[i, i + 1] = s, np.sqrt(1 - s * s)
    q = np.zeros(n + 1, np.float32)
    q[0] = 1
    return q, db


def _ranked(q, db):
    s = db @ q
    order = np.argsort(-s, kind="stable")
    return s[order], order


def test_the_warped_copy_moves_to_the_top_the_repeated_tile_does_not(photos, tmp_path):
    q, db = _vectors([0.80, 0.78, 0.70, 0.60])  # the tile picture outranks the copy at first
    s, order = _ranked(q, db)
    ctx = RerankContext(_db(photos), photos["query"])
    cache = {"local_features_dir": tmp_path / "lf"}
    new_s, new_order = spatial_rerank(q, db, s, order, cache=cache, context=ctx)
    assert new_order.tolist() == [2, 0, 1, 3]  # only the copy moved
    assert new_s[0] == pytest.approx(0.70 / 0.80 + SpatialParams().weight, abs=1e-5)
    np.testing.assert_allclose(new_s[1:], np.array([0.80, 0.78, 0.60]) / 0.80, atol=1e-5)  # others: as they were
    assert any((tmp_path / "lf").rglob("*.npz"))  # database features cached on disk


@pytest.mark.parametrize("estimator", ["ransac", "keypoint"])
def test_the_check_of_sv_passes_a_warped_copy_and_not_the_same_tile_elsewhere(estimator):
    # sv's looser check (ratio 0.95, 16 px, affine): a warped copy gets full evidence, a
    # different picture made of the same repeated tile stays below the inlier floor (no bonus).
    params = SpatialParams()
    check = dataclasses.replace(params.check, estimator=estimator)
    a, b = repeated_pair()
    fa, fb = extract(Image.fromarray(a)), extract(Image.fromarray(b))
    tile = verify(fa, fb, check)
    assert tile.inliers < params.floor and evidence(tile, params) == 0.0
    copy = verify(fa, extract(Image.fromarray(cv2.warpAffine(a, WARPS["affine"][:2], (640, 480)))), check)
    assert copy.sane and evidence(copy, params) == 1.0


def test_the_bonus_is_bounded_and_only_the_top_k_is_verified(photos, tmp_path):
    q, db = _vectors([0.95, 0.90, 0.60, 0.50])
    s, order = _ranked(q, db)
    ctx = RerankContext(_db(photos), photos["query"])
    cache = {"local_features_dir": tmp_path / "lf"}
    # The copy (0.60 / 0.95 + 0.2 = 0.83) cannot pass results more than 0.2 of the top score above it.
    _s, o = spatial_rerank(q, db, s, order, cache=cache, context=ctx)
    assert o.tolist() == [0, 1, 2, 3]
    # Outside the verified top 2 nothing changes even with a large weight.
    _s, o = spatial_rerank(q, db, s, order, cache=cache, context=ctx, params=SpatialParams(top_k=2, weight=5.0))
    assert o.tolist() == [0, 1, 2, 3]
    _s, o = spatial_rerank(q, db, s, order, cache=cache, context=ctx, params=SpatialParams(top_k=3, weight=5.0))
    assert o.tolist() == [2, 0, 1, 3]


def test_a_box_query_matches_only_inside_the_box(photos, tmp_path):
    # Row 2 is the query's top-left quarter enlarged 2x: a box on that quarter verifies it,
    # a box on the bottom-right quarter does not (even though both quarters hold the tile).
    paths = [photos["other1"], photos["tiles"], photos["part"], photos["other2"]]
    q, db = _vectors([0.80, 0.78, 0.70, 0.60])
    s, order = _ranked(q, db)
    cache = {"local_features_dir": tmp_path / "lf"}
    inside = RerankContext(paths, photos["query"], box=(0, 0, 320, 240))
    assert spatial_rerank(q, db, s, order, cache=cache, context=inside)[1][0] == 2
    outside = RerankContext(paths, photos["query"], box=(320, 240, 640, 480))
    assert spatial_rerank(q, db, s, order, cache=cache, context=outside)[1].tolist() == [0, 1, 2, 3]


def test_without_the_query_photo_it_says_so(photos):
    q, db = _vectors([0.8, 0.7])
    s, order = _ranked(q, db)
    with pytest.raises(LookalikeError):
        spatial_rerank(q, db, s, order, cache={}, context=None)
    with pytest.raises(LookalikeError):
        spatial_rerank(q, db, s, order, cache={}, context=RerankContext(_db(photos)[:2], None))


def test_a_query_given_as_an_image_verifies_too(photos, tmp_path):
    q, db = _vectors([0.80, 0.78, 0.70, 0.60])
    s, order = _ranked(q, db)
    ctx = RerankContext(_db(photos), None, query_image=Image.open(photos["query"]).convert("RGB"))
    assert spatial_rerank(q, db, s, order, cache={"local_features_dir": tmp_path}, context=ctx)[1][0] == 2


def test_verified_expansion_uses_verified_neighbours_only(photos, tmp_path):
    # Row 4 is a view of the query's object that is far from the query (0.30) but very close
    # to the warped copy (row 2); row 5 is close to the unverified tile picture (row 1).
    # Plain αQE follows the top results (the unverified tile picture first) and pulls row 5 up;
    # sv+aqe expands with the copy only and pulls row 4 up instead.
    paths = _db(photos) + [photos["other1"], photos["other2"]]
    d = 8
    q = np.eye(d, dtype=np.float32)[0]
    def unit(v):
        v = np.asarray(v, np.float32)
        return v / np.linalg.norm(v)
    db = np.stack([unit([0.55, 0, 0, 0, 0, 0, 0, 1]),      # 0 unrelated
                   unit([0.80, 0.6, 0, 0, 0, 0, 0, 0]),    # 1 tile picture
                   unit([0.70, 0, 0.71, 0, 0, 0, 0, 0]),   # 2 the copy
                   unit([0.40, 0, 0, 0.92, 0, 0, 0, 0]),   # 3 unrelated
                   unit([0.30, 0, 0.95, 0, 0, 0, 0, 0]),   # 4 near the copy
                   unit([0.30, 0.95, 0, 0, 0, 0, 0, 0])])  # 5 near the tile picture
    s, order = _ranked(q, db)
    ctx = RerankContext(paths, photos["query"])
    cache = {"local_features_dir": tmp_path}
    _s, plain = alpha_query_expansion(q, db, s, order, params=AqeParams(k=1))
    assert plain.tolist().index(5) < plain.tolist().index(4)
    params = VerifiedExpansionParams(k=1, spatial=SpatialParams(top_k=4))
    _s, ours = verified_expansion(q, db, s, order, cache=cache, context=ctx, params=params)
    assert ours[0] == 2 and ours.tolist().index(4) < ours.tolist().index(5)
    # With nothing verified (the copy left out of the verified top) it is plain sv: no expansion.
    _s, none = verified_expansion(q, db, s, order, cache=cache, context=ctx,
                                  params=VerifiedExpansionParams(k=1, spatial=SpatialParams(top_k=1)))
    assert none.tolist() == order.tolist()


def test_registry_names():
    assert {"sv", "sv+aqe", "diffusion+sv"} <= set(RERANKERS)


def test_diffusion_then_sv_verifies_diffusion_s_ranking(photos, tmp_path):
    from engine.search.rerank import diffusion

    q, db = _vectors([0.80, 0.78, 0.76, 0.60])
    s, order = _ranked(q, db)
    ctx = RerankContext(_db(photos), photos["query"])
    cache = {"local_features_dir": tmp_path}
    f, diffused = diffusion(q, db, s, order, cache=cache)
    assert diffused[0] != 2
    _s, both = RERANKERS["diffusion+sv"](q, db, s, order, cache=cache, context=ctx)
    rest = [int(i) for i in diffused if i != 2]
    assert both.tolist() == [2] + rest  # the copy first, the others in diffusion's order
