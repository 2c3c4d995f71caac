"""Local features (engine.search.local_features): SIFT/RootSIFT extraction, one-to-one matching, RANSAC
checks on generated pairs: a warped copy verifies under each model, an unrelated picture and a
different picture made of the same repeated tile do not."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from engine.search.local_features import (LocalFeatureConfig, LocalFeatureStore, LocalFeatures, MatchConfig, VerifyConfig,
                                          extract, linear_part_stats, match, root_sift, verify)


def textured(seed: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A picture full of distinct corners and blobs (SIFT finds ~1500 stable points on it):
    a smooth random colour field with 150 random discs and rectangles. RGB uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = cv2.resize((rng.random((max(1, h // 8), max(1, w // 8), 3)) * 255).astype(np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    for _ in range(150):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(4, 30))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), r, colour, -1)
        else:
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(4, 30))), colour, -1)
    return img


def tiled(seed: int, tile: np.ndarray, positions, rotate: bool) -> np.ndarray:
    """``tile`` pasted at ``positions`` over a textured background of ``seed`` (rotated by a
    random multiple of 90 degrees each when ``rotate``): a "façade" of repeated windows."""
    rng = np.random.default_rng(seed)
    img = textured(seed)
    th, tw = tile.shape[:2]
    for x, y in positions:
        t = np.rot90(tile, int(rng.integers(0, 4))) if rotate else tile
        img[y:y + th, x:x + tw] = t
    return img


def repeated_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two different pictures made of the same tile: a 4x3 grid of it, and 5x3 copies at
    another spacing, rotated, over another background."""
    tile = textured(3, (96, 96))
    a = tiled(10, tile, [(100 + 110 * i, 100 + 110 * j) for i in range(4) for j in range(3)], False)
    b = tiled(11, tile, [(30 + 120 * i, 50 + 130 * j) for i in range(5) for j in range(3)], True)
    return a, b


WARPS = {
    "similarity": np.array([[0.8 * np.cos(0.3), -0.8 * np.sin(0.3), 120], [0.8 * np.sin(0.3), 0.8 * np.cos(0.3), -40], [0, 0, 1]]),
    "affine": np.array([[0.9, 0.2, 30], [-0.05, 0.75, 40], [0, 0, 1]]),
    "homography": np.array([[0.9, 0.15, 30], [-0.1, 0.85, 20], [0.0003, 0.0001, 1]]),
}


def _features(img: np.ndarray):
    return extract(Image.fromarray(img))


@pytest.mark.parametrize("estimator", ["ransac", "keypoint"])
@pytest.mark.parametrize("model", ["similarity", "affine", "homography"])
def test_a_warped_copy_verifies_and_the_fit_recovers_the_warp(model, estimator):
    a = textured(1)
    H = WARPS[model]
    b = cv2.warpPerspective(a, H, (640, 480))
    v = verify(_features(a), _features(b), VerifyConfig(model=model, estimator=estimator))
    assert v.verified and v.sane and v.inliers >= 100 and v.inlier_ratio > 0.5
    # The fitted transform maps a's points where the warp does (within a few pixels).
    pts = np.array([[200, 150], [400, 300], [320, 240]], np.float64)
    def apply(M):
        p = np.c_[pts, np.ones(3)] @ M.T
        return p[:, :2] / p[:, 2:]
    assert np.abs(apply(v.matrix) - apply(H)).max() < 4.0
    assert v.points_a.shape == v.points_b.shape == (v.inliers, 2)
    # Inliers in b are where the warp sends the inliers of a.
    np.testing.assert_allclose(cv2.perspectiveTransform(v.points_a.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2),
                               v.points_b, atol=8.0)


def test_an_unrelated_picture_does_not_verify():
    v = verify(_features(textured(1)), _features(textured(2)))
    assert not v.verified and v.inliers < 12


@pytest.mark.parametrize("estimator", ["ransac", "keypoint"])
@pytest.mark.parametrize("model", ["similarity", "affine", "homography"])
def test_a_different_picture_with_the_same_repeated_tile_does_not_verify(model, estimator):
    a, b = repeated_pair()
    fa, fb = _features(a), _features(b)
    v = verify(fa, fb, VerifyConfig(model=model, estimator=estimator))
    assert not v.verified and v.inliers < 12
    # The tile does match: without the ratio test and mutual check many more tentative matches
    # survive (this is what fools a naive check); the one-to-one ratio matching removes them.
    loose = match(fa, fb, MatchConfig(ratio=0.99, mutual=False))
    assert len(loose) > 3 * len(match(fa, fb))


