"""An archive's plan grows: a rerun of ``archive index`` lists the sources again, plans only
the photos no shard holds yet as new shards (finished shards untouched, gone and changed
files reported), describes only those and the rebuilt index finds them; a rerun with no
change plans nothing and leaves the index. RAW side-cars are one result in an archive's
search, as on the desktop.

The plan tests write empty ``.jpg`` files (a listing reads names and stats only) and fake
manifests; one archive is described on a local Ray instance for the rest (two Ray runs).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from engine.api import open_archive
from engine.archive.layout import ArchiveError, ArchiveInfo, ArchiveLayout
from engine.archive.merge import build_archive_index, index_is_current
from engine.archive.plan import grow_plan, list_sources, plan_archive
from engine.archive.runner import index_archive
from engine.cli import main as cli_main
from engine.descriptors.methods import create_method
from tests.conftest import make_photo
from tests.format_files import write_dng

SMALL = {"image_side": 128}


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _fake_finish(layout: ArchiveLayout, shard: int) -> None:
    """Commit ``shard`` as a worker would, with made-up descriptors (the plan tests need only
    the manifest's record of what was described)."""
    files = layout.read_plan(shard)
    photos = [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "hash": "0" * 32, "width": 1, "height": 1,
               "taken": None} for f in files]
    layout.commit_shard(shard, np.zeros((len(files), 4), np.float32), photos, [], {"host": "test", "pid": 0}, 0.0)


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_a_relisting_appends_only_unplanned_files_and_reports_gone_and_changed(tmp_path):
    src = tmp_path / "photos"
    for i in range(7):
        _touch(src / "a" / f"p{i}.jpg", b"x" * i)
    layout = ArchiveLayout(tmp_path / "archive")
    info = plan_archive(layout, [str(src)], create_method("mac", SMALL), None, 3)
    assert (info.shards, info.files, layout.planned_count(info, 2)) == (3, 7, 1)
    for shard in (0, 1):
        _fake_finish(layout, shard)
    plans = _snapshot(layout.dir / "plan")
    shards = _snapshot(layout.dir / "shards")

    first = layout.read_plan(0)
    os.unlink(first[0].path)  # gone from a finished shard
    Path(first[1].path).write_bytes(b"edited")  # changed after it was described
    os.utime(first[1].path, ns=(1, 1))
    _touch(src / "a" / "p6.jpg", b"edited too")  # changed, but its shard 2 is not described yet: not reported
    for name in ("new1.jpg", "new0.jpg"):
        _touch(src / "a" / name)
    for i in range(3):
        _touch(src / "b" / f"q{i}.jpg")
    _touch(src / "b" / "notes.txt")

    info, relisted = grow_plan(layout, info)
    assert (relisted.new, relisted.new_shards, relisted.first_new_shard) == (5, 2, 3)
    assert (relisted.gone, relisted.changed, relisted.unreadable, relisted.listed) == (1, 1, 0, 11)
    assert (info.shards, info.files, info.ignored) == (5, 12, 1)
    new = [f.path for s in (3, 4) for f in layout.read_plan(s)]
    planned = {f.path for s in range(3) for f in layout.read_plan(s)}
    assert new == [f.path for f in list_sources([str(src)])[0] if f.path not in planned]  # in walk order
    assert sorted(Path(p).name for p in new) == ["new0.jpg", "new1.jpg", "q0.jpg", "q1.jpg", "q2.jpg"]
    assert [layout.planned_count(info, s) for s in range(info.shards)] == [3, 3, 1, 3, 2]
    for name, before in plans.items():  # a planned shard's files never change, nor a finished shard
        assert _snapshot(layout.dir / "plan")[name] == before
    assert _snapshot(layout.dir / "shards") == shards
    assert layout.finished_shards(info.shards) == {0, 1}
    listing = json.loads(layout.listing_path.read_text())
    assert listing["gone"] == [first[0].path] and listing["changed"] == [first[1].path]
    assert ArchiveLayout(layout.dir).read_info() == info
    assert [(x["first_shard"], x["shards"], x["files"]) for x in info.listings] == [(0, 3, 7), (3, 2, 5)]

    again, nothing = grow_plan(layout, info)  # the same sources again: nothing new, the same report
    assert (nothing.new, nothing.new_shards, nothing.gone, nothing.changed) == (0, 0, 1, 1)
    assert (again.shards, again.files, again.listings) == (info.shards, info.files, info.listings)


