"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``.

A reader (another thread, another process, the next start after a crash) sees either the
old file or the complete new one, never half a file: the temporary name is unique per
process and thread (``.<name>.<pid>.<thread>.tmp``, hidden, so folder scans pass over it
and the catalog's orphan sweep removes one a crash left behind), and the rename happens
only after the bytes are on disk. ``durable=False`` skips the two fsyncs for caches
(thumbnails, local features), where a power cut may cost an entry that is rebuilt on
demand but must not cost one fsync per file on the way.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable



def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, writer: Callable[[BinaryIO], Any], durable: bool = True) -> None:
    """Write ``path`` through ``writer(binary file)``: temp name, fsync, rename into place.

    On any error the temporary file is removed and the previous ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            writer(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text, newlines as given (no platform translation)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))
