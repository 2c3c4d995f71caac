"""Is photo B an edited copy of photo A? The check that confirms a near-duplicate pair (Qt-free).

A descriptor (R-MAC...) scores an edited copy high, but it scores another shot of the same
building, a burst frame or another side of the same toy high as well: similarity alone cannot
tell "the same photo, edited" from "the same scene, photographed again". Edits that people make
(re-encoding, resizing, cropping, colour changes, rotation, a stamp, a format change) keep the
photo's geometry: one similarity transform (rotation, uniform scale, translation) maps every
point of the copy onto the original, and after that transform the pixels agree almost
everywhere. Another shot breaks at least one of the two: a new viewpoint moves points by
parallax or perspective (no single similarity fits them tightly), and a burst moves people,
leaves, clouds (the aligned pixels disagree there). Our check (design of our own, built on
:mod:`engine.search.local_features`) asks for all of these:

1. **Geometry**: RootSIFT matches (one-to-one, ratio test) agree with a similarity transform
   (RANSAC, a tight 2 px tolerance at 512 px): at least ``min_inliers`` inliers making at least
   ``min_inlier_ratio`` of the matches, no reflection, and a median inlier error of at most
   ``max_residual`` keypoint sizes (an edit leaves only keypoint noise; a re-shot from nearly
   the same spot leaves some perspective).
2. **Frame**: the transform maps the two frames onto each other so that the smaller one lies
   (almost) inside the larger (``min_inside``) and covers at least ``min_overlap`` of it (a crop
   keeps most of the photo; a zoomed detail of a façade does not).
3. **Spread**: the inliers' convex hull covers ``min_spread`` of the overlap (not a few dozen
   points on one window).
4. **Pixels**: the copy is warped into the original's frame at ``pixel_side`` px, both in grey
   (so grey and colour-adjusted copies compare), and cut into blocks; a block agrees when its
   normalised cross-correlation (blind to brightness and contrast changes) is at least
   ``block_ncc``. At least ``min_agreement`` of the textured blocks must agree (a stamp or a
   logo covers a few blocks; a moving crowd or a new viewpoint many).

A pair passes only when every step does; :class:`PairCheck` says which step failed, for the
duplicates view's explanation and for the benchmark. The thresholds were set on a tuning set
built from ``paris_dev`` (``bench/duplicates_eval.py --source paris_dev``) and then measured,
unchanged, on the ``oxford_dev`` benchmark (``docs/duplicates_eval.md``).

Cost: features once per photo (SIFT at 512 px, <= 1000 points, ~60 ms on one core, memoised by
:class:`engine.search.local_features.LocalFeatureStore`), then ~5 ms per pair (matching 1000 x 1000
points, RANSAC, the pixel check), so verification grows linearly with the number of candidate
pairs (at most ``verify_k`` per photo).
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from engine.errors import ImageLoadError
from engine.imaging.images import load_image
from engine.search.local_features import LocalFeatureConfig, LocalFeatureStore, MatchConfig, VerifyConfig, verify


# Bumped whenever the check itself changes, so verdicts stored in catalogs are recomputed.
VERIFIER_VERSION = 4


def _features_config() -> LocalFeatureConfig:
    # 512 px is plenty for a copy of the same photo (no scale change to bridge beyond the edit's).
    return LocalFeatureConfig(max_side=512, max_features=1000)


def _geometry_config() -> VerifyConfig:
    # 4 px at 1024 px (2 px at the 512 px the points are found at): an edit keeps the geometry
    # exactly, so a tight tolerance costs copies nothing and rejects other viewpoints.
    return VerifyConfig(model="similarity", threshold=4.0, min_inliers=8, max_scale=16.0,
                        match=MatchConfig(ratio=0.85, mutual=True))


@dataclass(frozen=True)
class NearDuplicateConfig:
    """Thresholds of the four steps of the module docstring."""

    features: LocalFeatureConfig = field(default_factory=_features_config)
    geometry: VerifyConfig = field(default_factory=_geometry_config)
    min_inliers: int = 10
    min_inlier_ratio: float = 0.5   # of the tentative matches (copies of real photos: >= 0.89; few-point photos lower)
    max_residual: float = 0.13      # median inlier error / keypoint size; copies <= 0.105, re-shots >= 0.16
    min_inside: float = 0.85       # share of the smaller frame that lands inside the larger
    min_overlap: float = 0.6       # overlap over the larger frame's area (a crop keeps >= 60 %)
    min_spread: float = 0.1         # inliers' hull area over the overlap's area
    pixel_side: int = 160
    block: int = 10                 # block side in pixels at pixel_side
    min_block_std: float = 6.0      # grey-level std below which a block is flat (sky, wall): not counted
    block_ncc: float = 0.6
    min_agreement: float = 0.85

    def key(self) -> str:
        """Identifies the check and these settings (verdicts stored by another are not reused)."""
        return f"nd{VERIFIER_VERSION}:" + json.dumps(asdict(self), sort_keys=True, default=str)


@dataclass(frozen=True)
class PairCheck:
    """The outcome of one pair: ``ok`` and, when not, ``failed`` = the first step that failed
    ("geometry", "frame", "spread", "pixels" or "unreadable"), with the measured numbers."""

    ok: bool
    failed: str = ""
    inliers: int = 0
    inlier_ratio: float = 0.0
    residual: float = 0.0
    inside: float = 0.0
    overlap: float = 0.0
    spread: float = 0.0
    agreement: float = 0.0

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "PairCheck":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def describe(self) -> str:
        if self.failed == "unreadable":
            return "could not be compared (a file is unreadable)"
        text = (f"{self.inliers} matching points, {self.overlap:.0%} of the frame shared, "
                f"{self.agreement:.0%} of the aligned pixels agree")
        return text if self.ok else f"not the same photo ({self.failed} check failed: {text})"


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _frame(w: float, h: float) -> np.ndarray:
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)


def _overlap_polygon(M: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int]) -> np.ndarray:
    """Polygon (in b's pixels) where a's frame mapped by ``M`` and b's frame overlap."""
    fa = cv2.perspectiveTransform(_frame(*size_a).reshape(-1, 1, 2), M.astype(np.float64)).reshape(-1, 2)
    area, poly = cv2.intersectConvexConvex(fa.astype(np.float32), _frame(*size_b))
    return np.zeros((0, 2), np.float32) if poly is None or area <= 0 else poly.reshape(-1, 2)


def block_agreement(a: np.ndarray, b: np.ndarray, valid: np.ndarray, block: int, min_std: float,
                    ncc: float) -> float:
    """Share of textured ``block`` x ``block`` blocks (fully inside ``valid``) whose normalised
    cross-correlation between grey images ``a`` and ``b`` is >= ``ncc``; 0 when none is textured."""
    h, w = a.shape
    hb, wb = h // block, w // block
    if hb == 0 or wb == 0:
        return 0.0

    def blocks(x):
        return x[:hb * block, :wb * block].reshape(hb, block, wb, block).swapaxes(1, 2).reshape(hb * wb, -1)

    A, B = blocks(a.astype(np.float32)), blocks(b.astype(np.float32))
    inside = blocks(valid.astype(np.float32)).min(axis=1) > 0
    A = A - A.mean(axis=1, keepdims=True)
    B = B - B.mean(axis=1, keepdims=True)
    sa, sb = np.sqrt((A * A).mean(axis=1)), np.sqrt((B * B).mean(axis=1))
    # A block flat in both photos says nothing; flat in one only is a disagreement (something
    # was painted over it, or it shows something else).
    textured = inside & ((sa >= min_std) | (sb >= min_std))
    if not textured.any():
        return 0.0
    corr = (A * B).mean(axis=1) / np.maximum(sa * sb, 1e-6)
    return float((corr[textured] >= ncc).mean())


def _to_small(shape: tuple[int, ...], full: tuple[int, int]) -> np.ndarray:
    """Full-size pixel coordinates -> those of a reduced copy of ``shape`` (h, w). Pixel
    centres sit at integers in both, so the map is ``(x + 0.5) * s - 0.5``: without the
    half-pixel terms a 90-degree rotation lands half a pixel off, which fine texture notices."""
    sx, sy = shape[1] / full[0], shape[0] / full[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


class NearDuplicateVerifier:
    """Checks pairs of photo paths; features and small grey copies are memoised per path."""

    def __init__(self, config: NearDuplicateConfig | None = None, store: LocalFeatureStore | None = None,
                 cache_items: int = 2048):
        self.config = config or NearDuplicateConfig()
        self.store = store or LocalFeatureStore(self.config.features, max_items=cache_items)
        self._small: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_items = cache_items
        self._lock = threading.Lock()

    def _grey(self, path: str) -> np.ndarray:
        with self._lock:
            hit = self._small.get(path)
            if hit is not None:
                self._small.move_to_end(path)
                return hit
        img = np.asarray(load_image(path, self.config.pixel_side).convert("L"))
        with self._lock:
            self._small[path] = img
            while len(self._small) > self._cache_items:
                self._small.popitem(last=False)
        return img

    def check(self, path_a: str, path_b: str) -> PairCheck:
        try:
            fa, fb = self.store.get(path_a), self.store.get(path_b)
        except (ImageLoadError, OSError, ValueError):
            return PairCheck(False, "unreadable")
        c = self.config
        try:
            g = verify(fa, fb, c.geometry)
        except np.linalg.LinAlgError:  # a degenerate RANSAC fit (e.g. all points on one spot)
            return PairCheck(False, "geometry")
        if g.matrix is None or g.inliers < c.min_inliers or g.inlier_ratio < c.min_inlier_ratio or g.reflected:
            return PairCheck(False, "geometry", g.inliers, g.inlier_ratio)
        M = g.matrix  # a's full-size pixels -> b's
        residual = self._residual(g, fb)
        if residual > c.max_residual:
            return PairCheck(False, "geometry", g.inliers, g.inlier_ratio, residual)
        area_a = fa.image_size[0] * fa.image_size[1]
        area_b = fb.image_size[0] * fb.image_size[1]
        poly = _overlap_polygon(M, fa.image_size, fb.image_size)
        inter = _polygon_area(poly) if len(poly) >= 3 else 0.0
        s2 = abs(float(np.linalg.det(M[:2, :2])))  # area scale a -> b
        area_a_in_b = area_a * s2
        inside = inter / max(1e-9, min(area_a_in_b, area_b))
        overlap = inter / max(1e-9, max(area_a_in_b, area_b))
        if inside < c.min_inside or overlap < c.min_overlap:
            return PairCheck(False, "frame", g.inliers, g.inlier_ratio, residual, inside, overlap)
        hull = cv2.convexHull(g.points_b.reshape(-1, 1, 2).astype(np.float32))
        spread = min(1.0, float(cv2.contourArea(hull)) / max(1e-9, inter))
        if spread < c.min_spread:
            return PairCheck(False, "spread", g.inliers, g.inlier_ratio, residual, inside, overlap, spread)
        try:
            agreement = self._pixel_agreement(path_a, path_b, M, fa.image_size, fb.image_size,
                                              a_inner=area_a_in_b <= area_b)
        except (ImageLoadError, OSError, ValueError):
            return PairCheck(False, "unreadable")
        ok = agreement >= c.min_agreement
        return PairCheck(ok, "" if ok else "pixels", g.inliers, g.inlier_ratio, residual, inside, overlap, spread,
                         agreement)

    @staticmethod
    def _residual(g, fb) -> float:
        """Median distance between b's inliers and a's inliers mapped by the fit, over the
        median size of those keypoints in b. SIFT localises a point to a fraction of its size
        (sharp detail: small and precise; smooth shapes: large and loose), so this is keypoint
        noise for an edit (<= 0.105 measured on copies of real photos) and perspective or
        parallax for another shot from nearly the same spot (0.16-0.25 on the tuning set)."""
        M = g.matrix
        r = np.linalg.norm(g.points_a @ M[:2, :2].T + M[:2, 2] - g.points_b, axis=1)
        # The inliers' indices in b (Verification gives their coordinates, taken from b.xy).
        row = {(float(x), float(y)): k for k, (x, y) in enumerate(fb.xy)}
        sizes = [fb.scale[k] for k in (row.get((float(x), float(y))) for x, y in g.points_b) if k is not None]
        size = float(np.median(sizes)) if sizes else 1.0
        return float(np.median(r)) / max(size, 1e-6)

    def _pixel_agreement(self, path_a: str, path_b: str, M: np.ndarray, size_a, size_b, a_inner: bool) -> float:
        """Block agreement of the two small grey copies, compared in the frame of the inner
        photo (the crop), the outer one warped into it."""
        c = self.config
        ga, gb = self._grey(path_a), self._grey(path_b)
        Sa, Sb = _to_small(ga.shape, size_a), _to_small(gb.shape, size_b)
        outer, inner, Ms = ga, gb, Sb @ M @ np.linalg.inv(Sa)  # Ms: outer's small pixels -> inner's
        if a_inner:
            outer, inner, Ms = gb, ga, np.linalg.inv(Ms)
        h, w = inner.shape
        warped = cv2.warpAffine(outer, Ms[:2], (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        valid = cv2.warpAffine(np.full(outer.shape, 255, np.uint8), Ms[:2], (w, h), flags=cv2.INTER_NEAREST,
                               borderValue=0) > 0
        # A slight blur: what is left of a half-pixel misalignment or of resampling must not
        # read as a difference in fine texture (night lights, foliage).
        warped = cv2.GaussianBlur(warped, (3, 3), 0.8)
        inner = cv2.GaussianBlur(inner, (3, 3), 0.8)
        return block_agreement(warped, inner, valid, c.block, c.min_block_std, c.block_ncc)
