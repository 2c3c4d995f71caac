"""File > Open archive… (pytest-qt, offscreen): an archive opens read-only in the window, is
searched and explained, and an archive photo this machine cannot read keeps its result with a
placeholder that says so.

The archive is described in this process (the plan, each shard, the index: the same functions
the Ray workers and ``archive build-index`` run), so no Ray instance is started here; the
Ray side is tests/test_archive.py's.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtGui import QPixmap  # noqa: E402

from conftest import write_scene_folder  # noqa: E402
from engine.api import Collection  # noqa: E402
from engine.archive.describe import archive_method, describe_shard  # noqa: E402
from engine.archive.layout import ArchiveLayout  # noqa: E402
from engine.archive.merge import build_archive_index  # noqa: E402
from engine.archive.plan import plan_archive  # noqa: E402
from engine.descriptors.methods import create_method  # noqa: E402
from engine.nn.features import FeatureExtractor  # noqa: E402
from test_gui import WAIT_MS, drop_urls, lookalike_home  # noqa: E402, F401

SMALL = {"image_side": 128}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """12 photos described into a 3-shard archive; then one photo is moved off this machine's
    reach (as a path recorded on another host would be)."""
    root = tmp_path_factory.mktemp("gui_archive")
    photos = write_scene_folder(root / "photos")
    layout = ArchiveLayout(root / "archive")
    info = plan_archive(layout, [str(photos)], create_method("rmac", SMALL), None, 5)
    method = archive_method(layout, info)
    extractor = FeatureExtractor(method.config.backbone, "cpu", None)
    for shard in range(info.shards):
        describe_shard(layout, shard, method, extractor)
    build_archive_index(layout.dir)
    away = photos / "trip" / "scene3_copy.jpg"
    os.replace(away, root / "elsewhere.jpg")
    return layout.dir, photos, away


def _window(qtbot, directory, settings_path: Path):
    from gui.main_window import MainWindow

    w = MainWindow(catalog_dir=str(directory), settings=QSettings(str(settings_path), QSettings.Format.IniFormat),
                   confirm=False)
    qtbot.addWidget(w)
    w.show()
    return w


def _query(qtbot, w, path) -> None:
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        w.search.run_query(str(path))


def test_an_archive_opens_read_only_offering_search_only(qtbot, archive, tmp_path):
    directory, photos, _away = archive
    before = sorted(p.name for p in directory.iterdir())
    w = _window(qtbot, directory, tmp_path / "s.ini")
    col = w.collection
    assert col is not None and col.read_only and col.active_method == "rmac"
    assert not w.tabs.isTabEnabled(1) and not w.tabs.isTabEnabled(2) and w.tabs.currentIndex() == 0
    assert "archive" in w.tabs.tabToolTip(1)
    acts = w.menu_actions
    assert not acts.add_folder.isEnabled() and not acts.watch_folders.isEnabled() and not acts.adapt.isEnabled()
    assert not w.methods.method_combo.isEnabled() and "described with" in w.methods.method_combo.toolTip()
    panel = w.collection_panel
    assert panel.index_button.isHidden() and panel.add_folder_button.isHidden() and panel.remove_folder_button.isHidden()
    assert [panel.folder_list.item(i).text() for i in range(panel.folder_list.count())] == [str(photos)]
    moved = photos.with_name("photos-elsewhere")
    os.replace(photos, moved)
    try:
        panel.refresh()  # a source folder this machine cannot see is marked, not hidden
        assert panel.folder_list.item(0).text() == f"{photos}  (not reachable here)"
    finally:
        os.replace(moved, photos)
    panel.refresh()
    assert panel.info_images.text() == "12 searchable (archive)"
    assert panel.info_method.text() == "rmac (read-only)" and panel.info_last.text().startswith("index built ")
    assert "read-only" in w.banner.text.text() and w.banner.isVisible()
    assert w.collection_panel.collection_combo.currentText() == f"{directory.name} (archive)"
    assert not w.indexing.start()  # e.g. a stray shortcut: refused with words, nothing written
    assert "lookalike archive index" in w.banner.text.text()
    w.close()
    assert sorted(p.name for p in directory.iterdir()) == before  # no lock, state or cache in the archive


def test_a_query_on_an_archive_ranks_its_photos_and_marks_the_unreachable_one(qtbot, archive, tmp_path):
    directory, photos, away = archive
    w = _window(qtbot, directory, tmp_path / "s.ini")
    _query(qtbot, w, photos / "scene2.jpg")
    model = w.search.results.model
    assert model.total() == 12
    assert model.item(0).path == str(photos / "scene2.jpg") and model.item(1).path == str(photos / "trip" / "scene2_copy.jpg")
    gone = model.item(model.row_of(str(away)))
    assert "Not reachable from this machine" in gone.unreachable
    assert all(not model.item(r).unreachable for r in range(model.rowCount()) if model.item(r).path != str(away))
    idx = model.index(model.row_of(str(away)))
    tile = model.data(idx, Qt.ItemDataRole.DecorationRole)
    assert isinstance(tile, QPixmap) and tile.cacheKey() == model._unreachable_pixmap().cacheKey()
    assert w.thumbnails.error(str(away)) is None  # its thumbnail was never asked of the decoder
    assert gone.unreachable in model.data(idx, Qt.ItemDataRole.ToolTipRole)
    assert f"#{gone.rank}" in model.data(idx)  # rank and score stay
    w.close()


def test_why_matched_on_an_archive_explains_a_reachable_photo_and_names_an_unreachable_one(qtbot, archive, tmp_path):
    directory, photos, away = archive
    w = _window(qtbot, directory, tmp_path / "s.ini")
    _query(qtbot, w, photos / "scene4.jpg")
    qtbot.waitUntil(lambda: not w.search.tasks.busy("explain"), timeout=WAIT_MS)
    copy = str(photos / "trip" / "scene4_copy.jpg")
    with qtbot.waitSignal(w.search.explain_finished, timeout=WAIT_MS):
        w.search.explain(copy, w.search.results.model.item(w.search.results.model.row_of(copy)).score)
    assert w.search.why is not None and w.search.why.explanation.result.path == copy
    with qtbot.waitSignal(w.search.explain_finished, timeout=WAIT_MS):
        w.search.explain(str(away), 0.5)
    assert w.search.why is None
    assert "Not reachable from this machine" in w.search.why_panel.header.text()
    w.close()


def test_open_archive_refuses_a_folder_that_is_not_an_archive_and_keeps_the_collection(qtbot, tmp_path):
    from gui.main_window import MainWindow

    photos = write_scene_folder(tmp_path / "photos")
    w = MainWindow(catalog_dir=str(tmp_path / "cat"), settings=QSettings(str(tmp_path / "s.ini"),
                   QSettings.Format.IniFormat), confirm=False)
    qtbot.addWidget(w)
    before = w.collection
    assert not w.session.open_archive_folder(str(photos))
    assert w.collection is before and not before.read_only
    assert "is not a Lookalike archive" in w.banner.text.text() and "archive.json" in w.banner.text.text()
    assert not (photos / "archive.json").exists()
    opened = [a for a in w.menuBar().actions()[0].menu().actions() if a.text() == "Open a&rchive…"]
    assert len(opened) == 1 and opened[0].shortcut().toString() == "Ctrl+Shift+O"
    w.close()


def test_leaving_an_archive_for_a_collection_gives_back_every_tab_and_action(qtbot, archive, tmp_path):
    directory, photos, _away = archive
    cat = tmp_path / "cat"
    Collection.open(cat).close()
    w = _window(qtbot, directory, tmp_path / "s.ini")
    assert w.collection.read_only
    assert w.session.open(str(cat), create=False)
    assert not w.collection.read_only
    assert w.tabs.isTabEnabled(1) and w.tabs.isTabEnabled(2)
    assert w.menu_actions.add_folder.isEnabled() and w.menu_actions.watch_folders.isEnabled()
    assert w.methods.method_combo.isEnabled() and "recommended" in w.methods.method_combo.toolTip()
    assert not w.collection_panel.index_button.isHidden() and w.collection_panel.folders_label.text() == "Folders"
    w.session.choose(str(directory))  # back through the collection list: remembered as an archive
    assert w.collection.read_only and str(w.collection.directory) == str(directory)
    w.close()


def test_dropping_a_folder_on_an_archive_says_it_is_read_only(qtbot, archive, tmp_path):
    directory, _photos, _away = archive
    other = write_scene_folder(tmp_path / "more")
    w = _window(qtbot, directory, tmp_path / "s.ini")
    drop_urls(w, [other])
    assert "read-only" in w.banner.text.text() and "adding a folder" in w.banner.text.text()
    assert w.collection.folders() == [str(archive[1])]
    w.close()