def test_a_growth_killed_before_archive_json_leaves_the_recorded_plan(tmp_path, monkeypatch):
    src = tmp_path / "photos"
    for i in range(4):
        _touch(src / f"p{i}.jpg")
    layout = ArchiveLayout(tmp_path / "archive")
    info = plan_archive(layout, [str(src)], create_method("mac", SMALL), None, 2)
    for i in range(3):
        _touch(src / f"z{i}.jpg")
    recorded = layout.info_path.read_bytes()

    def killed(self, info):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ArchiveLayout, "write_info", killed)
        with pytest.raises(KeyboardInterrupt):
            grow_plan(layout, info)
    assert layout.info_path.read_bytes() == recorded and layout.plan_path(3).exists()  # a stray plan
    _touch(layout.manifest_path(3), b"{}")  # and a stray shard of that number
    os.unlink(src / "z2.jpg")  # the sources changed before the rerun
    info, relisted = grow_plan(ArchiveLayout(layout.dir), layout.read_info())
    assert (info.shards, relisted.new, relisted.gone) == (3, 2, 0)
    assert not layout.plan_path(3).exists() and not layout.manifest_path(3).exists()
    assert [Path(f.path).name for f in layout.read_plan(2)] == ["z0.jpg", "z1.jpg"]


def test_a_source_folder_gone_is_reported_not_fatal_and_other_options_are_still_refused(tmp_path):
    src = tmp_path / "photos"
    for i in range(3):
        _touch(src / "keep" / f"p{i}.jpg")
    other = tmp_path / "other"
    _touch(other / "o.jpg")
    layout = ArchiveLayout(tmp_path / "archive")
    info = plan_archive(layout, [str(src), str(other)], create_method("mac", SMALL), None, 2)
    (other / "o.jpg").unlink()
    other.rmdir()  # an unmounted share looks like this
    info = plan_archive(layout, [str(src), str(other)], None, None)  # the same sources: accepted
    info, relisted = grow_plan(layout, info)
    assert (relisted.new, relisted.gone, relisted.unreadable) == (0, 1, 1)
    assert info.listing_failed[0]["path"] == str(other) and info.files == 4  # still planned, as described
    with pytest.raises(ArchiveError, match="planned differently"):
        plan_archive(layout, [str(src)], None, None)


def test_an_archive_json_from_a_newer_version_is_refused_clearly(tmp_path):
    layout = ArchiveLayout(tmp_path)
    info = ArchiveInfo("mac", {}, None, "builtin", ["/x"], 10, 1, 1)
    data = json.loads(info.to_json())
    layout.info_path.write_text(json.dumps({**data, "future_field": 1}))
    with pytest.raises(ArchiveError, match="newer version"):
        layout.read_info()
    layout.info_path.write_text(json.dumps({k: v for k, v in data.items() if k not in ("listings", "listed")}))
    old = layout.read_info()  # written before plans could grow: one listing of all its shards
    assert old.plan_listings() == [{"first_shard": 0, "shards": 1, "files": 1, "listed": 0.0}]


# -- described on Ray -----------------------------------------------------------------------------

SHOT = 7


def _photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    make_photo(seed, (160, 120)).save(path, quality=88)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """An archive of 12 files (a DNG and its JPEG side-car among them) in 3 shards, indexed;
    then 4 photos added, one deleted, one edited, and the same command run again."""
    tmp = tmp_path_factory.mktemp("growth")
    photos = tmp / "photos"
    for i in range(10):
        _photo(photos / "roll0" / f"img{i:02d}.jpg", 300 + i)
    shot = make_photo(SHOT, (240, 180))
    write_dng(photos / "roll0" / "IMG_7.DNG", shot)
    shot.save(photos / "roll0" / "IMG_7.JPG", quality=90)
    archive = tmp / "archive"
    layout = ArchiveLayout(archive)
    first = index_archive(archive, [str(photos)], method="mac", overrides=SMALL, shard_size=5, workers=2)
    build_archive_index(archive)
    before = {"plan": _snapshot(archive / "plan"), "shards": _snapshot(archive / "shards")}

    added = [photos / "roll0" / "new0.jpg", photos / "roll0" / "new1.jpg", photos / "later" / "new2.jpg",
             photos / "later" / "new3.jpg"]
    for k, path in enumerate(added):
        _photo(path, 900 + k)
    gone = photos / "roll0" / "img03.jpg"
    gone.unlink()
    edited = photos / "roll0" / "img04.jpg"
    _photo(edited, 999)
    t0 = time.monotonic()
    second = index_archive(archive, [str(photos)], workers=2)
    second_s = time.monotonic() - t0
    built = build_archive_index(archive)
    return {"photos": photos, "archive": archive, "layout": layout, "first": first, "second": second,
            "second_s": second_s, "before": before, "added": added, "gone": gone, "edited": edited,
            "built": built, "shot": shot, "tmp": tmp}


