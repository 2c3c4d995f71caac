"""Browsing from the catalog: folder tree counts, failures per folder, sorting, filtering, EXIF."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.services.browse import CollectionBrowser, photo_details
from engine.store.catalog import CatalogStore, NewImage


def _catalog(tmp_path: Path):
    """A catalog of root/{a.jpg, B.jpg, sub/c.jpg, sub/deep/d.jpg} + a failure in sub/."""
    root = tmp_path / "photos"
    (root / "sub" / "deep").mkdir(parents=True)
    cat = CatalogStore(tmp_path / "cat")
    fid = cat.add_folder(root)
    # name, size, mtime (s), EXIF taken (s) or None
    spec = [("a.jpg", 300, 5_000, 2_000.0), ("B.jpg", 100, 1_000, None),
            ("sub/c.jpg", 200, 3_000, 4_000.0), ("sub/deep/d.jpg", 50, 9_000, None)]
    recs = []
    for name, size, mtime, taken in spec:
        p = root / name
        p.write_bytes(b"x" * size)
        recs.append(NewImage(str(p), size, mtime * 10**9, f"h{name}", 64, 48, taken, fid))
    cat.add_batch("mac", recs, np.ones((len(recs), 4), np.float32))
    cat.record_failures([(str(root / "sub" / "broken.jpg"), fid, 3, 0, "the file is truncated")])
    return cat, root


def test_tree_counts_photos_per_folder_and_with_subfolders(tmp_path):
    cat, root = _catalog(tmp_path)
    [top] = CollectionBrowser(cat).tree()
    assert top.path == str(root) and (top.photos, top.total_photos) == (2, 4)
    [sub] = top.children
    assert sub.name == "sub" and (sub.photos, sub.total_photos) == (1, 2)
    assert sub.failed == [(str(root / "sub" / "broken.jpg"), "the file is truncated")]
    assert top.total_failed == 1 and sub.children[0].total_photos == 1
    assert top.find(str(root / "sub" / "deep")).photos == 1


def test_listing_sorts_by_name_date_taken_with_mtime_fallback_and_size(tmp_path):
    cat, root = _catalog(tmp_path)
    b = CollectionBrowser(cat)
    names = lambda es: [e.name for e in es]
    assert names(b.list_photos(str(root), sort="name")) == ["a.jpg", "B.jpg"]  # case-insensitive
    # a: taken 2000 (mtime 5000 ignored); B: no EXIF, mtime 1000; c: taken 4000; d: mtime 9000
    assert names(b.list_photos(str(root), recursive=True, sort="date")) == ["B.jpg", "a.jpg", "c.jpg", "d.jpg"]
    assert names(b.list_photos(str(root), recursive=True, sort="size", descending=True)) == ["a.jpg", "c.jpg", "B.jpg", "d.jpg"]
    with pytest.raises(ValueError):
        b.list_photos(sort="colour")


def test_listing_filters_by_name_and_lists_failures_of_a_folder(tmp_path):
    cat, root = _catalog(tmp_path)
    b = CollectionBrowser(cat)
    assert [e.name for e in b.list_photos(str(root), recursive=True, name_filter="C.J")] == ["c.jpg"]
    assert b.list_photos(str(root), name_filter="zzz") == []
    assert b.failures_in(str(root)) == []
    assert len(b.failures_in(str(root), recursive=True)) == 1
    assert b.failures_in(str(root / "sub"))[0][1] == "the file is truncated"


def test_photo_details_reads_camera_date_and_upright_size(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 5D"
    exif[0x0112] = 6  # rotated: stored 60x40, shown 40x60
    exif.get_ifd(0x8769)[0x9003] = "2021:07:14 10:30:00"
    p = tmp_path / "x.jpg"
    Image.new("RGB", (60, 40), "red").save(p, exif=exif)
    d = photo_details(p)
    assert d["camera"] == "Canon EOS 5D" and d["date"] == "2021-07-14 10:30"
    assert (d["width"], d["height"]) == (40, 60) and d["size"] == os.path.getsize(p)
    q = tmp_path / "plain.png"
    Image.new("RGB", (10, 10)).save(q)
    assert "camera" not in photo_details(q) and "date" not in photo_details(q)
