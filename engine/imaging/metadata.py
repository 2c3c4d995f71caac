"""What a photo's header says without decoding its pixels: upright size, EXIF, date taken.

One reader for the indexer (catalog rows), the viewer's details and the spatial verifier
(which maps keypoints to full-size pixels), so all three agree on a photo's upright size.
Camera RAW files take their size and orientation from LibRaw (a DNG's IFD 0 is often only
the preview) and their EXIF from Pillow's TIFF reader where the RAW is TIFF-based.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from engine.imaging.formats import is_raw_path

_SIDE_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_RAW_FLIP_SWAPS_SIDES = (5, 6)


@dataclass(frozen=True)
class PhotoHeader:
    width: int
    height: int
    taken: float | None = None  # EXIF DateTimeOriginal (else DateTime) as a POSIX timestamp
    exif: dict = field(default_factory=dict, compare=False)  # IFD0: tag number -> value
    exif_ifd: dict = field(default_factory=dict, compare=False)  # the Exif sub-IFD (exposure...)


def date_taken(img: Image.Image) -> float | None:
    """EXIF DateTimeOriginal (else DateTime) of an open image as a POSIX timestamp, or None."""
    try:
        exif = img.getexif()
        raw = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
        if not raw:
            return None
        return time.mktime(time.strptime(str(raw).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S"))
    except (ValueError, TypeError, KeyError, OSError, SyntaxError):  # malformed EXIF is common
        return None


def read_header(path: str | os.PathLike) -> PhotoHeader:
    """Upright size and EXIF of ``path``. A PNG without EXIF in its header is not asked for
    EXIF (Pillow would decode all its pixels looking for an eXIf chunk after them)."""
    path = Path(path)
    if is_raw_path(path):
        return _raw_header(path)
    with Image.open(path) as img:
        w, h = img.size
        if img.format == "PNG" and "exif" not in img.info:
            return PhotoHeader(w, h)
        exif, exif_ifd = _exif_tags(img)
        taken = date_taken(img)
    if exif.get(0x0112, 1) in _SIDE_SWAPPING_ORIENTATIONS:
        w, h = h, w
    return PhotoHeader(w, h, taken, exif, exif_ifd)


def _exif_tags(img: Image.Image) -> tuple[dict, dict]:
    try:
        exif = img.getexif()
        return dict(exif), dict(exif.get_ifd(0x8769))
    except (ValueError, TypeError, KeyError, OSError, SyntaxError):  # malformed EXIF is common
        return {}, {}


def _raw_header(path: Path) -> PhotoHeader:
    import rawpy

    try:
        with rawpy.imread(str(path)) as raw:
            w, h, flip = raw.sizes.width, raw.sizes.height, raw.sizes.flip
    except rawpy.LibRawError as exc:  # as Pillow's errors: the caller's "cannot read" branch
        raise ValueError(f"LibRaw cannot read {path.name}: {exc}") from None
    if flip in _RAW_FLIP_SWAPS_SIDES:
        w, h = h, w
    try:
        with Image.open(path) as tiff:  # NEF, CR2, ARW, DNG, ORF... are TIFF inside
            return PhotoHeader(w, h, date_taken(tiff), *_exif_tags(tiff))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):  # CR3, RAF: not TIFF
        return PhotoHeader(w, h)
