"""Spatial verification of the top of a ranking with local features (``engine.search.local_features``).

The global descriptor ranks the whole collection; the best ``top_k`` are then matched to the
query with RootSIFT and a RANSAC-fitted affine model, and each gets a *bonus* added to its
global score (our design, chosen so that verification cannot wreck a good ranking):

* ``evidence = clip((inliers - floor) / (full - floor), 0, 1)`` for a fit that passes the model
  checks (scale within 1/8..8, anisotropy <= 3, no reflection), 0 otherwise. ``floor`` = 10:
  pairs of different places in the top 100 reach at most 7 inliers on paris_dev (set by that)
  and 7 on oxford_dev (except two photos of Christ Church's quad, which whole-photo queries of
  Tom Tower really do show: ~210 and ~360 inliers); ``full`` = 40;
* the new score is ``global / top global + weight * evidence`` (``weight`` = 0.2, set a
  priori): photos that verify move up by at most 0.2 of the top score, the others keep their
  order. A hard "verified first" rule (the naive check) lets one false verification of a
  repeated façade jump over every true but unverified match; a bounded bonus does not.

Matching is one-to-one (mutual nearest neighbours and the ratio test both ways), which removes
most matches between repeated windows, the false verifications seen on Oxford. The model is
found from one-correspondence hypotheses (Philbin et al. 2007), not random samples: a true
pair often has only 10-20 right matches among 50-100, which RANSAC's samples seldom hit. With a query box
only the box is described and matched (the box is what the user asked about).

Local features are cached per photo (:class:`~engine.search.local_features.LocalFeatureStore`: in
memory, and on disk under ``cache["local_features_dir"]`` when the caller gives one, else
under the user cache), so a photo is described once across queries and runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from engine.errors import LookalikeError
from engine.search.local_features import (LocalFeatureConfig, LocalFeatureStore, LocalFeatures, MatchConfig, Verification, VerifyConfig,
                             default_store_dir, extract, unverified, verify)


def _check_config() -> VerifyConfig:
    """Looser than the local-feature defaults: ratio 0.95, a 16 px threshold (at 1024 px) and
    one-correspondence hypotheses (``estimator="keypoint"``: each match's keypoint size and
    orientation give a similarity, all are tried, the 10 best refined to an affine model, a
    point SIFT found twice counted once) instead of RANSAC's random 3-point samples. Chosen on
    paris_dev by how true pairs separate from pairs of different places in the top 100 of its
    12 queries (crop and whole photo; 406 true, 718 different), not by mAP: true pairs with
    >= 10 inliers 25 % (ratio 0.8, 8 px, RANSAC) -> 42 % (0.9, 16 px, RANSAC) -> 49.5 % (0.95,
    keypoint) while different places stay at <= 7 inliers (ratio 0.9 with keypoint: 42 %,
    <= 5; ratio 1.0 with keypoint lets them reach 15). Mutual nearest neighbours keep repeated
    windows out. oxford_dev (reported, not used to choose): 51 % -> 55 % of its 74 true pairs,
    different places <= 7 (but the two Tom Quad photos)."""
    return VerifyConfig(model="affine", estimator="keypoint", threshold=16.0,
                        match=MatchConfig(ratio=0.95, mutual=True))


@dataclass(frozen=True)
class SpatialParams:
    """``top_k``: how many of the ranking are verified (~30 ms a pair plus, the first time a
    photo is seen, ~0.2 s to extract its features). See the module docstring for the rest."""

    top_k: int = 100
    features: LocalFeatureConfig = field(default_factory=LocalFeatureConfig)
    check: VerifyConfig = field(default_factory=_check_config)
    floor: float = 10.0
    full: float = 40.0
    weight: float = 0.2


def evidence(v: Verification, params: SpatialParams) -> float:
    """How strongly one verification supports a match, in [0, 1] (see the module docstring)."""
    if not v.sane:
        return 0.0
    return float(np.clip((v.inliers - params.floor) / (params.full - params.floor), 0.0, 1.0))


def feature_store(cache: dict | None, config: LocalFeatureConfig) -> LocalFeatureStore:
    """The store of a collection's reranking cache (one per feature config), created on first use."""
    key = ("local_features", config)
    if cache is not None and key in cache:
        return cache[key]
    directory = (cache or {}).get("local_features_dir") or default_store_dir()
    store = LocalFeatureStore(config, directory)
    if cache is not None:
        cache[key] = store
    return store


