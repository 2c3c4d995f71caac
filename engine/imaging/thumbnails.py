"""Thumbnails for the GUI, decoded off the UI thread and cached on disk (Qt-free).

A thumbnail is the upright photo reduced so that its longest side is one of a few fixed
sizes (:data:`THUMB_SIZES`; a request is served by the smallest bucket at least as big, the
view scales it down). The disk cache lives under :func:`engine.store.paths.cache_dir` /
``thumbnails`` and is keyed by the file's absolute path, modification time and size, so an
edited photo gets a fresh thumbnail and a stale entry is simply never read again.
Entries are written atomically (:func:`engine.store.atomic.atomic_write_bytes`), so a killed
process never leaves a half-written JPEG that would be served later; they are not fsync'ed
(a cache), and an entry a power cut damaged fails to decode and is rebuilt.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from engine.errors import ImageLoadError
from engine.imaging.images import load_image, resize_longest_side
from engine.store.atomic import atomic_write_bytes
from engine.store.paths import cache_dir

THUMB_SIZES = (128, 256, 512)
JPEG_QUALITY = 88


def bucket_for(size: int) -> int:
    """The cached thumbnail size that serves a request for ``size`` pixels."""
    for s in THUMB_SIZES:
        if size <= s:
            return s
    return THUMB_SIZES[-1]


def thumbnail_cache_root() -> Path:
    return cache_dir() / "thumbnails"


def cache_key(path: str | os.PathLike, size: int) -> str:
    """Hex key of ``path``'s thumbnail at bucket ``size``: absolute path + mtime + size."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    raw = f"{p}\0{st.st_mtime_ns}\0{st.st_size}\0{bucket_for(size)}".encode("utf-8", "surrogateescape")
    return hashlib.sha1(raw).hexdigest()


def cache_path(path: str | os.PathLike, size: int, root: Path | None = None) -> Path:
    key = cache_key(path, size)
    return (root or thumbnail_cache_root()) / key[:2] / f"{key}.jpg"


def load_thumbnail(path: str | os.PathLike, size: int, root: Path | None = None) -> Image.Image:
    """RGB thumbnail of ``path`` with longest side ``bucket_for(size)`` (never enlarged).

    Served from the disk cache when present; otherwise decoded, reduced and stored.
    Raises :class:`~engine.errors.ImageLoadError` with a readable reason.
    """
    try:
        target = cache_path(path, size, root)
    except FileNotFoundError:
        raise ImageLoadError(path, "the file no longer exists") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot be read: {exc.strerror or exc}") from None
    if target.is_file():
        try:
            with Image.open(target) as cached:
                cached.load()
                return cached.convert("RGB")
        except (OSError, ValueError):
            pass  # damaged cache entry: decode again and overwrite it
    side = bucket_for(size)
    img = load_image(path, side)
    if max(img.size) > side:
        img = resize_longest_side(img, side)
    try:
        atomic_write_bytes(target, lambda f: img.save(f, "JPEG", quality=JPEG_QUALITY), durable=False)
    except OSError:
        pass  # a read-only or full cache only costs speed, never the thumbnail itself
    return img
