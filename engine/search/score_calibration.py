"""A similarity a person can read (0-100 %) and the "no good match" decision (Qt-free).

Raw scores mean different things per method and per collection: R-MAC gives two unrelated
Oxford photos 0.44 in the median, cluster-MAC whitens every cluster so that even a resized
copy scores ~0.4. A raw 0.44 therefore says nothing to the person looking at it.

Our design (no paper covers it), fitted per collection and method from the distribution of
its own scores:

* ``typical``: the median score of random pairs of the collection's photos (robust to the
  few pairs that do show the same thing);
* ``spread``: their robust standard deviation (1.4826 x median absolute deviation);
* ``chance = typical + CHANCE_Z * spread``: the best score an unrelated query still reaches
  by chance among the collection's photos;
* ``copy``: what lightly edited copies of the collection's own photos score with the method,
  in the median (:mod:`engine.services.duplicate_threshold` measures them; its threshold when it has
  no measurements). Not the duplicate threshold itself: with R-MAC on Oxford, other views of
  the same college score above its 0.87, and they read as "a copy" at 100 %.

The similarity is piecewise linear in the score and clipped:

    0 %  = typical   (as alike as two random photos of this collection)
    50 % = chance    (below: could be coincidence; above: unlikely to be)
    100 % = copy     (a near-identical copy)

and a query has **no good match** when its best result stays below 50 %.

``CHANCE_Z`` was measured with R-MAC on oxford_dev (1008 photos; random pairs: median 0.443,
spread 0.094): the best other photo of each of the 27 ground-truth photos present (queries and
positives, the photo itself excluded) scored >= 0.755 in 9 of 10 and at least 0.703 (z 2.80);
of 184 unrelated queries (56 ukbench objects, 125 Paris landmarks, 3 Holidays photos) the best
result scored 0.638 in the median. z = 2.75 (0.703) flags none of the 27 related queries and
54 of the 56 ukbench objects; 38 of the 125 Paris buildings still pass (buildings resemble
buildings). z = 3.0 would flag 2 related queries, so the lower value, which never hides a
true match here, is kept.

The fit is stored in the catalog (state kind ``"score-calibration"``) for the method's
current generation, so it is computed once per indexing (well under a second for
inner-product methods; re-scoring methods score ``RESCORE_QUERIES`` sample queries exactly).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.services.duplicate_threshold import duplicate_threshold

STATE_KIND = "score-calibration"
STATE_VERSION = 2  # stored fits of an older definition are fitted again
CHANCE_Z = 2.75
SAMPLE_PHOTOS = 400  # random pairs among this many photos (79,800 pairs)
RESCORE_QUERIES = 60  # methods that re-score exactly: this many sample queries against the sample
MIN_PHOTOS = 3  # fewer photos give no pairs worth a median


@dataclass(frozen=True)
class ScoreCalibration:
    """How raw scores of one method on one collection map to a readable similarity."""

    method: str
    typical: float  # 0 %
    chance: float  # 50 %: the best an unrelated photo reaches by chance
    copy: float  # 100 %: a near-identical copy
    spread: float
    photos: int

    def percent(self, score: float) -> float:
        """Similarity in [0, 100] of a raw ``score`` (see the module docstring for its meaning)."""
        s = float(score)
        if s <= self.chance:
            lo, hi, base = self.typical, self.chance, 0.0
        else:
            lo, hi, base = self.chance, self.copy, 50.0
        frac = (s - lo) / (hi - lo) if hi > lo else 1.0
        return float(min(100.0, max(0.0, base + 50.0 * frac)))

    def score_at(self, percent: float) -> float:
        """The raw score that reads as ``percent`` (the inverse of :meth:`percent` inside 0-100)."""
        p = min(100.0, max(0.0, float(percent)))
        if p <= 50.0:
            return self.typical + (self.chance - self.typical) * p / 50.0
        return self.chance + (self.copy - self.chance) * (p - 50.0) / 50.0

    def percents(self, scores) -> np.ndarray:
        return np.array([self.percent(s) for s in np.asarray(scores, np.float64).ravel()])

    def is_good_match(self, best_score: float) -> bool:
        """Whether the best result of a query is more similar than chance (above 50 %)."""
        return float(best_score) > self.chance

    def meaning(self) -> str:
        """One sentence for tooltips and the help: what the percentages mean."""
        return (f"Similarity for {self.method} on this collection: 0 % is as alike as two random photos "
                f"of it (score {self.typical:.3f}), 50 % the most an unrelated photo reaches by chance "
                f"({self.chance:.3f}), 100 % a near-identical copy ({self.copy:.3f}).")


def fit_from_scores(method: str, pair_scores, copy_score: float, photos: int) -> ScoreCalibration:
    """The calibration of ``method`` from random-pair scores and the duplicate threshold."""
    p = np.asarray(pair_scores, np.float64).ravel()
    typical = float(np.median(p))
    spread = float(1.4826 * np.median(np.abs(p - typical)))
    if spread <= 0:  # identical photos only: any spread at all counts
        spread = float(np.std(p)) or 1e-3
    chance = typical + CHANCE_Z * spread
    copy = float(copy_score)
    if chance >= copy:
        # Random pairs that score like copies (a dozen near-identical generated photos, or a
        # method whose copies score low): the spread says nothing, 50 % goes halfway.
        chance = (typical + copy) / 2 if copy > typical else typical + spread
        copy = max(copy, chance + spread)
    return ScoreCalibration(method, typical, chance, copy, spread, int(photos))


def random_pair_scores(collection, method: str | None = None, seed: int = 0) -> np.ndarray:
    """Scores of random pairs of indexed photos, as the search scores them."""
    idx = collection.search_index(method)
    n = len(idx.ids)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, SAMPLE_PHOTOS), replace=False))
    scores = []
    for i in sample[:RESCORE_QUERIES]:
        others = sample[sample != i]
        exact = idx.method.rescore(idx.raw[i], idx.raw[others], idx.fit_state)
        if exact is None:  # the inner product of search vectors is the method's score
            break
        scores.append(np.asarray(exact, np.float64))
    if scores:
        return np.concatenate(scores)
    v = idx.vectors[sample].astype(np.float64)
    sims = v @ v.T
    return sims[np.triu_indices(len(sample), 1)]


def stored_calibration(collection, method: str | None = None) -> ScoreCalibration | None:
    name = collection.method(method).name
    got = collection.catalog.load_state(name, STATE_KIND)
    if got is None or got[1] != collection.catalog.generation(name):
        return None
    a = got[0]
    if int(a.get("version", 1)) != STATE_VERSION:
        return None
    return ScoreCalibration(name, float(a["typical"]), float(a["chance"]), float(a["copy"]),
                            float(a["spread"]), int(a["photos"]))


def score_calibration(collection, method: str | None = None) -> ScoreCalibration | None:
    """The calibration of ``collection`` for ``method``: stored, or fitted now and stored.
    None when fewer than ``MIN_PHOTOS`` photos are indexed with it."""
    got = stored_calibration(collection, method)
    if got is not None:
        return got
    name = collection.method(method).name
    n = len(collection.search_index(name).ids)
    if n < MIN_PHOTOS:
        return None
    choice = duplicate_threshold(collection, name)
    copy = float(np.median(choice.edit_similarities)) if choice.edit_similarities else choice.threshold
    cal = fit_from_scores(name, random_pair_scores(collection, name), copy, n)
    collection.catalog.save_state(name, STATE_KIND, {"version": np.int64(STATE_VERSION),
        "typical": np.float64(cal.typical), "chance": np.float64(cal.chance), "copy": np.float64(cal.copy),
        "spread": np.float64(cal.spread), "photos": np.int64(cal.photos)})
    return cal
