"""Duplicate finder: kNN graph, tiers (exact / verified near / similar), grouping around the keep,
keep suggestion, safe moves, CLI. (Verification itself: tests/test_duplicates_verify.py.)"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine.api import Collection
from engine.services.duplicates import (DEFAULT_THRESHOLD, DuplicateConfig, DuplicateFinder, PhotoInfo, SimilarityGraph,
                               move_to_folder, pairs_of, sort_keep_first, suggested_moves)
from engine.services.near_duplicate import PairCheck
from tests.conftest import make_photo, write_copies_folder


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cluster_vectors():
    """Two tight clusters {0,1,2} and {3,4}, a loose neighbour 5 of cluster A, and a loner 6."""
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(3, 64)))
    a, b, c = base
    vecs = [a, a + 0.01 * rng.normal(size=64), a + 0.01 * rng.normal(size=64),
            b, b + 0.01 * rng.normal(size=64), a + 0.9 * c, c]
    return _unit(vecs)


def _info(k, w=100, h=100, taken=None, mtime=1000.0, size=10, digest=None):
    return PhotoInfo(f"/p/{k}.jpg", k, size, w, h, taken, mtime, digest or f"h{k}")


def test_graph_components_regroup_at_any_threshold_without_recomputing():
    v = _cluster_vectors()
    g = SimilarityGraph(v, k=4, floor=0.3)
    sim = v @ v.T
    strict = sorted(sorted(c) for c in g.components(0.95))
    assert strict == [[0, 1, 2], [3, 4]]
    loose_t = float(sim[0, 5]) - 0.01  # 5 joins cluster A just below its similarity to 0
    loose = sorted(sorted(c) for c in g.components(loose_t))
    assert [0, 1, 2, 5] in loose and [6] not in loose
    assert g.components(0.999) == []
    with pytest.raises(ValueError):
        g.components(0.1)


def test_graph_matches_brute_force_pairs():
    rng = np.random.default_rng(1)
    v = _unit(rng.normal(size=(40, 8)))
    g = SimilarityGraph(v, k=39, floor=0.0)
    sim = v @ v.T
    t = 0.6
    brute = {(i, j) for i in range(40) for j in range(i + 1, 40) if sim[i, j] >= t}
    got = {(int(i), int(j)) for i, j, s in zip(g.i, g.j, g.s) if s >= t}
    assert got == brute


def test_keep_suggestion_is_largest_resolution_then_larger_file_then_oldest():
    small_old = _info(1, 100, 100, taken=10.0)
    big_new = _info(2, 200, 200, taken=50.0)
    big_old = _info(3, 200, 200, taken=None, mtime=20.0)  # no EXIF: falls back to mtime
    big_new_larger = _info(4, 200, 200, taken=60.0, size=99)
    order = sort_keep_first([small_old, big_new, big_old, big_new_larger])
    assert [p.image_id for p in order] == [4, 3, 2, 1]


def test_exact_tier_groups_identical_hashes_whatever_the_threshold():
    v = _unit(np.eye(4) + 0.0)  # all orthogonal: no near duplicates
    infos = [_info(0, digest="same"), _info(1, digest="same"), _info(2), _info(3)]
    f = DuplicateFinder(infos, v, DuplicateConfig(threshold=0.9))
    groups = f.groups()
    assert len(groups) == 1 and groups[0].exact and sorted(groups[0].paths) == ["/p/0.jpg", "/p/1.jpg"]
    assert groups[0].removable and groups[0].reason.startswith("identical files")
    assert DuplicateFinder(infos, v, DuplicateConfig(exact=False)).groups() == []


class StubVerifier:
    """Says "the same photo" for the pairs it is given, "another shot" for the others."""

    def __init__(self, same: set[tuple[int, int]]):
        from engine.services.near_duplicate import NearDuplicateConfig

        self.config = NearDuplicateConfig()
        self.same = same
        self.asked: list[tuple[int, int]] = []

    def check(self, a, b):
        i, j = sorted((int(Path(a).stem), int(Path(b).stem)))
        self.asked.append((i, j))
        ok = (i, j) in self.same
        return PairCheck(ok, "" if ok else "pixels", 50, 0.9, 1.0, 1.0, 0.5, 0.95 if ok else 0.3)


def test_near_groups_come_from_verified_pairs_and_similar_ones_are_never_removable():
    v = _cluster_vectors()[:5]  # {0,1,2} and {3,4} are close in descriptor space
    infos = [_info(0, 50, 50), _info(1, 400, 300), _info(2, 400, 300, taken=5.0), _info(3), _info(4)]
    ver = StubVerifier({(0, 2), (1, 2)})  # 0 and 1 are edited copies of 2; 3 and 4 are two shots
    groups = DuplicateFinder(infos, v, DuplicateConfig(threshold=0.95), verifier=ver).groups()
    near = [g for g in groups if g.tier == "near"]
    similar = [g for g in groups if g.tier == "similar"]
    assert len(near) == 1 and near[0].keep.image_id == 2 and set(near[0].others) == {"/p/0.jpg", "/p/1.jpg"}
    assert near[0].removable and near[0].reason.startswith("oldest")  # 1 and 2 tie on resolution and size
    assert len(similar) == 1 and sorted(similar[0].paths) == ["/p/3.jpg", "/p/4.jpg"] and not similar[0].removable
    assert [p for _g, ps in suggested_moves(groups) for p in ps] == near[0].others  # similar: never moved


def test_a_chain_of_verified_pairs_only_groups_photos_verified_against_the_keep():
    v = _cluster_vectors()[:3]
    infos = [_info(0, 400, 300), _info(1, 300, 200), _info(2, 200, 100)]
    ver = StubVerifier({(0, 1), (1, 2)})  # 2 looks like 1 but is not the photo 0 is
    groups = [g for g in DuplicateFinder(infos, v, DuplicateConfig(threshold=0.99), verifier=ver).groups()
              if g.removable]
    assert [sorted(g.paths) for g in groups] == [["/p/0.jpg", "/p/1.jpg"]]
    assert (0, 2) in ver.asked  # the keep was checked against 2 before grouping it


def test_pairs_of_counts_every_pair_inside_groups():
    assert pairs_of([[3, 1, 2], [5, 4]]) == {(1, 2), (1, 3), (2, 3), (4, 5)}


def test_move_to_folder_never_overwrites_and_deletes_nothing(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    (src / "a" / "x.jpg").write_bytes(b"AAA")
    (src / "b" / "x.jpg").write_bytes(b"BBB")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x.jpg").write_bytes(b"already here")
    moved = move_to_folder([src / "a" / "x.jpg", src / "b" / "x.jpg", src / "missing.jpg"], dest)
    assert len(moved) == 2
    contents = sorted(p.read_bytes() for p in dest.iterdir())
    assert contents == [b"AAA", b"BBB", b"already here"]
    assert not (src / "a" / "x.jpg").exists() and not (src / "b" / "x.jpg").exists()
    assert {Path(d).name for _s, d in moved} == {"x (1).jpg", "x (2).jpg"}


def _dup_folder(root: Path) -> Path:
    """4 scenes, each with a 75 % copy, a quality-80 copy and a byte copy; 4 unrelated scenes."""
    return write_copies_folder(root)


def test_collection_duplicates_group_the_copies_and_the_cli_prints_them(tmp_path, capsys):
    photos = _dup_folder(tmp_path / "photos")
    cat = tmp_path / "cat"
    col = Collection.open(cat)
    col.index(method="rmac", folders=[str(photos)], overrides={"image_side": 256})
    # Generated scenes are more alike than real photos (same generator: 0.76-0.90 between
    # unrelated scenes), so this test uses a stricter threshold than the default.
    cfg = DuplicateConfig(threshold=0.93)
    groups = [g for g in DuplicateFinder.from_collection(col, config=cfg).groups() if g.removable]
    assert all(g.tier == "near" for g in groups)  # each scene: its resized, re-encoded and byte copies
    by_scene = {}
    for g in groups:
        for p in g.paths:
            by_scene.setdefault(Path(p).name.split("_")[0].split(".")[0], set()).add(id(g))
    for i in range(4):
        assert len(by_scene[f"scene{i}"]) == 1, f"scene{i} copies split over groups"
    grouped = {Path(p).name for g in groups for p in g.paths}
    assert {f"scene{i}.jpg" for i in range(4)} <= grouped
    assert not any(n.startswith("other") for n in grouped)
    for g in groups:  # the keep suggestion is a full-size copy, never the 75 % or re-encoded one
        assert g.keep.pixels == max(m.pixels for m in g.members)
        assert Path(g.keep.path).name.endswith((".jpg", "_same.jpg")) and "_small" not in g.keep.path
        assert "_q80" not in g.keep.path
    # A folder restriction only sees that folder's photos.
    sub = DuplicateFinder.from_collection(col, folder=photos / "copies", config=cfg).groups()
    assert sub and all(Path(p).parent.name == "copies" for g in sub for p in g.paths)

    from engine.cli import main

    assert main(["duplicates", "--catalog", str(cat), "--threshold", "0.93", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"exact", "near", "similar", "counts"}
    assert len(out["near"]) == 4 and all(g["tier"] == "near" and g["keep"] and g["keep_reason"] for g in out["near"])
    assert out["counts"]["near"]["could_go"] == 12 and all(g["keep"] is None for g in out["similar"])
    assert all(m["folder"] == os.path.dirname(m["path"]) for g in out["near"] for m in g["members"])
    # "Not a duplicate" from the command line is remembered.
    a, b = out["near"][0]["members"][0]["path"], out["near"][0]["members"][1]["path"]
    assert main(["duplicates", "--catalog", str(cat), "--threshold", "0.93", "--not-duplicates", a, b,
                 "--keep-order", "oldest,resolution", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert not any(a in [m["path"] for m in g["members"]] and b in [m["path"] for m in g["members"]]
                   for t in ("exact", "near") for g in again[t])
    assert main(["duplicates", "--catalog", str(cat), "--threshold", "1.5"]) == 2
    assert main(["duplicates", "--catalog", str(cat), "--keep-order", "prettiest"]) == 2


def test_threshold_rule_keeps_the_measured_default_when_edits_score_high_and_calibrates_otherwise():
    from engine.services.duplicate_threshold import choose_threshold

    high = choose_threshold([0.80, 0.86, 0.95, 0.97, 0.99])  # median 0.95: R-MAC-like scores
    assert high.threshold == DEFAULT_THRESHOLD and not high.calibrated and high.floor == 0.5
    low = choose_threshold([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85])  # median 0.45
    assert low.calibrated and low.threshold == 0.25  # catches 3 in 4 of the edits
    assert sum(v >= low.threshold for v in low.edit_similarities) / 9 >= 0.75
    assert low.floor == 0.01 and "calibrated for cluster-mac" in low.describe("cluster-mac")
    assert choose_threshold([]).threshold == DEFAULT_THRESHOLD  # nothing measurable: the default


def test_light_edits_are_a_small_recompressed_copy_a_crop_and_a_brighter_copy():
    from engine.services.duplicate_threshold import light_edits

    img = make_photo(7, (320, 240))
    small, crop, bright = light_edits(img)
    assert small.size == (160, 120) and crop.size == (304, 228) and bright.size == img.size
    assert np.asarray(bright, np.float32).mean() > np.asarray(img, np.float32).mean() + 5


def test_default_threshold_is_calibrated_for_whitened_cluster_mac_and_measured_once_per_indexing(tmp_path, monkeypatch):
    import engine.services.duplicate_threshold as dt

    photos = _dup_folder(tmp_path / "photos")
    col = Collection.open(tmp_path / "cat")
    col.index(method="rmac", folders=[str(photos)], overrides={"image_side": 256})
    rmac = dt.duplicate_threshold(col, "rmac")
    assert not rmac.calibrated and rmac.threshold == DEFAULT_THRESHOLD  # edits score high under R-MAC
    col.index(method="cluster-mac", overrides={"image_side": 160, "tap": "stage7", "whiten": True})
    calls = []
    measure = dt.measure_edit_similarities
    monkeypatch.setattr(dt, "measure_edit_similarities", lambda *a, **k: calls.append(1) or measure(*a, **k))
    choice = dt.duplicate_threshold(col, "cluster-mac")
    # Per-cluster whitening (off by default since issue 16, on here): a lightly edited copy
    # scores far below 0.87, so 0.87 would find nothing.
    assert choice.calibrated and choice.threshold < 0.6 and len(choice.edit_similarities) == 3 * 8
    assert dt.duplicate_threshold(col, "cluster-mac") == choice and len(calls) == 1  # stored
    (photos / "other0.jpg").unlink()
    col.index(method="cluster-mac", overrides={"image_side": 160, "tap": "stage7", "whiten": True})  # new generation
    dt.duplicate_threshold(col, "cluster-mac")
    assert len(calls) == 2
    # At the calibrated threshold the copies of a scene are found together.
    assert choice.candidate <= choice.threshold
    groups = DuplicateFinder.from_collection(col, "cluster-mac", config=choice.config()).groups()
    near = [g for g in groups if g.tier == "near"]
    assert near and all(len({Path(p).name.split("_")[0].split(".")[0] for p in g.paths}) == 1 for g in near)
    col.close()


def test_edit_similarities_pass_over_a_photo_deleted_since_indexing(tmp_path):
    import engine.services.duplicate_threshold as dt

    photos = _dup_folder(tmp_path / "photos")
    col = Collection.open(tmp_path / "cat")
    try:
        col.index(method="rmac", folders=[str(photos)], overrides={"image_side": 128})
        n = len(col.search_index("rmac").paths)
        (photos / "other0.jpg").unlink()  # the catalog still lists it
        assert len(dt.measure_edit_similarities(col, "rmac", photos=n)) == 3 * (n - 1)
    finally:
        col.close()
