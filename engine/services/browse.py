"""Browsing a collection from its catalog (Qt-free): folder tree with counts, photo listings.

Everything is read from the catalog (no file system walk), so opening a 50,000-photo
collection that is already indexed costs one SQL query. ``date`` of a photo is the EXIF
``DateTimeOriginal`` the indexer stored (``images.taken``, see ``engine.imaging.metadata.date_taken``),
falling back to the file's modification time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from engine.store.catalog import CatalogStore, decode_path


@dataclass(frozen=True)
class PhotoEntry:
    path: str
    name: str
    folder: str
    size: int
    width: int | None
    height: int | None
    taken: float | None
    mtime: float
    image_id: int

    @property
    def date(self) -> float:
        """EXIF date taken, else the modification time."""
        return self.taken if self.taken is not None else self.mtime


@dataclass
class FolderNode:
    """One folder of the tree; counts include sub-folders in the ``total_*`` fields."""

    path: str
    name: str
    photos: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    children: list["FolderNode"] = field(default_factory=list)
    total_photos: int = 0
    total_failed: int = 0

    def find(self, path: str) -> "FolderNode | None":
        if path == self.path:
            return self
        for c in self.children:
            if path == c.path or path.startswith(os.path.join(c.path, "")):
                return c.find(path)
        return None


SORT_KEYS: dict[str, Callable[[PhotoEntry], tuple]] = {
    "name": lambda e: (e.name.lower(), e.path),
    "date": lambda e: (e.date, e.name.lower(), e.path),
    "size": lambda e: (e.size, e.name.lower(), e.path),
}


def _inside(path: str, folder: str) -> bool:
    return path.startswith(os.path.join(folder, ""))


class CollectionBrowser:
    """A snapshot of a catalog's photos and failures, for the folder tree and the grid."""

    def __init__(self, catalog: CatalogStore):
        self.catalog = catalog
        self.reload()

    def reload(self) -> None:
        rows = self.catalog.query(
            "SELECT id, path, size, mtime_ns, width, height, taken FROM images ORDER BY id")
        self.photos: list[PhotoEntry] = []
        for i, blob, size, mtime_ns, w, h, taken in rows:
            p = decode_path(blob)
            folder, name = os.path.split(p)
            self.photos.append(PhotoEntry(p, name, folder, size, w, h, taken, mtime_ns / 1e9, i))
        self.failures: list[tuple[str, str]] = self.catalog.failures()
        self.roots = [p for _i, p in self.catalog.folders()]
        self._by_folder: dict[str, list[PhotoEntry]] = {}
        for e in self.photos:
            self._by_folder.setdefault(e.folder, []).append(e)

    # -- tree -----------------------------------------------------------------------------
    def tree(self) -> list[FolderNode]:
        """One node per collection folder, with every sub-folder holding photos or failures."""
        nodes: dict[str, FolderNode] = {}
        top: list[FolderNode] = []
        for root in self.roots:
            n = FolderNode(root, os.path.basename(root.rstrip(os.sep)) or root)
            nodes[root] = n
            top.append(n)

        def node_for(folder: str) -> FolderNode | None:
            if folder in nodes:
                return nodes[folder]
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            pnode = node_for(parent)
            if pnode is None:
                return None
            n = FolderNode(folder, os.path.basename(folder))
            pnode.children.append(n)
            nodes[folder] = n
            return n

        for folder, entries in self._by_folder.items():
            n = node_for(folder)
            if n is not None:
                n.photos += len(entries)
        for path, reason in self.failures:
            n = node_for(os.path.dirname(path))
            if n is not None:
                n.failed.append((path, reason))

        def total(n: FolderNode) -> None:
            n.children.sort(key=lambda c: c.name.lower())
            for c in n.children:
                total(c)
            n.total_photos = n.photos + sum(c.total_photos for c in n.children)
            n.total_failed = len(n.failed) + sum(c.total_failed for c in n.children)

        for n in top:
            total(n)
        return top

    # -- listings -------------------------------------------------------------------------
    def list_photos(self, folder: str | None = None, recursive: bool = False, sort: str = "name",
                    descending: bool = False, name_filter: str = "") -> list[PhotoEntry]:
        """Photos of ``folder`` (all photos when None), sorted by ``sort`` ('name', 'date', 'size')
        and filtered by a case-insensitive substring of the file name."""
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort {sort!r}; choose one of {', '.join(SORT_KEYS)}")
        if folder is None:
            entries = self.photos
        else:
            folder = os.path.abspath(folder)
            entries = list(self._by_folder.get(folder, []))
            if recursive:
                for f, es in self._by_folder.items():
                    if _inside(f, folder):
                        entries.extend(es)
        needle = name_filter.strip().lower()
        if needle:
            entries = [e for e in entries if needle in e.name.lower()]
        return sorted(entries, key=SORT_KEYS[sort], reverse=descending)

    def failures_in(self, folder: str, recursive: bool = False) -> list[tuple[str, str]]:
        """``(path, reason)`` of the files of ``folder`` that could not be indexed."""
        folder = os.path.abspath(folder)
        return [(p, r) for p, r in self.failures
                if os.path.dirname(p) == folder or (recursive and _inside(p, folder))]


def photo_details(path: str | os.PathLike) -> dict:
    """EXIF summary of one photo for the viewer: camera, date, upright size, file size, exposure.

    Missing or malformed EXIF gives missing keys, never an error (only an unreadable file raises).
    """
    from engine.imaging.metadata import read_header

    out: dict = {"size": os.path.getsize(path)}
    header = read_header(path)
    exif = header.exif
    out["width"], out["height"] = header.width, header.height
    make, model = str(exif.get(0x010F, "")).strip("\x00 "), str(exif.get(0x0110, "")).strip("\x00 ")
    if model and make and not model.lower().startswith(make.lower().split()[0]):
        model = f"{make} {model}"
    if model or make:
        out["camera"] = model or make
    if header.taken is not None:
        import time

        out["date"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(header.taken))
    exposure = _exposure_line(header.exif_ifd)
    if exposure:
        out["exposure"] = exposure
    return out


def _exposure_line(sub: dict) -> str:
    """``"1/250 s f/2.8 ISO 100 5.41 mm"`` from the Exif sub-IFD; what is missing is left out."""
    bits = []
    try:
        if sub.get(0x829A):
            t = float(sub[0x829A])
            bits.append(f"1/{round(1 / t)} s" if 0 < t < 1 else f"{t:g} s")
        if sub.get(0x829D):
            bits.append(f"f/{float(sub[0x829D]):.2g}")
        if sub.get(0x8827):
            iso = sub[0x8827]
            bits.append(f"ISO {iso[0] if isinstance(iso, tuple) else iso}")
        if sub.get(0x920A):
            bits.append(f"{float(sub[0x920A]):.3g} mm")  # rationals: 5.40625 mm reads as 5.41 mm
    except (TypeError, ValueError, ZeroDivisionError, IndexError):  # a malformed value: keep the rest
        pass
    return " ".join(bits)