def test_a_rerun_plans_and_describes_only_the_new_photos_and_search_finds_them(grown):
    layout, second = grown["layout"], grown["second"]
    assert (grown["first"].planned, grown["first"].shards) == (12, 3)
    assert (second.planned, second.new_shards, second.shards) == (4, 1, 4)
    assert (second.skipped, second.described, second.photos, second.failed) == (3, 1, 4, 0)
    r = second.relisting
    assert (r["new"], r["gone"], r["changed"], r["first_new_shard"]) == (4, 1, 1, 3)
    for kind, files in grown["before"].items():  # the first plan and its shards were not touched
        now = _snapshot(layout.dir / kind)
        assert {name: now[name] for name in files} == files
    assert sorted(p["path"] for p in layout.read_manifest(3).photos) == sorted(map(str, grown["added"]))
    assert grown["built"].photos == 12 + 4 and [s for s, _n in grown["built"].shard_rows] == [0, 1, 2, 3]
    col = open_archive(grown["archive"], device="cpu")
    for path in grown["added"]:
        assert col.search(path, top=1)[0].path == str(path)
    # the gone photo stays, by its record; the edited one keeps the descriptor that was described
    paths = [col.search_index().path(r) for r in range(len(col.search_index()))]
    assert str(grown["gone"]) in paths and "Not reachable" in col.unreachable_reason(str(grown["gone"]))
    assert paths.count(str(grown["edited"])) == 1
    described = {p["path"]: p["size"] for s in range(3) for p in layout.read_manifest(s).photos}
    assert described[str(grown["edited"])] != grown["edited"].stat().st_size
    st = col.status()
    assert st["planned_photos"] == 16 and st["listings"] == 2 and st["index"]["current"]
    assert st["last_listing"]["new"] == 4


def test_a_rerun_with_nothing_new_plans_nothing_and_keeps_the_index(grown, capsys):
    archive = grown["archive"]
    pointer = (archive / "index.json").read_bytes()
    t0 = time.monotonic()
    assert cli_main(["archive", "index", str(grown["photos"]), "--out", str(archive), "--json"]) == 0
    seconds = time.monotonic() - t0
    out = json.loads(capsys.readouterr().out)
    assert (out["planned"], out["new_shards"], out["described"], out["skipped"], out["workers"]) == (0, 0, 0, 4, 0)
    assert out["relisting"]["new"] == 0 and out["index"]["rebuilt"] is False
    assert (archive / "index.json").read_bytes() == pointer
    print(f"rerun with nothing new: {seconds:.2f} s for {out['relisting']['listed']} photos "
          f"(describing rerun: {grown['second_s']:.1f} s)")
    report = index_archive(archive, relist=False)  # --no-relist: no listing at all
    assert report.relisting is None and report.described == 0
    assert index_is_current(ArchiveLayout(archive), 4)


def test_an_archive_shows_a_raw_and_its_sidecar_as_one_result(grown):
    query = grown["tmp"] / "query.png"
    grown["shot"].save(query)
    assert grown["built"].sidecars == 1
    col = open_archive(grown["archive"], device="cpu")
    names = [Path(r.path).name for r in col.search(query, top=16)]
    assert names[0] == "IMG_7.DNG" and "IMG_7.JPG" not in names
    assert len(names) == 15  # every other photo is still a result
    folder = grown["archive"] / grown["built"].folder
    (folder / "sidecars.npy").unlink()  # an index built before side-cars were stored: found at open
    names = [Path(r.path).name for r in open_archive(grown["archive"], device="cpu").search(query, top=16)]
    assert names[0] == "IMG_7.DNG" and "IMG_7.JPG" not in names
