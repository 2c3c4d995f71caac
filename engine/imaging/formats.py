"""Photo formats beyond what Pillow reads by itself: camera RAW (rawpy/LibRaw) and HEIC/AVIF
(pillow-heif). :func:`engine.imaging.images.load_image` calls in here; nothing else should.

RAW: the embedded preview is used when it is at least as large as the caller needs (cameras
store a full-size JPEG: decoding it is ~50x faster than demosaicing and is what the camera
showed), otherwise the sensor data is demosaiced (half size when that is still big enough).
The orientation LibRaw reports (``sizes.flip``) is applied to either, since embedded previews
usually carry no EXIF orientation of their own.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from engine.errors import ImageLoadError

RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf",
                            ".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".mrw"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})

# LibRaw's ``flip`` (what LibRaw's own postprocess applies): 3 = turn 180 degrees, 5 = turn 90
# degrees counter-clockwise (EXIF orientation 8), 6 = turn 90 degrees clockwise (EXIF 6).
_FLIP_TO_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90,
                      6: Image.Transpose.ROTATE_270}

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORT_ERROR: str | None = None
except ImportError:  # a regular dependency; absent only in a hand-made environment
    HEIF_SUPPORT_ERROR = "HEIC/HEIF/AVIF photos need the pillow-heif package (pip install pillow-heif)"


def is_raw_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def heif_unsupported_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read here, when it is a HEIF-family file and the plugin is missing."""
    return HEIF_SUPPORT_ERROR if Path(path).suffix.lower() in HEIF_EXTENSIONS else None


def load_raw(path: Path, max_side: int | None = None) -> Image.Image:
    """Decode a camera RAW file as an upright RGB image, at least ``max_side`` on its longest side
    when the sensor has that many pixels. Raises :class:`ImageLoadError` with a reason."""
    try:
        import rawpy
    except ImportError:
        raise ImageLoadError(path, "camera RAW files need the rawpy package (pip install rawpy)") from None
    try:
        with rawpy.imread(str(path)) as raw:
            flip = raw.sizes.flip
            sensor_side = max(raw.sizes.width, raw.sizes.height)
            img = _embedded_preview(raw, max_side or sensor_side)
            if img is None:
                half = bool(max_side) and sensor_side >= 2 * max_side
                rgb = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8, user_flip=0)
                img = Image.fromarray(np.ascontiguousarray(rgb))
    except rawpy.LibRawFileUnsupportedError:
        raise ImageLoadError(path, "this camera RAW format is not supported by LibRaw "
                                   "(or the file is not a RAW file)") from None
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise ImageLoadError(path, f"the RAW file could not be decoded: {exc}") from None
    transpose = _FLIP_TO_TRANSPOSE.get(flip)
    return img.transpose(transpose) if transpose is not None else img


def _embedded_preview(raw, needed_side: int) -> Image.Image | None:
    """The camera's own preview when it is a JPEG or bitmap with a longest side >= needed_side."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        with Image.open(io.BytesIO(thumb.data)) as preview:
            if max(preview.size) < needed_side:
                return None
            preview.draft("RGB", _draft_size(preview.size, needed_side))
            return preview.convert("RGB")
    if thumb.format == rawpy.ThumbFormat.BITMAP and max(thumb.data.shape[:2]) >= needed_side:
        return Image.fromarray(np.ascontiguousarray(thumb.data)).convert("RGB")
    return None


def _draft_size(size: tuple[int, int], needed_side: int) -> tuple[int, int]:
    scale = max(1.0, max(size) / needed_side)
    return max(1, int(size[0] / scale)), max(1, int(size[1] / scale))


def sidecar_key(path: str | os.PathLike) -> tuple[str, str]:
    """Photos with one key are one shot saved twice by the camera (``IMG_1.CR2`` + ``IMG_1.JPG``):
    the same folder and the same name up to case and extension."""
    p = Path(path)
    return str(p.parent), p.stem.casefold()


def raw_sidecar_pairs(paths: Sequence[str]) -> list[tuple[int, int]]:
    """``(raw index, sidecar index)`` for every non-RAW photo that shares its folder and name
    with a RAW one (a RAW+JPEG or RAW+HEIC pair from one exposure), in side-car order; a name
    with several RAWs (``IMG_1.CR2`` + ``IMG_1.DNG``) pairs with the first of them.

    The one rule for side-cars: the desktop search and an archive's index build
    (:class:`engine.search.index.HiddenSidecars`) and the duplicate finder use it. ``paths`` is
    read in order at most twice, then only at the pairs found, so it may be a table on disk
    (an archive's ``paths.bin``): the memory is a flag and an 8-byte hash of the key per photo,
    not a key object per photo, and a collection without RAW files is read once.
    """
    n = len(paths)
    is_raw = np.fromiter((is_raw_path(p) for p in paths), bool, n)
    if not is_raw.any():
        return []
    keys = np.fromiter((hash(sidecar_key(p)) for p in paths), np.int64, n)
    raw_rows = np.flatnonzero(is_raw)
    raw_rows = raw_rows[np.argsort(keys[raw_rows], kind="stable")]  # equal keys: the first RAW first
    raw_keys = keys[raw_rows]
    others = np.flatnonzero(~is_raw)
    pos = np.searchsorted(raw_keys, keys[others])
    hit = raw_keys[np.minimum(pos, len(raw_keys) - 1)] == keys[others]
    pairs = []
    for k, j in zip(others[hit].tolist(), pos[hit].tolist()):
        key = sidecar_key(paths[k])  # the hash matched: compare the keys themselves
        while j < len(raw_keys) and raw_keys[j] == keys[k]:
            if sidecar_key(paths[int(raw_rows[j])]) == key:
                pairs.append((int(raw_rows[j]), k))
                break
            j += 1
    return pairs
