"""Why did a photo match? Per-part shares of a similarity score (Qt-free; used by the GUI).

A method splits an image's search vector into additive parts (:class:`ExplainParts`:
R-MAC regions, cluster-MAC clusters, ... or one "whole image" part), with
``vectors.sum(0) + bias == search vector``. The score of a result is the inner product
``q · r`` of the two search vectors, so

* the query's part p contributes ``q_p · r`` and the bias ``q_bias · r``: these sum to the score;
* symmetrically the result's part p contributes ``r_p · q``;
* channel c contributes ``q_c · r_c`` (the top channels are listed).

When the method re-scores exactly (MS-RMAC's weighted distance...), ``search_score`` (what the
result list shows) differs from ``score`` (the inner product that is explained); the GUI
says so.

Also here: the class activation map (CAM, Zhou et al. 2016) of any image, for the CAM
overlay, computed from the backbone's classifier over its ``cam_tap`` features.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from engine.errors import LookalikeError
from engine.imaging.images import load_image
from engine.descriptors.methods.base import ExplainParts


@dataclass
class SideExplanation:
    """One image of the pair: its parts and each part's share of the score."""

    path: str
    size: tuple[int, int]  # upright image (width, height) the masks cover
    parts: ExplainParts
    contributions: np.ndarray  # (P,) share of each part; sum + bias_contribution == score
    bias_contribution: float

    def top_parts(self, k: int = 5) -> list[tuple[int, str, float]]:
        """``(index, label, contribution)`` of the k biggest contributions, biggest first."""
        order = np.argsort(-self.contributions, kind="stable")[:k]
        return [(int(i), self.parts.labels[i], float(self.contributions[i])) for i in order]

    def contribution_map(self) -> np.ndarray:
        """``(h, w)`` map: each cell gets the contributions of the parts covering it, averaged
        over how many parts cover it (regions overlap); for the tinted region overlay."""
        masks = self.parts.masks
        cover = masks.sum(0)
        weighted = np.tensordot(self.contributions.astype(np.float32), masks, axes=1)
        return np.where(cover > 0, weighted / np.maximum(cover, 1e-6), 0.0).astype(np.float32)


@dataclass
class Explanation:
    method: str
    kind: str
    score: float  # inner product of the two search vectors = sum of each side's shares
    search_score: float | None  # the score the search reported (None when not given)
    query: SideExplanation
    result: SideExplanation
    top_channels: list[tuple[int, float]] = field(default_factory=list)  # (channel, q_c * r_c)


def _load(image: str | os.PathLike | Image.Image, side: int) -> tuple[str, Image.Image]:
    if isinstance(image, Image.Image):
        return "", image.convert("RGB")
    if not os.path.exists(image):
        raise LookalikeError(f"Image not found: {image}")
    return os.fspath(image), load_image(image, side)


def image_parts(collection, image: str | os.PathLike | Image.Image, method: str | None = None
                ) -> tuple[str, Image.Image, ExplainParts]:
    """``(path, upright image, parts)`` of one image with the collection's fitted method."""
    m = collection.method(method)
    fit_state = collection.search_index(m.name).fit_state
    path, img = _load(image, m.decode_side())
    return path, img, m.explain_parts(img, collection.extractor_for(m), fit_state)


def explain_match(collection, query: str | os.PathLike | Image.Image, result_path: str | os.PathLike,
                  method: str | None = None, search_score: float | None = None,
                  top_channels: int = 10) -> Explanation:
    """Split the similarity of ``query`` and ``result_path`` into per-part contributions."""
    m = collection.method(method)
    qpath, qimg, qparts = image_parts(collection, query, m.name)
    rpath, rimg, rparts = image_parts(collection, result_path, m.name)
    q = qparts.vectors.astype(np.float64).sum(0) + qparts.bias
    r = rparts.vectors.astype(np.float64).sum(0) + rparts.bias
    if q.shape != r.shape:
        raise LookalikeError("The query and the result have descriptors of different sizes; re-index the collection.")
    score = float(q @ r)
    qside = SideExplanation(qpath, qimg.size, qparts, qparts.vectors.astype(np.float64) @ r, float(qparts.bias @ r))
    rside = SideExplanation(rpath, rimg.size, rparts, rparts.vectors.astype(np.float64) @ q, float(rparts.bias @ q))
    per_channel = q * r
    order = np.argsort(-per_channel, kind="stable")[:top_channels]
    return Explanation(m.name, qparts.kind, score, search_score, qside, rside,
                       [(int(c), float(per_channel[c])) for c in order])


def class_activation_map(collection, image: str | os.PathLike | Image.Image, method: str | None = None
                         ) -> tuple[np.ndarray, int] | None:
    """``((h, w) CAM in [0, 1], top class)`` of an image, or None when the backbone has no CAM.

    Uses the method's backbone and input size; the map covers the whole upright image.
    """
    m = collection.method(method)
    extractor = collection.extractor_for(m)
    tap = extractor.backbone.cam_tap
    if tap is None:
        return None
    _path, img = _load(image, m.decode_side())
    feats = extractor.feature_maps([img], m.config.image_side, [tap])[0][tap]
    cam, cls = extractor.class_activation_map(feats)
    cam = cam.numpy().astype(np.float32)
    cam = cam - cam.min()
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam), cls
