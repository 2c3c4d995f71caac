"""Every setting the window remembers: its QSettings key and its default, in one place.

The window reads and writes settings only through :class:`AppSettings`; ``store`` is the
underlying ``QSettings`` (an INI file in the config folder, or the screenshot hook's scratch
file).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from engine.api import config_dir

log = logging.getLogger(__name__)
THUMB_SIZES = (96, 128, 160, 200, 256, 320)
DEFAULT_THUMB_SIZE = 160


def settings_path() -> Path:
    return config_dir() / "lookalike.ini"


def open_settings() -> QSettings:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)


def _collection_path(value: object) -> str | None:
    """A collection folder read back from the settings file, or None when it is not a plain
    absolute path: the file is data another program (or a hand edit) may have changed, so a
    relative path, a ``..`` part or a NUL never reaches the catalog code."""
    text = str(value)
    if not text or "\x00" in text or not os.path.isabs(text) or ".." in Path(text).parts:
        log.warning("ignoring the collection %r in the settings file: not a plain absolute path", text)
        return None
    return os.path.normpath(text)


def _key_part(path: str) -> str:
    """A collection folder as one QSettings key segment (no slashes or colons)."""
    return "".join(c if c.isalnum() else "_" for c in path)


class AppSettings:
    """Typed access to the saved settings (each property: one key, its default)."""

    def __init__(self, store: QSettings):
        self.store = store

    def _bytes(self, key: str) -> QByteArray | None:
        v = self.store.value(key)
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    # -- window layout -------------------------------------------------------------------
    @property
    def window_geometry(self) -> QByteArray | None:
        return self._bytes("window/geometry")

    @window_geometry.setter
    def window_geometry(self, value: QByteArray) -> None:
        self.store.setValue("window/geometry", value)

    @property
    def window_state(self) -> QByteArray | None:
        return self._bytes("window/state")

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self.store.setValue("window/state", value)

    # -- views ---------------------------------------------------------------------------
    @property
    def thumb_size(self) -> int:
        size = int(self.store.value("thumb_size", DEFAULT_THUMB_SIZE))
        return size if size in THUMB_SIZES else DEFAULT_THUMB_SIZE

    @thumb_size.setter
    def thumb_size(self, size: int) -> None:
        self.store.setValue("thumb_size", int(size))

    @property
    def overlay(self) -> str:
        return str(self.store.value("overlay", "regions"))

    @overlay.setter
    def overlay(self, kind: str) -> None:
        self.store.setValue("overlay", kind)

    @property
    def overlay_opacity(self) -> int:
        return int(self.store.value("overlay_opacity", 60))

    @overlay_opacity.setter
    def overlay_opacity(self, percent: int) -> None:
        self.store.setValue("overlay_opacity", int(percent))

    @property
    def hide_near_duplicates(self) -> bool:
        return self.store.value("hide_near_duplicates", False, type=bool)

    @hide_near_duplicates.setter
    def hide_near_duplicates(self, on: bool) -> None:
        self.store.setValue("hide_near_duplicates", bool(on))

    # -- computing -----------------------------------------------------------------------
    @property
    def device(self) -> str:
        return str(self.store.value("device", "auto"))

    @device.setter
    def device(self, name: str) -> None:
        self.store.setValue("device", name)

    @property
    def watch_folders(self) -> bool:
        return self.store.value("watch_folders", True, type=bool)

    @watch_folders.setter
    def watch_folders(self, on: bool) -> None:
        self.store.setValue("watch_folders", bool(on))

    def method_speed(self, method: str) -> float:
        """Photos per second ``method`` last indexed at on this computer (0: never measured)."""
        return float(self.store.value(f"speed/{method}", 0) or 0)

    def set_method_speed(self, method: str, photos_per_s: float) -> None:
        self.store.setValue(f"speed/{method}", round(photos_per_s, 2))

    # -- collections ---------------------------------------------------------------------
    @property
    def collections(self) -> list[str]:
        v = self.store.value("collections", [])
        if isinstance(v, str):  # QSettings gives a one-item list back as a plain string
            v = [v]
        return [p for p in (_collection_path(x) for x in (v or [])) if p is not None]

    @collections.setter
    def collections(self, folders: list[str]) -> None:
        self.store.setValue("collections", list(folders))

    @property
    def last_collection(self) -> str | None:
        v = self.store.value("last_collection")
        return _collection_path(v) if v else None

    @last_collection.setter
    def last_collection(self, folder: str | None) -> None:
        if folder:
            self.store.setValue("last_collection", folder)
        else:
            self.store.remove("last_collection")

    def resume_method(self, collection: str) -> str | None:
        """The method of an indexing of ``collection`` that did not finish, or None."""
        v = self.store.value(f"resume/{_key_part(collection)}")
        return str(v) if v else None

    def set_resume_method(self, collection: str, method: str | None) -> None:
        key = f"resume/{_key_part(collection)}"
        if method:
            self.store.setValue(key, method)
            self.store.sync()  # a crash mid-indexing must find it
        else:
            self.store.remove(key)

    def sync(self) -> None:
        self.store.sync()
