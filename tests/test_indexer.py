"""Indexing: incremental updates (touch, modify, delete), cancel, resume after SIGKILL."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.api import Collection
from engine.descriptors.methods import create_method
from engine.errors import LookalikeError
from engine.indexing.indexer import walk_images
from tests.conftest import make_photo

SMALL = {"image_side": 128}
REPO = Path(__file__).resolve().parents[1]


def _index(col, **kw):
    return col.index(method="mac", overrides=SMALL, **kw)


def test_walk_skips_hidden_and_system_folders_and_matches_extensions_case_insensitively(tmp_path):
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "@eaDir").mkdir()
    (tmp_path / "sub").mkdir()
    for p in [".hidden/a.jpg", "@eaDir/b.jpg", "sub/C.JPG", "d.Png", "notes.txt"]:
        (tmp_path / p).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # a symlink loop must not hang
    found = list(walk_images(tmp_path))
    images = sorted(os.path.relpath(f.path, tmp_path) for f in found if not isinstance(f, tuple))
    others = [os.path.basename(f[0]) for f in found if isinstance(f, tuple)]
    assert images == ["d.Png", "sub/C.JPG"]
    assert others == ["notes.txt"]


def test_incremental_index_touch_modify_delete(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "cat", device="cpu")
    r1 = _index(col, folders=[str(photo_folder)])
    assert (r1.indexed, r1.unchanged, r1.removed, r1.failed) == (12, 0, 0, [])
    ids1, paths1, desc1 = col.catalog.load_descriptors("mac")

    # touch only: same content, new mtime -> nothing recomputed
    t = photo_folder / "scene0.jpg"
    os.utime(t, ns=(time.time_ns(), time.time_ns() + 10**9))
    # modify: new content
    make_photo(100).save(photo_folder / "scene1.jpg", quality=90)
    # delete
    (photo_folder / "trip" / "scene2_copy.jpg").unlink()
    # add
    make_photo(200).save(photo_folder / "trip" / "new.jpg")
    r2 = _index(col)
    assert (r2.indexed, r2.unchanged, r2.removed) == (2, 10, 1)
    ids2, paths2, desc2 = col.catalog.load_descriptors("mac")
    assert len(paths2) == 12 and len(set(paths2)) == 12
    old = dict(zip(paths1, desc1))
    new = dict(zip(paths2, desc2))
    np.testing.assert_array_equal(new[str(t)], old[str(t)])
    assert not np.allclose(new[str(photo_folder / "scene1.jpg")], old[str(photo_folder / "scene1.jpg")])
    r3 = _index(col)
    assert (r3.indexed, r3.unchanged) == (0, 12)
    assert col.catalog.check() == []


def test_search_finds_the_altered_copy_first(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "cat", device="cpu")
    col.index(method="rmac", folders=[str(photo_folder)], overrides={"image_side": 256})
    hits = 0
    for i in range(6):
        res = col.search(photo_folder / f"scene{i}.jpg", top=2, exclude_query=True, rerank="none")
        hits += res[0].path.endswith(f"scene{i}_copy.jpg")
    assert hits >= 5
    res = col.search(photo_folder / "scene0.jpg", top=3, rerank="none")  # descriptor scores
    assert res[0].path.endswith("scene0.jpg") and res[0].score == pytest.approx(1.0, abs=1e-4)
    assert [r.score for r in res] == sorted((r.score for r in res), reverse=True)


def test_query_from_outside_the_collection_is_described_on_the_fly(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "cat", device="cpu")
    _index(col, folders=[str(photo_folder)])
    outside = tmp_path / "q.jpg"
    shutil.copy(photo_folder / "scene3.jpg", outside)
    res = col.search(outside, top=1, rerank="none")
    assert res[0].path.endswith("scene3.jpg") and res[0].score > 0.99


def test_warm_up_loads_model_and_search_index_before_the_first_query(tmp_path, photo_folder):
    from engine import api

    col = Collection.open(tmp_path / "cat", device="cpu")
    col.warm_up("mac")  # empty collection: the model loads, no search index yet
    assert "mac" not in col._search
    _index(col, folders=[str(photo_folder)])
    col.warm_up("mac")
    idx = col._search["mac"]
    assert len(idx) == len(col.catalog.has_descriptor("mac")) > 0
    loaded = dict(api._extractors)
    col.search(photo_folder / "scene1.jpg", method="mac", top=1)
    assert col._search["mac"] is idx and api._extractors == loaded  # nothing loaded again


def test_cancel_stops_between_batches_and_a_rerun_finishes(tmp_path, photo_folder):
    col = Collection.open(tmp_path / "cat", device="cpu")
    cancel = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.done)
        if p.phase == "indexing" and p.done >= 4:
            cancel.set()

    r = col.index(method="mac", folders=[str(photo_folder)], overrides=SMALL, progress=progress, cancel=cancel,
                  batch_size=4)
    assert r.cancelled and r.indexed == 4
    r2 = col.index(method="mac", overrides=SMALL, batch_size=4)
    assert (r2.indexed, r2.unchanged) == (8, 4)


def test_index_without_folders_is_a_clear_error(tmp_path):
    col = Collection.open(tmp_path / "cat", device="cpu")
    with pytest.raises(LookalikeError, match="no folders"):
        col.index(method="mac")


def test_resume_after_sigkill_redoes_no_finished_work(tmp_path):
    photos = tmp_path / "p"
    photos.mkdir()
    for i in range(40):
        make_photo(i, (200, 150)).save(photos / f"{i:03d}.jpg")
    cat = tmp_path / "cat"
    cmd = [sys.executable, str(REPO / "main.py"), "index", str(photos), "--catalog", str(cat),
           "--method", "mac", "--device", "cpu", "--batch-size", "4", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = cat / "catalog.sqlite"
    deadline = time.time() + 120
    import sqlite3

    done_before = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                c = sqlite3.connect(db, timeout=1)
                done_before = c.execute("SELECT count(*) FROM descriptors").fetchone()[0]
                c.close()
            except sqlite3.Error:
                pass
            if done_before >= 8:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    col = Collection.open(cat, device="cpu")
    assert col.catalog.check() == []
    kept = len(col.catalog.load_descriptors("mac")[0])
    assert kept >= 8
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    assert report["unchanged"] == kept and report["indexed"] == 40 - kept
    ids, paths, _ = col.catalog.load_descriptors("mac")
    assert len(paths) == 40 == len(set(paths))


def _fail_describing_red_photos(monkeypatch, error: Exception) -> None:
    """Make the mac method raise ``error`` for any batch holding a solid red photo."""
    cls = type(create_method("mac"))
    real = cls.describe

    def describe(self, images, extractor):
        if any(np.asarray(im)[..., 0].min() > 240 and np.asarray(im)[..., 1:].max() < 15 for im in images):
            raise error
        return real(self, images, extractor)

    monkeypatch.setattr(cls, "describe", describe)


def test_an_image_the_method_cannot_describe_is_recorded_and_the_others_are_indexed(tmp_path, photo_folder, monkeypatch):
    Image.new("RGB", (120, 90), (255, 0, 0)).save(photo_folder / "red.png")
    _fail_describing_red_photos(monkeypatch, ValueError("degenerate activations"))
    col = Collection.open(tmp_path / "c", device="cpu")
    try:
        r = _index(col, folders=[str(photo_folder)])
        assert r.indexed == 12
        assert r.failed == [(str(photo_folder / "red.png"), "descriptor failed: ValueError: degenerate activations")]
    finally:
        col.close()


def test_a_bug_in_a_method_stops_the_index_run_instead_of_failing_every_photo(tmp_path, photo_folder, monkeypatch):
    Image.new("RGB", (120, 90), (255, 0, 0)).save(photo_folder / "red.png")
    _fail_describing_red_photos(monkeypatch, TypeError("unsupported operand type(s)"))
    col = Collection.open(tmp_path / "c", device="cpu")
    try:
        with pytest.raises(TypeError, match="unsupported operand"):
            _index(col, folders=[str(photo_folder)])
        assert col.catalog.failures() == []  # no photo blamed for the method's bug
    finally:
        col.close()
