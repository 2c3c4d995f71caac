"""Small real files of every photo format the app reads, written by the libraries themselves.

The DNGs are written with tifffile as the DNG 1.4 specification lays them out: a Bayer (RGGB)
CFA image of 12-bit samples in IFD 0 or in a SubIFD, with DNGVersion, ColorMatrix1 (XYZ to
linear sRGB, so the camera "is" sRGB) and AsShotNeutral, and optionally an 8-bit RGB preview
in IFD 0 as cameras store it. LibRaw reads them as it reads a camera's DNG.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RAW_WHITE = 4095
_XYZ_TO_SRGB = (32406, -15372, -4986, -9689, 18758, 415, 557, -2040, 10570)  # x 1e-4


def _linear(rgb8: np.ndarray) -> np.ndarray:
    c = rgb8.astype(np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def bayer_mosaic(rgb8: np.ndarray) -> np.ndarray:
    """The RGGB sensor samples (12 bit) a camera would record for the sRGB picture ``rgb8``."""
    lin = _linear(rgb8) * RAW_WHITE
    cfa = np.empty(rgb8.shape[:2], np.uint16)
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]
    cfa[0::2, 1::2] = lin[0::2, 1::2, 1]
    cfa[1::2, 0::2] = lin[1::2, 0::2, 1]
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]
    return cfa


def write_dng(path: Path, img: Image.Image, preview: bool = True, orientation: int = 1) -> Path:
    """A DNG of ``img`` (even width and height); ``preview``: also store the full-size 8-bit
    preview; ``orientation``: the TIFF/EXIF orientation the camera recorded (6 = turn clockwise)."""
    import tifffile

    rgb = np.asarray(img.convert("RGB"))
    rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
    main_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),                     # DNGVersion
        (50708, "s", 0, "Lookalike test camera", True),          # UniqueCameraModel
        (50721, "2i", 9, tuple(v for x in _XYZ_TO_SRGB for v in (x, 10000)), True),  # ColorMatrix1
        (50778, "H", 1, (21,), True),                            # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),              # AsShotNeutral
        (274, "H", 1, (orientation,), True),                     # Orientation
    ]
    raw_tags = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),  # CFA RGGB
                (50717, "I", 1, (RAW_WHITE,), True), (50714, "H", 1, (0,), True)]  # White/BlackLevel
    with tifffile.TiffWriter(path) as tw:
        if preview:
            tw.write(rgb, photometric="rgb", subfiletype=1, subifds=1, extratags=main_tags)
            tw.write(bayer_mosaic(rgb), photometric=32803, subfiletype=0, extratags=raw_tags)
        else:
            tw.write(bayer_mosaic(rgb), photometric=32803, subfiletype=0, extratags=main_tags + raw_tags)
    return path


def write_png16(path: Path, img: Image.Image) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow writes only 8-bit RGB PNGs), samples = 8-bit x 257."""
    rgb16 = np.asarray(img.convert("RGB")).astype(">u2") * 257
    h, w = rgb16.shape[:2]
    raw = b"".join(b"\x00" + rgb16[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path.write_bytes(png)
    return path


def write_tiff16(path: Path, img: Image.Image) -> Path:
    import tifffile

    tifffile.imwrite(path, np.asarray(img.convert("RGB")).astype(np.uint16) * 257, photometric="rgb")
    return path


def write_animation(path: Path, first: Image.Image, later: Image.Image) -> Path:
    first.save(path, save_all=True, append_images=[later], duration=200, loop=0)
    return path


def write_heif(path: Path, img: Image.Image) -> Path:
    """HEIC or AVIF by the suffix, through pillow-heif."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    img.convert("RGB").save(path, quality=90)
    return path
