"""What the window asks engine.api for instead of reaching into the catalog (Collection's facts,
duplicate decisions, forgetting moved photos) and the facade functions it imports."""
from __future__ import annotations

import pytest

from conftest import make_photo, write_scene_folder
from engine.api import Collection, accelerator_name, catalog_exists, load_thumbnail, thumbnail_bucket
from engine.services.duplicates import DISTINCT, RESOLVED, KEEP_RULES, KeepRules, PhotoInfo

SMALL = {"image_side": 160}


@pytest.fixture(autouse=True)
def lookalike_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("facade")
    photos = write_scene_folder(root / "photos")
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    col = Collection.open(root / "catalog")
    col.add_folder(photos)
    col.index(method="rmac", overrides=SMALL)
    col.close()
    return root / "catalog", photos


def _info(col: Collection, path: str) -> PhotoInfo:
    return next(PhotoInfo.from_record(r) for r in col.catalog.images() if r.path == path)


def test_the_facts_the_window_shows_come_from_the_collection(indexed, tmp_path):
    catalog, photos = indexed
    assert catalog_exists(catalog) and not catalog_exists(tmp_path / "nowhere")
    col = Collection.open(catalog, create=False)
    try:
        assert col.image_count() == 12
        assert col.indexed_counts() == {"rmac": 12}
        assert col.has_descriptors("rmac") and col.has_descriptors() and not col.has_descriptors("gem")
        assert col.has_method_settings("rmac") and not col.has_method_settings("gem")
        assert [p for p, _reason in col.failures()] == [str(photos / "broken.jpg")]
        assert sum(n.total_photos for n in col.browser().tree()) == 12
        assert not col.is_trainable("rmac") and col.is_trainable("actnet-direct")
        assert col.folder_watcher().rescan().missing_folders == ()
    finally:
        col.close()


def test_duplicate_decisions_and_keep_rules_are_remembered_through_the_collection(indexed):
    catalog, photos = indexed
    col = Collection.open(catalog, create=False)
    try:
        a = _info(col, str(photos / "scene1.jpg"))
        b = _info(col, str(photos / "trip" / "scene1_copy.jpg"))
        c = _info(col, str(photos / "scene2.jpg"))
        assert col.mark_not_duplicates([a, b]) == 1
        assert col.mark_resolved([a, c]) == 1
        decisions = set(col.pair_decisions().values())
        assert decisions == {DISTINCT, RESOLVED}
        rules = KeepRules(order=tuple(reversed(KEEP_RULES)), folders=(str(photos / "trip"),))
        col.set_keep_rules(rules)
    finally:
        col.close()
    again = Collection.open(catalog, create=False)
    try:
        assert again.keep_rules() == rules and len(again.pair_decisions()) == 2
    finally:
        again.close()


def test_removing_moved_photos_drops_their_rows_and_a_new_search_index_follows(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        make_photo(i).save(photos / f"p{i}.jpg", quality=90)
    col = Collection.open(tmp_path / "catalog")
    try:
        col.add_folder(photos)
        col.index(method="rmac", overrides=SMALL)
        before = col.generation("rmac")
        assert len(col.search_index("rmac")) == 4
        assert col.remove_photos([str(photos / "p1.jpg"), str(photos / "gone.jpg")]) == 1
        assert col.image_count() == 3 and col.generation("rmac") != before
        assert str(photos / "p1.jpg") not in {r.path for r in col.search(photos / "p0.jpg", "rmac", top=10)}
    finally:
        col.close()


def test_the_thumbnail_and_device_functions_the_window_imports(tmp_path):
    p = tmp_path / "a.jpg"
    make_photo(3, (640, 480)).save(p)
    bucket = thumbnail_bucket(150)
    assert max(load_thumbnail(p, bucket).size) == bucket
    name = accelerator_name()
    assert name is None or isinstance(name, str) and name
