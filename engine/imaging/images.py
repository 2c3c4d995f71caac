"""Image decoding for indexing and queries.

* EXIF orientation is applied, so a descriptor is always computed on the upright photo.
* Any Pillow mode (P, LA, RGBA, CMYK, I;16, F...) becomes 8-bit RGB; alpha is composited on white.
* Big JPEGs are decoded with draft mode (DCT scaling) at no less than the size the method needs.
* Decompression bombs are refused with a reason instead of exhausting memory.
* Animated GIF/WebP use their first frame; 16-bit samples become 8-bit (RGB by the top byte,
  one-channel by stretching its range).
* HEIC/HEIF/AVIF (pillow-heif) and camera RAW (rawpy) are read by :mod:`engine.imaging.formats`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from engine.errors import ImageLoadError
from engine.imaging.formats import HEIF_EXTENSIONS, RAW_EXTENSIONS, heif_unsupported_reason, is_raw_path, load_raw

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
}) | RAW_EXTENSIONS | HEIF_EXTENSIONS
# Refuse images above this many pixels (a 30000x30000 header is 900 MP). 200 MP covers
# every consumer camera and panorama stitcher we know of.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow errors above 2x this; we refuse above 1x ourselves
# Set once at import, never toggled per call (filters are process-wide, not per thread): the
# 200-400 MP warning says nothing the size check in _load_with_pillow does not say better.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
ImageFile.LOAD_TRUNCATED_IMAGES = False

def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    """A one-channel 16/32-bit or float image stretched from its own min..max to 0..255.

    Computed a strip of rows at a time: a float64 copy of a whole 190 MP photo (and the two
    temporaries of the arithmetic) took 4.5 GB of the 5.4 GB its decode peaked at."""
    lo, hi = float(arr.min()), float(arr.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.empty(arr.shape, np.uint8)
    rows = max(1, (1 << 22) // max(1, arr.shape[1]))  # ~4 M pixels (32 MB of float64) a strip
    for y in range(0, arr.shape[0], rows):
        out[y:y + rows] = ((arr[y:y + rows].astype(np.float64) - lo) * scale).astype(np.uint8)
    return out


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        img = Image.fromarray(_stretch_to_uint8(np.asarray(img)), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def load_image(path: str | os.PathLike, max_side: int | None = None) -> Image.Image:
    """Decode ``path`` as an upright 8-bit RGB image.

    ``max_side`` is the longest side the caller needs: JPEGs are decoded in draft mode at
    the smallest DCT scale that is still at least that big, and any image is then reduced
    so that its longest side is at most ``max_side`` (never enlarged here).
    Raises :class:`ImageLoadError` with a readable reason.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageLoadError(path, "is a folder, not an image file")
        size = path.stat().st_size
        if size == 0:
            raise ImageLoadError(path, "the file is empty (0 bytes)")
        img = load_raw(path, max_side) if is_raw_path(path) else _load_with_pillow(path, max_side)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"refused as a decompression bomb ({exc})") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageLoadError(path, f"refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, heif_unsupported_reason(path)
                             or "not a recognised image format (or the file is damaged)") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied when reading the file") from None
    except FileNotFoundError:
        raise ImageLoadError(path, "the file no longer exists") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc) or exc.__class__.__name__
        if "truncated" in msg.lower():
            msg = "the file is truncated (incomplete download or copy?)"
        raise ImageLoadError(path, f"could not be decoded: {msg}") from None
    except MemoryError:
        raise ImageLoadError(path, "not enough memory to decode the image") from None
    if max_side and max(img.size) > max_side:
        img = resize_longest_side(img, max_side)
    return img


def _load_with_pillow(path: Path, max_side: int | None) -> Image.Image:
    """Upright 8-bit RGB through Pillow (the errors are :func:`load_image`'s to word).

    The size limit is checked here, on the header, not by turning Pillow's
    DecompressionBombWarning into an error inside ``warnings.catch_warnings()``: that changes
    the process-wide warning filters, so another indexing thread reading a large photo's
    header at that moment got the warning as an exception (the indexer then crashed)."""
    with Image.open(path) as img:
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageLoadError(path, f"image is {w}x{h} pixels, above the {MAX_PIXELS // 1_000_000} MP safety limit")
        if max_side and img.format == "JPEG":
            # draft() keeps the longest side >= requested size (scale 1/2, 1/4, 1/8).
            scale = max(w, h) / max_side
            if scale >= 2:
                img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
        if getattr(img, "is_animated", False):
            img.seek(0)
        img.load()
        return _to_rgb(ImageOps.exif_transpose(img))


def resize_longest_side(img: Image.Image, side: int, min_side: int = 1) -> Image.Image:
    """Resize so the longest side equals ``side`` (aspect kept, shorter side >= ``min_side``)."""
    w, h = img.size
    s = side / max(w, h)
    nw, nh = max(min_side, round(w * s)), max(min_side, round(h * s))
    if (nw, nh) == (w, h):
        return img
    return img.resize((nw, nh), Image.Resampling.BILINEAR if s > 1 else Image.Resampling.LANCZOS)


def crop_box(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Crop ``(x1, y1, x2, y2)`` in the image's own pixels, clamped to the image."""
    x1, y1, x2, y2 = box
    w, h = img.size
    x1, x2 = sorted((max(0, min(w, x1)), max(0, min(w, x2))))
    y1, y2 = sorted((max(0, min(h, y1)), max(0, min(h, y2))))
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise ValueError(f"empty crop box {box} for an image of {w}x{h}")
    return img.crop((int(x1), int(y1), int(round(x2)), int(round(y2))))
