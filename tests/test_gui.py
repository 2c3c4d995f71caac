"""The desktop window (pytest-qt, offscreen): indexing worker, drops, results, overlays, why-matched."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QPixmap  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from conftest import make_photo, shared_dataset, write_scene_folder  # noqa: E402
from engine.api import Collection  # noqa: E402
from engine.descriptors.methods import DEFAULT_METHOD  # noqa: E402

SMALL = {"image_side": 160}
WAIT_MS = 180_000  # generous: the CI machine is shared; nothing here asserts on speed


@pytest.fixture(autouse=True)
def lookalike_home(tmp_path, monkeypatch):
    """Settings, thumbnail cache and default catalog of each test in its own folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("LOOKALIKE_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def indexed_catalog(tmp_path_factory):
    """The 12-photo test folder indexed with rmac (small input size), shared by the query tests."""
    root = tmp_path_factory.mktemp("gui")
    photos = write_scene_folder(root / "photos")
    col = Collection.open(root / "catalog")
    col.add_folder(photos)
    report = col.index(method="rmac", overrides=SMALL)
    assert report.indexed == 12
    col.close()
    return root / "catalog", photos


def make_window(qtbot, catalog, **kw):
    from gui.main_window import MainWindow

    w = MainWindow(catalog_dir=str(catalog), confirm=False, index_overrides=SMALL, **kw)
    qtbot.addWidget(w)
    w.show()
    return w


def query_and_wait(qtbot, w, path):
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        w.search.run_query(str(path))


def drop_urls(widget, urls):
    """Deliver a real drag-enter + drop with file URLs, as a file manager does."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(u)) for u in urls])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop


def test_adding_a_folder_indexes_it_in_a_worker_while_the_ui_heartbeat_keeps_beating(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "cat")
    beats: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    progress = []
    timer.start()
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS) as blocker:
        w.add_folders([str(photo_folder)])
        assert w.is_indexing()
        w.indexing.task.progress.connect(lambda p: progress.append(p))
    timer.stop()
    report = blocker.args[0]
    assert report is not None and report.indexed == 12 and not report.cancelled
    assert w.collection_panel.info_images.text() == "12"
    assert DEFAULT_METHOD in w.collection_panel.info_method.text() and "all 12 photos" in w.collection_panel.info_method.text()
    assert w.collection_panel.info_last.text() != "never"
    assert any(p.phase == "indexing" and p.done == p.total == 12 for p in progress)
    # The UI thread kept handling its timer while the worker indexed (no bound on the gaps:
    # that would be a timed assertion, and the shared 2-core machine stalls everything at times).
    assert len(beats) > 10
    # A finished run clears the resume mark.
    assert not [k for k in w.settings.store.allKeys() if k.startswith("resume/")]


def test_indexing_the_shared_ukbench_photos_through_the_worker_then_a_dropped_query_finds_its_group(qtbot, tmp_path):
    images = shared_dataset("ukbench56") / "images"
    w = make_window(qtbot, tmp_path / "cat")
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS) as blocker:
        w.add_folders([str(images)])
    report = blocker.args[0]
    assert (report.indexed, len(report.failed)) == (56, 0)
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        drop_urls(w, [images / "ukbench00004.jpg"])  # group 1: ukbench00004-00007
    top4 = {Path(w.search.results.model.item(i).path).name for i in range(4)}
    assert len(top4 & {f"ukbench0000{i}.jpg" for i in range(4, 8)}) >= 3


def test_cancel_mid_index_stops_early_and_reopening_resumes(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "cat", index_batch_size=2)
    w.add_folders([str(photo_folder)], index=False)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS) as blocker:
        assert w.indexing.start("rmac")
        w.indexing.pause(True)  # holds the worker at its next progress report
        qtbot.wait(300)
        assert w.indexing.task.paused
        w.indexing.cancel()  # the Cancel button (Esc does not: see test_gui_newcomer)
    report = blocker.args[0]
    assert report.cancelled and report.indexed < 12
    qtbot.waitUntil(lambda: not w.is_indexing(), timeout=WAIT_MS)
    assert [k for k in w.settings.store.allKeys() if k.startswith("resume/")]
    w.close()

    # Re-opening the collection resumes the interrupted index and completes it.
    w2 = make_window(qtbot, tmp_path / "cat")
    with qtbot.waitSignal(w2.index_finished, timeout=WAIT_MS) as blocker2:
        pass
    report2 = blocker2.args[0]
    assert not report2.cancelled
    assert report2.indexed == 12 - report.indexed
    assert w2.collection_panel.info_images.text() == "12"


def test_photos_added_edited_and_deleted_in_a_watched_folder_update_the_index(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "cat")
    assert w.menu_actions.watch_folders.isChecked()  # on by default
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS):
        w.add_folders([str(photo_folder)])
    w.folder_watch.watcher.debounce_s = 0.0  # rescan on the next tick after an event
    qtbot.waitUntil(lambda: str(photo_folder / "trip") in w.folder_watch.fs.directories(), timeout=WAIT_MS)
    # A new photo in a sub-folder and a deleted one: the file-system event triggers the rescan.
    make_photo(40).save(photo_folder / "trip" / "new.jpg", quality=90)
    (photo_folder / "scene5.jpg").unlink()
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS) as blocker:
        pass
    report = blocker.args[0]
    assert (report.indexed, report.removed) == (1, 1)
    paths = {r.path for r in w.collection.catalog.images()}
    assert str(photo_folder / "trip" / "new.jpg") in paths and str(photo_folder / "scene5.jpg") not in paths
    # Switched off (and remembered): a further change is left alone.
    w.menu_actions.watch_folders.setChecked(False)
    assert w.settings.store.value("watch_folders", type=bool) is False
    make_photo(41).save(photo_folder / "another.jpg", quality=90)
    w.folder_watch.watcher.notify()
    qtbot.wait(2500)
    assert not w.is_indexing() and len(w.collection.catalog.images()) == 12


def test_dropping_an_image_file_runs_the_query_and_shows_scored_thumbnails(qtbot, indexed_catalog):
    catalog, photos = indexed_catalog
    w = make_window(qtbot, catalog)
    q = photos / "scene2.jpg"
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        drop = drop_urls(w, [q])
    assert drop.isAccepted()
    assert w.search.results.model.total() == 12
    first, second = w.search.results.model.item(0), w.search.results.model.item(1)
    assert first.path == str(q) and first.score == pytest.approx(1.0, abs=1e-3)
    assert second.path == str(photos / "trip" / "scene2_copy.jpg")
    # Rank, similarity and name under the thumbnail (a raw score until the calibration is there).
    assert w.search.results.model.data(w.search.results.model.index(1)) == f"#2 · {w.search.results.model.score_text(second.score)}\nscene2_copy.jpg"
    qtbot.waitUntil(lambda: w.search.results.model.thumbnails_loaded(range(w.search.results.model.rowCount())), timeout=WAIT_MS)
    pix = w.search.results.model.data(w.search.results.model.index(0), Qt.ItemDataRole.DecorationRole)
    assert isinstance(pix, QPixmap) and max(pix.width(), pix.height()) == w.search.results.model.thumb_size
    cached = list((Path(os.environ["LOOKALIKE_HOME"]) / "cache" / "thumbnails").rglob("*.jpg"))
    assert len(cached) == 12
    assert w.search.results.count_label.text() == "12 results"


def test_opening_a_collection_loads_the_model_and_search_index_in_the_background(qtbot, indexed_catalog):
    catalog, _photos = indexed_catalog
    w = make_window(qtbot, catalog)
    qtbot.waitUntil(lambda: not w.tasks.busy("warm-up"), timeout=WAIT_MS)
    assert w.collection.active_method in w.collection._search  # the first drop loads nothing
    assert not w.banner.isVisible()


def test_dropping_a_folder_adds_it_to_the_collection(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "cat")
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS):
        drop_urls(w, [photo_folder])
    assert w.collection.folders() == [str(photo_folder)]
    assert w.collection_panel.info_images.text() == "12"


def test_pasting_a_path_runs_the_query(qtbot, indexed_catalog):
    catalog, photos = indexed_catalog
    w = make_window(qtbot, catalog)
    QGuiApplication.clipboard().setText(str(photos / "scene4.jpg"))
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        w.query_input.paste()
    assert w.search.results.model.item(0).path == str(photos / "scene4.jpg")


def test_threshold_slider_and_near_duplicate_toggle_filter_the_results(qtbot, indexed_catalog):
    catalog, photos = indexed_catalog
    w = make_window(qtbot, catalog)
    query_and_wait(qtbot, w, photos / "scene1.jpg")
    scores = [w.search.results.model.item(r).score for r in range(w.search.results.model.rowCount())]
    cut = (scores[3] + scores[4]) / 2  # between the 4th and 5th best
    w.search.results.set_threshold(cut)
    assert w.search.results.model.threshold == pytest.approx(cut, abs=(scores[0] - scores[-1]) / 100)
    expected = sum(s >= w.search.results.model.threshold for s in scores)
    assert 0 < w.search.results.model.rowCount() == expected < 12
    assert w.search.results.count_label.text().startswith(f"{expected} of 12")
    w.search.results.threshold_slider.setValue(0)
    assert w.search.results.model.rowCount() == 12 and w.search.results.threshold_label.text() == "all"
    w.search.results.hide_dups.setChecked(True)
    shown = [w.search.results.model.item(r).path for r in range(w.search.results.model.rowCount())]
    assert str(photos / "scene1.jpg") not in shown
    assert all(w.search.results.model.item(r).score < 0.95 for r in range(w.search.results.model.rowCount()))
    w.search.results.sort_combo.setCurrentIndex(1)  # by date: same rows, other order allowed
    assert sorted(w.search.results.model.item(r).path for r in range(w.search.results.model.rowCount())) == sorted(shown)


def test_hiding_near_duplicates_uses_the_calibrated_threshold_of_a_low_scoring_method(qtbot, indexed_catalog,
                                                                                     monkeypatch):
    import engine.services.duplicate_threshold as dt

    catalog, photos = indexed_catalog
    w = make_window(qtbot, catalog)
    query_and_wait(qtbot, w, photos / "scene1.jpg")
    scores = sorted((w.search.results.model.item(r).score for r in range(w.search.results.model.rowCount())), reverse=True)
    cut = (scores[2] + scores[3]) / 2
    # As for cluster-MAC: the collection's duplicate threshold is far below 0.95.
    monkeypatch.setattr(dt, "duplicate_threshold", lambda col, method=None: dt.ThresholdChoice(cut, True, (cut,)))
    w.search.results.hide_dups.setChecked(True)
    qtbot.waitUntil(lambda: w.search.results.model.near_duplicate_score == cut, timeout=WAIT_MS)
    assert w.search.results.model.rowCount() == len(scores) - 3  # the query and the two results above the cut
    assert all(w.search.results.model.item(r).score < cut for r in range(w.search.results.model.rowCount()))
    assert f"{cut:.2f}" in w.search.results.hide_dups.toolTip()


def test_window_has_the_lookalike_icon_from_resources(qtbot, tmp_path):
    from gui.resources import RESOURCES_DIR

    w = make_window(qtbot, tmp_path / "cat")
    assert (RESOURCES_DIR / "lookalike.svg").is_file()
    pix = w.windowIcon().pixmap(64, 64)
    assert not pix.isNull()  # the SVG was found and rendered
    img = pix.toImage()
    assert len({img.pixel(x, y) for x in range(0, 64, 4) for y in range(0, 64, 4)}) > 3


def test_overlay_switching_shows_regions_cam_and_explains_missing_clusters(qtbot, indexed_catalog):
    catalog, photos = indexed_catalog
    w = make_window(qtbot, catalog)
    with qtbot.waitSignal(w.search.explain_finished, timeout=WAIT_MS):
        query_and_wait(qtbot, w, photos / "scene3.jpg")
    w.search.query_pane.set_overlay("regions")
    assert w.search.query_pane.current_overlay.image is not None and len(w.search.query_pane.current_overlay.boxes) == 5
    assert "regions" in w.search.query_pane.legend.text.text()
    assert not w.search.query_pane.view._overlay.pixmap().isNull()
    w.search.query_pane.set_overlay("cam")
    assert w.search.query_pane.current_overlay.image is not None and "CAM" in w.search.query_pane.legend.text.text()
    # The legend names the class the map is of (Lite0 has an ImageNet classifier).
    assert w.search.why.query_class and f"“{w.search.why.query_class}”" in w.search.query_pane.legend.text.text()
    w.search.query_pane.set_overlay("clusters")
    assert w.search.query_pane.current_overlay.image is None and "no clusters" in w.search.query_pane.legend.text.text()
    assert w.search.query_pane.view._overlay.pixmap().isNull()
    w.search.query_pane.set_overlay("none")
    assert w.search.query_pane.view._overlay.pixmap().isNull()
    w.search.query_pane.opacity_slider.setValue(30)
    assert w.search.query_pane.view._overlay.opacity() == pytest.approx(0.3)


def test_why_matched_lists_contributions_that_sum_to_the_score(qtbot, indexed_catalog):
    catalog, photos = indexed_catalog
    w = make_window(qtbot, catalog)
    with qtbot.waitSignal(w.search.explain_finished, timeout=WAIT_MS):
        query_and_wait(qtbot, w, photos / "scene5.jpg")
    with qtbot.waitSignal(w.search.explain_finished, timeout=WAIT_MS):
        w.search.show_why(3)
    it = w.search.results.model.item(2)
    e = w.search.why.explanation
    assert e.result.path == it.path
    assert e.score == pytest.approx(it.score, abs=1e-4)
    for side in (e.query, e.result):
        assert side.contributions.sum() + side.bias_contribution == pytest.approx(e.score, abs=1e-6)
    assert w.search.right_tabs.currentWidget() is w.search.why_panel
    panel = w.search.why_panel
    from gui.search.why_panel import TABLE_ROWS

    n = len(e.query.parts.labels)
    assert panel.query_parts.topLevelItemCount() == min(n, TABLE_ROWS) + (n > TABLE_ROWS)
    rows = [panel.query_parts.topLevelItem(i) for i in range(panel.query_parts.topLevelItemCount())]
    # Readable: places in the photo and shares of what speaks for the match, no channel numbers.
    assert all("channel" not in r.text(1) and "scale" not in r.text(1) for r in rows)
    assert sum(float(r.text(2).rstrip(" %")) for r in rows) == pytest.approx(100, abs=len(rows))
    assert f"score {it.score:.3f}" in panel.header.text() and "channel" not in panel.header.text()
    assert not panel.result_view._photo.pixmap().isNull()
    w.search.query_pane.set_overlay("cam")  # both sides' maps, and the legend names both classes
    assert f"“{w.search.why.query_class}” (query) and “{w.search.why.result_class}” (result)" in panel.legend.text.text()


def test_corrupt_query_file_shows_a_readable_message(qtbot, indexed_catalog, tmp_path):
    catalog, _photos = indexed_catalog
    w = make_window(qtbot, catalog)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is a text file renamed to .jpg")
    query_and_wait(qtbot, w, bad)
    assert w.banner.isVisible()
    text = w.banner.text.text()
    assert text.count("broken.jpg") == 1 and "not a recognised image format" in text
    assert w.search.results.model.total() == 0
    truncated = tmp_path / "truncated.jpg"
    make_photo(9).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:600])
    query_and_wait(qtbot, w, truncated)
    assert "truncated" in w.banner.text.text()


def test_settings_persist_thumbnail_size_and_overlay(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path / "cat")
    size = w.search.results.model.thumb_size
    w.search.results.change_thumb_size(+1)
    w.search.query_pane.set_overlay("cam")
    assert w.search.results.model.thumb_size > size
    w.close()
    ini = Path(os.environ["LOOKALIKE_HOME"]) / "config" / "lookalike.ini"
    assert ini.is_file()
    assert QSettings(str(ini), QSettings.Format.IniFormat).value("overlay") == "cam"
    w2 = make_window(qtbot, tmp_path / "cat")
    assert w2.search.results.model.thumb_size == w.search.results.model.thumb_size and w2.search.query_pane.overlay_kind() == "cam"


def test_indexing_an_empty_collection_says_to_add_a_folder(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path / "cat")
    assert not w.indexing.start()
    assert w.banner.isVisible() and "add a photo folder" in w.banner.text.text()


def test_a_catalog_from_a_newer_version_opens_with_a_message_not_a_crash(qtbot, tmp_path):
    import sqlite3

    Collection.open(tmp_path / "newer").close()
    db = next((tmp_path / "newer").glob("*.sqlite*"))
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    w = make_window(qtbot, tmp_path / "newer")
    assert w.collection is None
    assert w.banner.isVisible() and "newer Lookalike" in w.banner.text.text()
    w.search.run_query(str(tmp_path / "x.jpg"))  # no collection: a message again, no exception
    assert "collection" in w.banner.text.text()


def test_a_region_dragged_in_the_browse_viewer_queries_with_that_region(qtbot, indexed_catalog):
    catalog, photos = indexed_catalog
    w = make_window(qtbot, catalog)
    assert w.browse_view is not None
    q = photos / "scene3.jpg"
    box = (40, 30, 200, 150)
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        w.browse_view.find_similar_region.emit(str(q), box, "image")
    assert w.tabs.currentIndex() == 0
    assert "[40,30,200,150]" in w.search.query_label and "image crop" in w.search.query_label
    assert w.search.results.model.total() == 12
    top = w.search.results.model.item(0)
    # The region is described on its own: the full photo no longer matches itself exactly.
    assert top.score < 0.999
    assert w.search.query_image.width() == 160 and w.search.query_image.height() == 120


def test_adapt_to_my_photos_refuses_a_method_without_trainable_parts(qtbot, indexed_catalog):
    catalog, _photos = indexed_catalog
    w = make_window(qtbot, catalog)
    assert w.collection.active_method == "rmac"
    assert w.adapt.start() is False
    assert "nothing to adapt" in w.banner.text.text()


def test_adapt_to_my_photos_trains_in_the_background_and_reports_the_held_out_result(qtbot, tmp_path, photo_folder):
    col = Collection.open(tmp_path / "cat")
    col.add_folder(photo_folder)
    col.set_active_method("actnet-direct")
    col.index(method="actnet-direct", overrides=SMALL)
    col.close()
    w = make_window(qtbot, tmp_path / "cat")
    with qtbot.waitSignal(w.adapt_finished, timeout=WAIT_MS):
        assert w.adapt.start(epochs=1) is True
        assert w.adapt.start() is False  # a second run is refused while one is going
    text = w.banner.text.text()
    assert "held-out mAP" in text and ("Adapted" in text or "did not help" in text)


def test_photos_moved_away_by_the_duplicates_view_update_the_collection_panel_count(qtbot, tmp_path, photo_folder):
    cat = tmp_path / "cat"
    col = Collection.open(cat)
    col.add_folder(photo_folder)
    assert col.index(method="rmac", overrides=SMALL).indexed == 12
    col.close()
    w = make_window(qtbot, cat)
    assert w.collection_panel.info_images.text() == "12"
    w.collection.remove_photos([str(photo_folder / "scene0.jpg")])  # what the view's move does, then it says so
    w.duplicates_view.photos_removed.emit()
    assert w.collection_panel.info_images.text() == "11"
