"""Catalog: round trip, atomic shards, orphans, schema versions, state, integrity check."""
import os
import sqlite3

import numpy as np
import pytest

from engine.store.catalog import SCHEMA_VERSION, CatalogStore, NewImage
from engine.errors import CatalogBusyError, CatalogError


def _img(path, size=10, mtime=1, h="h"):
    return NewImage(str(path), size, mtime, h, 4, 3)


def test_descriptors_round_trip_by_image_id(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    fid = cat.add_folder(tmp_path)
    cat.ensure_method("m", {"a": 1})
    d1 = np.arange(6, dtype=np.float32).reshape(2, 3)
    d2 = np.arange(6, 9, dtype=np.float32).reshape(1, 3)
    cat.add_batch("m", [NewImage(str(tmp_path / "a.jpg"), 1, 1, "x", 4, 3, None, fid),
                        NewImage(str(tmp_path / "b.jpg"), 1, 1, "y", 4, 3, None, fid)], d1)
    cat.add_batch("m", [_img(tmp_path / "c.jpg")], d2)
    cat.close()
    cat = CatalogStore(tmp_path / "cat", create=False)
    ids, paths, desc = cat.load_descriptors("m")
    assert [os.path.basename(p) for p in paths] == ["a.jpg", "b.jpg", "c.jpg"]
    np.testing.assert_array_equal(desc, np.vstack([d1, d2]))
    assert cat.methods() == [("m", 3, 2)]
    assert len(cat.images(fid)) == 2
    assert cat.check() == []


def test_compaction_keeps_every_descriptor(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    rows = []
    for i in range(5):
        d = np.full((1, 4), i, np.float32)
        cat.add_batch("m", [_img(tmp_path / f"{i}.jpg")], d)
        rows.append(d)
    cat.remove_images([str(tmp_path / "2.jpg")])
    cat.compact("m")
    _ids, paths, desc = cat.load_descriptors("m")
    assert len(list((tmp_path / "cat" / "shards" / "m").glob("*.npy"))) == 1
    np.testing.assert_array_equal(desc[:, 0], [0, 1, 3, 4])
    assert cat.check() == []


def test_changed_image_drops_old_descriptors_of_every_method(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    for m in ("m1", "m2"):
        cat.ensure_method(m, {})
        cat.add_batch(m, [_img(tmp_path / "a.jpg", h="old")], np.ones((1, 2), np.float32))
    cat.add_batch("m1", [_img(tmp_path / "a.jpg", h="new")], np.zeros((1, 2), np.float32))
    assert cat.load_descriptors("m1")[2].tolist() == [[0.0, 0.0]]
    assert len(cat.load_descriptors("m2")[0]) == 0


def test_orphan_shard_from_a_crash_is_removed_on_open(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    cat.add_batch("m", [_img(tmp_path / "a.jpg")], np.ones((1, 2), np.float32))
    orphan = tmp_path / "cat" / "shards" / "m" / "999-1.npy"
    np.save(orphan, np.ones((3, 2), np.float32))
    (tmp_path / "cat" / "shards" / "m" / ".x.npy.1.2.tmp").write_bytes(b"partial")
    cat.close()
    cat = CatalogStore(tmp_path / "cat")
    assert not orphan.exists()
    assert not list((tmp_path / "cat" / "shards" / "m").glob(".*.tmp"))
    assert len(cat.load_descriptors("m")[0]) == 1


def test_failed_write_leaves_catalog_unchanged(tmp_path, monkeypatch):
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    cat.add_batch("m", [_img(tmp_path / "a.jpg")], np.ones((1, 2), np.float32))
    with pytest.raises(ValueError):
        cat.add_batch("m", [_img(tmp_path / "b.jpg")], np.full((1, 2), np.nan, np.float32))
    assert cat.image_count() == 1 and cat.check() == []


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    CatalogStore(tmp_path / "cat").close()
    db = sqlite3.connect(tmp_path / "cat" / "catalog.sqlite")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(CatalogError, match="newer Lookalike"):
        CatalogStore(tmp_path / "cat")


def test_a_file_that_is_not_a_catalog_is_refused(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "catalog.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CatalogError):
        CatalogStore(tmp_path / "cat")


def test_missing_catalog_without_create_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="No catalog"):
        CatalogStore(tmp_path / "nothing", create=False)


def test_states_are_stored_without_pickle_and_replaced(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    cat.save_state("m", "fit", {"proj": np.eye(2, dtype=np.float32), "k": np.array(3)})
    cat.save_state("m", "fit", {"proj": np.eye(3, dtype=np.float32)})
    state, gen = cat.load_state("m", "fit")
    assert state["proj"].shape == (3, 3) and gen == 0
    assert len(list((tmp_path / "cat" / "state").glob("*.npz"))) == 1


def test_second_indexer_gets_already_indexing_error(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    other = CatalogStore(tmp_path / "cat")
    with cat.index_lock():
        with pytest.raises(CatalogBusyError, match="already being indexed"):
            with other.index_lock():
                pass
    with other.index_lock():  # released after the first one finishes
        pass


def test_paths_that_are_not_utf8_survive(tmp_path):
    cat = CatalogStore(tmp_path / "cat")
    cat.ensure_method("m", {})
    name = os.fsdecode(b"caf\xe9 photo.jpg")
    cat.add_batch("m", [_img(tmp_path / name)], np.ones((1, 2), np.float32))
    assert cat.load_descriptors("m")[1][0].endswith(name)