def _synthetic_pair(n_true: int, n_wrong: int, seed: int = 0):
    """Features of two 1024 x 768 "photos" and ``n_true + n_wrong`` matches (row i of a with
    row i of b): the true ones follow b = 1.5 R(25 deg) a + t with keypoint sizes and angles
    that agree (as SIFT's do on a real warp), the wrong ones are random points, sizes, angles."""
    rng = np.random.default_rng(seed)
    n = n_true + n_wrong
    xa = rng.uniform([100, 100], [500, 400], (n, 2))
    phi, s = np.deg2rad(25.0), 1.5
    L = s * np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    xb = xa @ L.T + [200.0, 50.0] + rng.normal(0, 1.0, (n, 2))
    xb[n_true:] = rng.uniform([0, 0], [1024, 768], (n_wrong, 2))
    size_a = rng.uniform(2, 20, n)
    size_b = size_a * s * rng.uniform(0.9, 1.1, n)
    ang_a = rng.uniform(0, 360, n)
    ang_b = (ang_a - np.rad2deg(phi) + rng.normal(0, 3, n)) % 360  # OpenCV angles: y points down
    size_b[n_true:] = rng.uniform(2, 30, n_wrong)
    ang_b[n_true:] = rng.uniform(0, 360, n_wrong)
    d = rng.normal(size=(n, 128)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    fa = LocalFeatures(xa.astype(np.float32), size_a.astype(np.float32), ang_a.astype(np.float32), d, (1024, 768))
    fb = LocalFeatures(xb.astype(np.float32), size_b.astype(np.float32), ang_b.astype(np.float32), d, (1024, 768))
    return fa, fb, np.stack([np.arange(n), np.arange(n)], 1), L


def test_the_keypoint_estimator_finds_a_few_true_matches_among_many_wrong_ones():
    # 15 true matches among 400 (4 %): a random 3-point sample is all-true once in ~20,000
    # draws, so RANSAC's 2000 iterations rarely find them; one hypothesis per match does.
    fa, fb, m, L = _synthetic_pair(15, 385)
    v = verify(fa, fb, VerifyConfig(model="affine", estimator="keypoint", min_inliers=10), matches=m)
    assert v.verified and 15 <= v.inliers <= 20  # the true ones (and a wrong one falling close by chance)
    np.testing.assert_allclose(v.matrix[:2, :2], L, atol=0.05)
    assert v.scale == pytest.approx(1.5, abs=0.05) and v.anisotropy < 1.1
    again = verify(fa, fb, VerifyConfig(model="affine", estimator="keypoint", min_inliers=10), matches=m)
    assert again.inliers == v.inliers and np.array_equal(again.matrix, v.matrix)  # deterministic


def test_the_keypoint_estimator_ignores_keypoints_that_disagree_with_the_points():
    # Random matches whose keypoints happen to give a hypothesis: few points agree with it.
    fa, fb, m, _ = _synthetic_pair(0, 400, seed=1)
    v = verify(fa, fb, VerifyConfig(model="affine", estimator="keypoint", threshold=16.0), matches=m)
    assert not v.verified and v.inliers < 8


def test_a_point_found_twice_by_sift_counts_once_in_the_keypoint_estimator():
    # SIFT gives a point two keypoints when it has two orientations; the same pair of places
    # matched twice is one inlier, not two (RANSAC's count is left as it was).
    fa, fb, m, _ = _synthetic_pair(15, 100, seed=2)
    once = verify(fa, fb, VerifyConfig(model="affine", estimator="keypoint", min_inliers=10), matches=m)
    twice = np.r_[m, m[:15]]  # every true match listed twice
    v = verify(fa, fb, VerifyConfig(model="affine", estimator="keypoint", min_inliers=10), matches=twice)
    assert v.inliers == once.inliers >= 15 and v.matches == len(m)
    assert verify(fa, fb, VerifyConfig(model="affine", min_inliers=10, max_iters=20000),
                  matches=twice).inliers >= 30


def test_an_unknown_estimator_is_refused():
    fa, fb, m, _ = _synthetic_pair(20, 20)
    with pytest.raises(ValueError, match="estimator"):
        verify(fa, fb, VerifyConfig(estimator="lmeds"), matches=m)
    with pytest.raises(ValueError, match="model"):
        verify(fa, fb, VerifyConfig(model="projective", estimator="keypoint"), matches=m)


def test_matches_are_one_to_one_and_pass_the_ratio_test_both_ways():
    a, b = _features(textured(1)), _features(cv2.warpAffine(textured(1), WARPS["affine"][:2], (640, 480)))
    m = match(a, b)
    assert len(m) > 100
    assert len(np.unique(m[:, 0])) == len(m) == len(np.unique(m[:, 1]))
    sims = a.descriptors[m[:, 0]] @ b.descriptors.T
    d = np.sqrt(np.maximum(2 - 2 * np.sort(sims, axis=1)[:, ::-1][:, :2], 0))
    assert (d[:, 0] < 0.8 * d[:, 1]).all()


def test_a_box_restricts_the_query_points():
    a = textured(1)
    fa = _features(a)
    box = (100, 100, 300, 260)
    inside = fa.within(box)
    assert 0 < len(inside) < len(fa)
    assert ((inside.xy >= [100, 100]) & (inside.xy <= [300, 260])).all()
    v = verify(fa, fa, region=box)
    assert v.verified and ((v.points_a >= [100, 100]) & (v.points_a <= [300, 260])).all()
    assert v.coverage_a > 0.5  # coverage is over the box, not over the whole photo
    # Extracting from the region itself: points inside, in the photo's pixels, and more of them
    # than the whole photo's extraction leaves in the box when the point budget is tight.
    tight = LocalFeatureConfig(max_features=300)
    region = extract(Image.fromarray(a), tight, box=box)
    assert ((region.xy >= [100, 100]) & (region.xy <= [300, 260])).all()
    assert len(region) > len(extract(Image.fromarray(a), tight).within(box))
    v2 = verify(region, fa, region=box)
    assert v2.verified and v2.scale == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(v2.points_a, v2.points_b, atol=2.0)  # same photo: identity


def test_model_checks_reject_reflections_and_squashes():
    assert linear_part_stats(np.diag([-1.0, 1.0, 1.0]))[2]  # a mirror is reflected
    scale, aniso, refl = linear_part_stats(np.diag([2.0, 0.5, 1.0]))
    assert scale == pytest.approx(1.0) and aniso == pytest.approx(4.0) and not refl
    a = textured(1)
    squashed = cv2.resize(a, (640, 240), interpolation=cv2.INTER_AREA)  # height halved
    fa, fs = _features(a), _features(squashed)
    ok = verify(fa, fs, VerifyConfig(model="affine", min_inliers=6, max_anisotropy=3.0))
    assert ok.verified and ok.anisotropy == pytest.approx(2.0, abs=0.1)
    strict = verify(fa, fs, VerifyConfig(model="affine", min_inliers=6, max_anisotropy=1.5))
    assert strict.inliers == ok.inliers and not strict.sane and not strict.verified
    # SIFT is not mirror-invariant: a mirrored copy hardly matches at all.
    assert not verify(fa, _features(np.ascontiguousarray(a[:, ::-1]))).verified


def test_points_are_in_full_size_pixels_whatever_the_extraction_size():
    big = cv2.resize(textured(1), (1280, 960), interpolation=cv2.INTER_CUBIC)
    small_cfg = LocalFeatureConfig(max_side=640)
    f = extract(Image.fromarray(big), small_cfg)
    assert f.image_size == (1280, 960)
    assert f.xy[:, 0].max() > 700  # scaled back from the 640 px extraction
    v = verify(f, extract(Image.fromarray(big)))
    assert v.verified and v.scale == pytest.approx(1.0, abs=0.05)


def test_root_sift_rows_are_unit_and_hellinger():
    d = np.array([[1, 3, 0, 4], [0, 0, 2, 2]], np.float32)
    r = root_sift(d)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(r[0] @ r[1], np.sqrt(d[0] / 8) @ np.sqrt(d[1] / 4), atol=1e-5)


def test_store_caches_on_disk_and_notices_a_changed_file(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(textured(1)).save(p)
    s1 = LocalFeatureStore(directory=tmp_path / "cache")
    f1 = s1.get(p)
    assert s1.extracted == 1 and s1.get(p) is f1  # memory hit
    s2 = LocalFeatureStore(directory=tmp_path / "cache")
    f2 = s2.get(p)
    assert s2.extracted == 0  # read from disk
    np.testing.assert_allclose(f1.xy, f2.xy)
    np.testing.assert_allclose(f1.descriptors, f2.descriptors, atol=1e-6)
    Image.fromarray(textured(2)).save(p)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    f3 = s2.get(p)
    assert s2.extracted == 1 and not np.array_equal(f3.xy, f2.xy)
