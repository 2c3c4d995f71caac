"""The duplicate finder's default thresholds for a collection and method (Qt-free).

``engine.services.duplicates.DEFAULT_THRESHOLD`` (0.87, the *similar* tier) and ``DEFAULT_CANDIDATE``
(0.70, the lowest similarity a pair is verified at) were chosen on R-MAC's cosine similarities
(``bench/duplicates_eval.py``). Other methods score on other scales: cluster-MAC whitens every
cluster's vector, so even a photo and its resized copy score ~0.4 and unrelated photos ~0.05
(ACTNET and DARAC whiten too, once a collection has >= 1600 photos). A fixed 0.87 would find
no near-duplicates with such a method at all.

Our design (no paper covers it): make light edits of a few of the collection's own photos
(half size + JPEG quality 50, a 10 % crop, +25 % brightness), describe them with the method
and measure their similarity to the photo they came from. When the measured default already
catches most of them (median edit similarity >= 0.87) it is kept, so R-MAC-like methods keep
the threshold whose precision and recall were measured. Otherwise the default becomes the
similarity that catches 3 in 4 of the edits (their 25th percentile).

Measured on ukbench56 (8 photos x 3 edits): R-MAC edits score 0.967 in the median (0.87 kept;
it catches 67 % of these edits);
cluster-MAC edits score 0.390 in the median, so its default becomes 0.13, while the most
similar *other* photo of each ukbench photo (often the same object from another side) scores
0.042 in the median and 0.099 at most.

The choice is stored in the catalog (state kind ``"duplicate-threshold"``) for the method's
current generation, so it is measured once per indexing of the collection.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from engine.services.duplicates import DEFAULT_CANDIDATE, DEFAULT_FLOOR, DEFAULT_THRESHOLD, DuplicateConfig
from engine.errors import ImageLoadError
from engine.imaging.images import load_image

STATE_KIND = "duplicate-threshold"
CALIBRATION_PHOTOS = 8
EDIT_RECALL = 0.75  # share of the light edits a calibrated threshold catches


@dataclass(frozen=True)
class ThresholdChoice:
    """``threshold``: the default for this collection and method; ``calibrated``: False when
    the measured default is kept; ``edit_similarities``: what it was chosen from."""

    threshold: float
    calibrated: bool
    edit_similarities: tuple[float, ...] = ()

    @property
    def floor(self) -> float:
        """Lowest similarity worth keeping in the graph (and offering on a slider)."""
        return min(DEFAULT_FLOOR, max(0.01, round(self.threshold - 0.3, 2)))

    @property
    def candidate(self) -> float:
        """Lowest similarity at which a pair is verified as a possible near-duplicate: the
        measured default, or for a calibrated method below every measured light edit (the
        verification, not this number, decides; this only bounds the work)."""
        if not self.calibrated:
            return DEFAULT_CANDIDATE
        lowest = min([self.threshold, *self.edit_similarities])
        return max(self.floor, round(lowest - 0.05, 2))

    def config(self, **kw) -> DuplicateConfig:
        """The finder's settings for this choice (``kw`` overrides, e.g. ``keep=``)."""
        return DuplicateConfig(threshold=self.threshold, candidate=min(self.candidate, self.threshold),
                               floor=self.floor, **kw)

    def describe(self, method: str) -> str:
        if not self.calibrated:
            return f"threshold {self.threshold:.2f}, the measured default"
        return (f"threshold {self.threshold:.2f}, calibrated for {method} on this collection "
                f"(a lightly edited copy scores {float(np.median(self.edit_similarities)):.2f})")


def off_centre_crop(img: Image.Image, frac: float) -> Image.Image:
    """Crop ``frac`` of the area away, off-centre (more from the right and bottom)."""
    w, h = img.size
    s = (1 - frac) ** 0.5
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    x0, y0 = (w - cw) // 3, (h - ch) // 3
    return img.crop((x0, y0, x0 + cw, y0 + ch))


def light_edits(img: Image.Image) -> list[Image.Image]:
    """Copies a duplicate finder must group with ``img``: half size re-encoded at JPEG quality 50,
    a 10 % off-centre crop, and +25 % brightness."""
    img = img.convert("RGB")
    w, h = img.size
    buf = io.BytesIO()
    img.resize((max(1, w // 2), max(1, h // 2)), Image.BILINEAR).save(buf, "JPEG", quality=50)
    buf.seek(0)
    small = Image.open(buf).convert("RGB")
    return [small, off_centre_crop(img, 0.10), ImageEnhance.Brightness(img).enhance(1.25)]


def choose_threshold(edit_similarities) -> ThresholdChoice:
    """The rule of the module docstring, on measured edit similarities."""
    e = np.asarray(edit_similarities, dtype=np.float64)
    if e.size == 0 or float(np.median(e)) >= DEFAULT_THRESHOLD:
        return ThresholdChoice(DEFAULT_THRESHOLD, False, tuple(float(v) for v in e))
    t = float(np.quantile(e, 1.0 - EDIT_RECALL))
    return ThresholdChoice(round(min(max(t, 0.01), DEFAULT_THRESHOLD), 2), True, tuple(float(v) for v in e))


def measure_edit_similarities(collection, method: str | None = None, photos: int = CALIBRATION_PHOTOS) -> np.ndarray:
    """Similarity of light edits of ``photos`` evenly spaced indexed photos to their originals
    (search vectors, as the duplicate finder compares them). Unreadable photos are passed over."""
    idx = collection.search_index(method)
    m = idx.method
    n = len(idx.paths)
    rows = sorted(set(np.linspace(0, n - 1, min(photos, n)).round().astype(int).tolist())) if n else []
    sims = []
    for r in rows:
        try:
            img = load_image(idx.paths[r], m.decode_side())
        except ImageLoadError:  # a photo gone or broken since indexing: use the others
            continue
        for edit in light_edits(img):
            raw = collection.describe_query(edit, m.name)
            v = m.search_vectors(np.asarray(raw, np.float32)[None, :], idx.fit_state)[0]
            sims.append(float(v @ idx.vectors[r]))
    return np.asarray(sims, dtype=np.float64)


def stored_choice(collection, method: str | None = None) -> ThresholdChoice | None:
    """The choice stored for the method's current descriptors, or None."""
    name = collection.method(method).name
    got = collection.catalog.load_state(name, STATE_KIND)
    if got is None or got[1] != collection.catalog.generation(name):
        return None
    arrays = got[0]
    return ThresholdChoice(float(arrays["threshold"]), bool(arrays["calibrated"]),
                           tuple(float(v) for v in arrays["edit_similarities"]))


def duplicate_threshold(collection, method: str | None = None) -> ThresholdChoice:
    """The default duplicate threshold of ``collection`` for ``method``: stored, or measured
    (a few seconds: ``3 * CALIBRATION_PHOTOS`` query descriptors) and stored."""
    choice = stored_choice(collection, method)
    if choice is not None:
        return choice
    name = collection.method(method).name
    choice = choose_threshold(measure_edit_similarities(collection, name))
    collection.catalog.save_state(name, STATE_KIND, {
        "threshold": np.float64(choice.threshold), "calibrated": np.bool_(choice.calibrated),
        "edit_similarities": np.asarray(choice.edit_similarities, np.float64)})
    return choice
