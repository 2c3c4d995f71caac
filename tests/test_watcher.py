"""Folder watching (issue 10): new, changed, deleted photos by stat and content hash."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engine.api import Collection
from engine.store.catalog import CatalogStore, NewImage, content_hash
from engine.indexing.indexer import Indexer, IndexReport
from engine.indexing.watcher import FolderChanges, FolderWatcher
from tests.conftest import make_photo


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _register(cat: CatalogStore, fid: int, paths) -> None:
    """Put files in the catalog as indexed (fake descriptors; the watcher never reads them)."""
    cat.ensure_method("m", {})
    recs = []
    for p in paths:
        st = os.stat(p)
        recs.append(NewImage(str(p), st.st_size, st.st_mtime_ns, content_hash(p), 8, 8, None, fid))
    cat.add_batch("m", recs, np.ones((len(recs), 2), np.float32))


def _edit_keeping_size_and_mtime(path: Path, seed: int) -> None:
    """What a careful tool does: new pixels, same byte size (BMP), mtime restored."""
    st = os.stat(path)
    make_photo(seed, (160, 120)).save(path, "BMP")
    assert os.stat(path).st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def watched(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    paths = [root / f"{i}.bmp" for i in range(4)] + [root / "sub" / "s.bmp"]
    for i, p in enumerate(paths):
        make_photo(i, (160, 120)).save(p, "BMP")
    cat = CatalogStore(tmp_path / "cat")
    fid = cat.add_folder(root)
    _register(cat, fid, paths)
    return cat, root, paths


def test_an_unchanged_folder_reports_nothing(watched):
    cat, _root, _paths = watched
    changes = FolderWatcher(cat, hash_budget=None).rescan()
    assert not changes and changes == FolderChanges()


def test_new_changed_deleted_and_touched_photos_are_told_apart(watched):
    cat, root, paths = watched
    make_photo(50, (160, 120)).save(root / "sub" / "new.bmp", "BMP")
    paths[0].unlink()
    make_photo(51, (200, 100)).save(paths[1], "BMP")  # edited: other size
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched only
    (root / "notes.txt").write_text("not a photo")
    ch = FolderWatcher(cat, hash_budget=None).rescan()
    assert ch.new == (str(root / "sub" / "new.bmp"),)
    assert ch.deleted == (str(paths[0]),)
    assert ch.changed == (str(paths[1]),)
    assert ch.touched == (str(paths[2]),) and ch.verify_paths == ()
    assert bool(ch) and ch.summary() == "1 new, 1 changed, 1 deleted"


def test_an_edit_that_restored_mtime_and_size_is_found_by_content_hash(watched):
    cat, _root, paths = watched
    _edit_keeping_size_and_mtime(paths[3], 77)
    ch = FolderWatcher(cat, hash_budget=None).rescan()
    assert ch.changed == ch.verify_paths == (str(paths[3]),)
    assert ch.new == ch.deleted == ()


def test_the_hash_budget_verifies_every_photo_within_a_few_rescans(watched):
    cat, _root, paths = watched
    _edit_keeping_size_and_mtime(paths[4], 78)
    w = FolderWatcher(cat, hash_budget=2)
    found = [w.rescan().verify_paths for _ in range(3)]  # 5 files, 2 per rescan -> 3 rescans
    assert sum(1 for f in found if f == (str(paths[4]),)) == 1
    assert all(f in ((), (str(paths[4]),)) for f in found)


def test_a_missing_folder_is_reported_and_its_photos_are_not_called_deleted(watched):
    cat, root, _paths = watched
    root.rename(root.with_name("unplugged"))
    ch = FolderWatcher(cat).rescan()
    assert ch.missing_folders == (str(root),) and ch.deleted == () and not ch


def test_a_failed_photo_is_new_again_only_after_it_changes(watched):
    cat, root, _paths = watched
    bad = root / "broken.bmp"
    bad.write_bytes(b"not an image")
    st = os.stat(bad)
    cat.record_failures([(str(bad), cat.folders()[0][0], st.st_size, st.st_mtime_ns, "not a recognised image format")])
    assert FolderWatcher(cat).rescan().new == ()
    make_photo(3, (40, 30)).save(bad, "BMP")
    assert FolderWatcher(cat).rescan().new == (str(bad),)


def test_indexer_and_watcher_classify_changes_alike(watched):
    # Every state a file can be in, at once; the watcher's report and the indexer's scan of the
    # same catalog must agree file by file (both ask engine.indexing.changes.classify_file).
    cat, root, paths = watched
    fid = cat.folders()[0][0]
    paths[0].unlink()                                                  # deleted
    make_photo(51, (200, 100)).save(paths[1], "BMP")                   # changed: other size
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))    # touched only
    _edit_keeping_size_and_mtime(paths[3], 77)                         # changed in place
    make_photo(52, (160, 120)).save(root / "new.bmp", "BMP")           # new
    for name in ("still_broken.bmp", "fixed.bmp"):
        (root / name).write_bytes(b"not an image")
        st = os.stat(root / name)
        cat.record_failures([(str(root / name), fid, st.st_size, st.st_mtime_ns, "not a recognised image format")])
    make_photo(53, (40, 30)).save(root / "fixed.bmp", "BMP")           # failed before, changed since

    ch = FolderWatcher(cat, hash_budget=None).rescan()
    assert ch.new == (str(root / "fixed.bmp"), str(root / "new.bmp"))
    assert ch.changed == (str(paths[1]), str(paths[3])) and ch.touched == (str(paths[2]),)
    assert ch.deleted == (str(paths[0]),)

    report = IndexReport()
    indexer = Indexer(cat, SimpleNamespace(name="m"), extractor=None, verify_hashes=True)
    todo, gone, errors = indexer.scan(cat.folders(), report)
    assert sorted(f.path for f, _fid in todo) == sorted(ch.new + ch.changed)
    assert tuple(gone) == ch.deleted and errors == []
    assert report.unchanged == len(ch.touched) + 1  # the touched photo and paths[4]
    assert report.failed == [(str(root / "still_broken.bmp"), "unchanged since it failed before")]


def test_photos_under_a_sub_folder_that_cannot_be_listed_are_not_called_deleted(watched, monkeypatch):
    # The watcher and the indexer keep them alike (engine.indexing.changes.vanished); were the
    # watcher to call them deleted, every rescan would ask for an index run that removes nothing.
    import engine.indexing.indexer as indexer_mod

    cat, root, paths = watched
    real = os.scandir

    def scandir(path):
        if os.fspath(path) == str(root / "sub"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(indexer_mod.os, "scandir", scandir)
    paths[0].unlink()
    assert FolderWatcher(cat, hash_budget=None).rescan().deleted == (str(paths[0]),)
    _todo, gone, errors = Indexer(cat, SimpleNamespace(name="m"), extractor=None).scan(cat.folders(), IndexReport())
    assert gone == [str(paths[0])] and [r for _p, _fid, r in errors] == ["folder cannot be listed: Permission denied"]


def test_poll_rescans_after_the_interval_or_a_debounced_event():
    clock = FakeClock()
    cat = _EmptyCatalog()
    w = FolderWatcher(cat, interval_s=60, debounce_s=2, clock=clock)
    assert w.poll() is not None and cat.scans == 1  # the first poll always scans
    clock.t += 30
    assert w.poll() is None
    w.notify("/some/photo.jpg")
    clock.t += 1
    w.notify("/some/other.jpg")  # a burst of events: wait for quiet
    clock.t += 1.5
    assert w.poll() is None
    clock.t += 1
    assert w.poll() is not None and cat.scans == 2
    clock.t += 59
    assert w.poll() is None
    clock.t += 1
    assert w.poll() is not None and cat.scans == 3


class _EmptyCatalog:
    """A catalog with no folders that counts rescans."""

    def __init__(self):
        self.scans = 0

    def folders(self):
        self.scans += 1
        return []


def test_indexing_the_reported_paths_recomputes_an_in_place_edit(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        make_photo(i, (160, 120)).save(root / f"{i}.bmp", "BMP")
    col = Collection.open(tmp_path / "cat", device="cpu")
    col.index(method="mac", folders=[str(root)], overrides={"image_side": 64})
    target = root / "1.bmp"
    before = col.catalog.load_descriptors("mac")
    _edit_keeping_size_and_mtime(target, 90)
    plain = col.index(method="mac", overrides={"image_side": 64})
    assert plain.indexed == 0  # size and mtime alone cannot see this edit
    ch = FolderWatcher(col.catalog).rescan()
    assert ch.verify_paths == (str(target),)
    r = col.index(method="mac", overrides={"image_side": 64}, verify_hashes=ch.verify_paths)
    assert (r.indexed, r.unchanged) == (1, 2)
    after = col.catalog.load_descriptors("mac")
    row = before[1].index(str(target))
    assert not np.allclose(after[2][after[1].index(str(target))], before[2][row])
    assert col.catalog.image_by_path(target).hash == content_hash(target)
    assert not FolderWatcher(col.catalog).rescan()
