"""Perceptual hash (pHash), as imagededup and czkawka compute it: the baseline the duplicate
finder is measured against (``bench/duplicates_eval.py``), and the finder's way to propose
*rotated* copies as candidates (a CNN descriptor of a photo turned by 90 degrees is another
vector; its pHash is one of the original's rotated pHashes). It never groups photos by itself.

pHash (Zauner 2010, imagededup's ``PHash``): the photo in grey at 32 x 32, its 2-D DCT, the
8 x 8 lowest frequencies, one bit per coefficient (>= the median of the 63 coefficients other
than DC). Two photos are duplicates at a Hamming distance <= 10 (imagededup's default).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy.fft import dct

from engine.imaging.images import load_image

DEFAULT_MAX_DISTANCE = 10


def _bits(a: np.ndarray) -> int:
    coef = dct(dct(a, axis=0), axis=1)[:8, :8]
    bits = (coef >= np.median(coef.ravel()[1:])).ravel()
    return int(sum(1 << k for k, b in enumerate(bits) if b))


def _grey32(image: Image.Image | str | os.PathLike) -> np.ndarray:
    img = image if isinstance(image, Image.Image) else load_image(image, 256)
    return np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)


def phash(image: Image.Image | str | os.PathLike) -> int:
    """64-bit pHash of a PIL image or a photo path (decoded upright)."""
    return _bits(_grey32(image))


def phash_rotations(image: Image.Image | str | os.PathLike) -> tuple[int, int, int, int]:
    """pHash of the photo turned by 0, 90, 180 and 270 degrees (one decode): a copy whose
    pixels were rotated hashes like one of the original's rotations."""
    a = _grey32(image)
    return tuple(_bits(np.rot90(a, k)) for k in range(4))  # type: ignore[return-value]


def hamming_pairs(hashes: list[int], max_distance: int = DEFAULT_MAX_DISTANCE) -> list[tuple[int, int]]:
    """All pairs ``(i, j)``, ``i < j``, at Hamming distance <= ``max_distance`` (all pairs are
    compared: fine for a benchmark of a few hundred photos)."""
    h = np.array(hashes, np.uint64)
    out = []
    for i in range(len(h) - 1):
        x = np.bitwise_xor(h[i + 1:], h[i])
        d = np.array([bin(int(v)).count("1") for v in x])
        out.extend((i, i + 1 + int(j)) for j in np.flatnonzero(d <= max_distance))
    return out