def query_features(context, store: LocalFeatureStore) -> LocalFeatures:
    """The query's local features: of its box when it has one (extracted from the region, so a
    small box gets a whole photo's worth of points), else of the whole photo (cached when the
    query is a file)."""
    if context is None or (context.query_path is None and context.query_image is None):
        raise LookalikeError("Spatial verification needs the query photo (not only its descriptor).")
    source = context.query_path if context.query_path is not None and os.path.exists(context.query_path) \
        else context.query_image
    if source is None:
        raise LookalikeError(f"Query photo not found: {context.query_path}")
    if context.box is not None:
        return extract(source, store.config, box=context.box)
    return store.get(source) if isinstance(source, str) else extract(source, store.config)


def verify_rows(context, rows, params: SpatialParams, cache: dict | None = None,
                results: dict[int, Verification] | None = None) -> dict[int, Verification]:
    """Verification of the query against the database ``rows`` (indices into ``context.paths``);
    rows already in ``results`` are not verified again. Unreadable photos count as unverified."""
    store = feature_store(cache, params.features)
    q = query_features(context, store)
    out = {} if results is None else results
    for r in (int(r) for r in rows):
        if r in out:
            continue
        try:
            db = store.get(context.paths[r])
        except (OSError, LookalikeError):  # gone or undecodable since indexing: no evidence
            out[r] = unverified(params.check.model)
            continue
        out[r] = verify(q, db, params.check, region=context.box)
    return out


def add_bonus(scores: np.ndarray, order: np.ndarray, verified: dict[int, Verification],
              params: SpatialParams) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` (best first, of ``order``) over the top score, plus ``weight * evidence`` of
    the verified rows; re-sorted, ties in the given order. Dividing by the top score makes
    the bonus mean the same on cosines and on diffusion's scores (``diffusion+sv``)."""
    s = np.asarray(scores, np.float64).copy()
    if len(s) and s[0] > 0:
        s /= s[0]
    order = np.asarray(order, np.int64)
    for pos, r in enumerate(order):
        v = verified.get(int(r))
        if v is not None:
            s[pos] += params.weight * evidence(v, params)
    idx = np.argsort(-s, kind="stable")
    return s[idx].astype(np.float32), order[idx]


def spatial_rerank(query: np.ndarray, database: np.ndarray, scores: np.ndarray, order: np.ndarray,
                   cache: dict | None = None, context=None, params: SpatialParams = SpatialParams()):
    """Reranker ``sv``: verify the top ``top_k`` of ``order`` and add their bonus (``order``
    may come from another reranker: ``diffusion+sv``)."""
    verified = verify_rows(context, np.asarray(order)[: params.top_k], params, cache)
    return add_bonus(scores, order, verified, params)


@dataclass(frozen=True)
class VerifiedExpansionParams:
    """αQE (α = 3 as in ``aqe``) over at most ``k`` verified results: on a landmark with few
    photos (Oxford: 1-17 of 1008) plain αQE's top 10 are mostly other buildings and drag the
    query towards them; verified results are the same object, so the expansion can only add
    views of it. With no verified result the query is left as it is (= ``sv``)."""

    k: int = 10
    alpha: float = 3.0
    spatial: SpatialParams = field(default_factory=SpatialParams)


def verified_expansion(query: np.ndarray, database: np.ndarray, scores: np.ndarray, order: np.ndarray,
                       cache: dict | None = None, context=None,
                       params: VerifiedExpansionParams = VerifiedExpansionParams()):
    """Reranker ``sv+aqe``: verify the top ``top_k``, expand the query with the verified ones,
    re-score the database, verify the new top ``top_k`` (pairs already checked are not
    checked again) and add the bonus."""
    from engine.search.rerank import expanded_query

    sp = params.spatial
    order = np.asarray(order, np.int64)
    verified = verify_rows(context, order[: sp.top_k], sp, cache)
    good = [int(r) for r in order[: sp.top_k] if evidence(verified[int(r)], sp) > 0][: params.k]
    if not good:
        return add_bonus(scores, order, verified, sp)
    s = database @ expanded_query(query, database[good], params.alpha)
    new_order = np.argsort(-s, kind="stable")
    verify_rows(context, new_order[: sp.top_k], sp, cache, results=verified)
    return add_bonus(s[new_order], new_order, verified, sp)
