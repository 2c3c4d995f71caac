"""Paths read from data (a catalog's rows, a dataset's JSON, a settings file) stay inside their root.

A catalog or a dataset may come from elsewhere (copied, downloaded, edited): a stored name
such as ``../../x``, ``/etc/passwd`` or a file under a symlinked folder must never make
Lookalike read, write or delete outside the folder it belongs to. Every such path goes
through :func:`confined` before it is used.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from engine.errors import UnsafePathError


def confined(root: str | os.PathLike, name: str | os.PathLike, what: str = "file") -> Path:
    """``root / name`` resolved, or :class:`UnsafePathError` when ``name`` is absolute, has a
    ``..`` part, or resolves (through symlinks) outside ``root``."""
    text = os.fspath(name)
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if (not text or os.path.isabs(text) or PureWindowsPath(text).drive or PureWindowsPath(text).root
            or ".." in parts):
        raise UnsafePathError(f"Refusing the {what} {text!r}: it is not a plain relative path inside {root}.")
    base = Path(root).resolve()
    target = (base / text).resolve()
    if target != base and not target.is_relative_to(base):
        raise UnsafePathError(f"Refusing the {what} {text!r}: it leads outside {base} (to {target}, "
                              f"through a symbolic link).")
    return target


def is_confined(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` (resolved, through symlinks) is ``root`` or inside it."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    return target == base or target.is_relative_to(base)
