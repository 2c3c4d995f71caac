"""A RAW and its JPEG side-car (same folder, same name) are one exposure: one photo in search
results, an exact-tier duplicate pair whose suggested keep is the RAW."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.api import Collection
from engine.imaging.formats import raw_sidecar_pairs
from engine.services.duplicates import DuplicateConfig, DuplicateFinder, PhotoInfo
from tests.conftest import make_photo
from tests.format_files import write_dng


def test_sidecar_pairs_need_the_same_folder_and_name_and_one_raw():
    paths = ["/a/IMG_1.CR2", "/a/img_1.jpg", "/b/IMG_1.JPG", "/a/IMG_2.jpg", "/a/IMG_2.png", "/a/IMG_3.NEF"]
    assert raw_sidecar_pairs(paths) == [(0, 1)]


def _info(k, path, w, h, digest):
    return PhotoInfo(path, k, 1000 * (k + 1), w, h, None, 1000.0, digest)


def test_raw_and_sidecar_are_an_exact_pair_and_the_raw_is_kept_even_when_smaller():
    infos = [_info(0, "/p/IMG_7.jpg", 400, 300, "h0"), _info(1, "/p/IMG_7.CR2", 200, 150, "h1"),
             _info(2, "/p/other.jpg", 400, 300, "h2")]
    vectors = np.eye(3, dtype=np.float32)  # unrelated descriptors: only the name pairs them
    groups = DuplicateFinder(infos, vectors, DuplicateConfig(threshold=0.9)).groups()
    assert len(groups) == 1
    g = groups[0]
    assert g.tier == "exact" and g.removable
    assert g.keep.path == "/p/IMG_7.CR2" and g.paths == ["/p/IMG_7.CR2", "/p/IMG_7.jpg"]
    assert "side-car" in g.evidence and "RAW" in g.rules.reason(g.members[0], g.members[1])


def test_search_shows_a_raw_and_its_sidecar_as_one_result(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shot = make_photo(7, (240, 180))
    write_dng(photos / "IMG_7.DNG", shot)
    shot.save(photos / "IMG_7.JPG", quality=90)
    for k in range(4):
        make_photo(20 + k, (240, 180)).save(photos / f"other{k}.jpg", quality=90)
    col = Collection.open(tmp_path / "cat", device="cpu")
    try:
        col.index(method="rmac", folders=[str(photos)], overrides={"image_side": 160})
        assert len(col.catalog.images()) == 6  # both files are indexed (and kept in sync)
        query = tmp_path / "query.png"
        shot.save(query)
        names = [Path(r.path).name for r in col.search(query, method="rmac", top=10, rerank="none")]
        assert names[0] == "IMG_7.DNG" and "IMG_7.JPG" not in names
        assert sorted(names[1:]) == [f"other{k}.jpg" for k in range(4)]  # nothing else hidden
    finally:
        col.close()
