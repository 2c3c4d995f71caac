"""What a newcomer met in the window (issue 18): grid cells, scroll position, Esc, partial
indexes, window width, stale state after switching collections, the screenshot hook's
settings, a missing collection, calibrated similarity and "no good match"."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from conftest import make_photo, write_scene_folder  # noqa: E402
from engine.api import Collection  # noqa: E402
from engine.search.score_calibration import ScoreCalibration  # noqa: E402

SMALL = {"image_side": 160}
WAIT_MS = 180_000  # generous: the machine is shared; nothing here asserts on speed
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def lookalike_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LOOKALIKE_HOME", str(home))
    return home


def write_mixed_folder(root: Path) -> Path:
    """8 photos, portrait and landscape alternating; portrait0.jpg is the query."""
    root.mkdir(parents=True)
    for i in range(4):
        make_photo(20 + i, (180, 320)).save(root / f"portrait{i}.jpg", quality=90)
        make_photo(40 + i, (320, 180)).save(root / f"landscape{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def mixed_catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    photos = write_mixed_folder(root / "photos")
    col = Collection.open(root / "catalog")
    col.add_folder(photos)
    assert col.index(method="rmac", overrides=SMALL).indexed == 8
    col.close()
    return root / "catalog", photos


@pytest.fixture(scope="module")
def scene_catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    photos = write_scene_folder(root / "photos")
    col = Collection.open(root / "catalog")
    col.add_folder(photos)
    assert col.index(method="rmac", overrides=SMALL).indexed == 12
    col.close()
    return root / "catalog", photos


def make_window(qtbot, catalog, **kw):
    from gui.main_window import MainWindow

    w = MainWindow(catalog_dir=str(catalog) if catalog else None, confirm=False, index_overrides=SMALL, **kw)
    qtbot.addWidget(w)
    w.resize(1024, 700)
    w.show()
    return w


def query_and_wait(qtbot, w, path):
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        w.search.run_query(str(path))


def test_mixed_portrait_and_landscape_results_keep_every_thumbnail_and_score_visible(qtbot, mixed_catalog):
    from gui.search.grid_delegate import PAD

    catalog, photos = mixed_catalog
    w = make_window(qtbot, catalog)
    w.resize(1400, 1000)
    w.search.results.set_thumb_size(128)  # all 8 results in view
    query_and_wait(qtbot, w, photos / "portrait0.jpg")
    assert w.search.results.model.item(0).path.endswith("portrait0.jpg")  # the first result is portrait
    view = w.search.results.view
    qtbot.waitUntil(lambda: w.search.results.model.thumbnails_loaded(range(w.search.results.model.rowCount())), timeout=WAIT_MS)
    view.scrollToTop()
    img = view.viewport().grab().toImage()
    bg = img.pixelColor(img.width() - 2, img.height() - 2)
    fm_h = view.fontMetrics().height()
    s = w.search.results.model.thumb_size
    checked = {"portrait": 0, "landscape": 0}
    for row in range(w.search.results.model.rowCount()):
        idx = w.search.results.model.index(row)
        rect = view.visualRect(idx)
        if not view.viewport().rect().contains(rect):
            continue  # scrolled out of view
        pix = w.search.results.model.data(idx, Qt.ItemDataRole.DecorationRole)
        pw, ph = pix.width(), pix.height()
        assert max(pw, ph) == s  # the whole thumbnail, not a strip of it
        # Drawn centred in the cell's square box: its four corners are photo, not background.
        cx, cy = rect.left() + PAD + s // 2, rect.top() + PAD + s // 2
        for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            x, y = cx + dx * (pw // 2 - 3), cy + dy * (ph // 2 - 3)
            assert img.pixelColor(x, y) != bg, f"row {row}: thumbnail corner ({x},{y}) not drawn"
        # Below the box: the score line is drawn inside the cell.
        band_top = rect.top() + PAD + s + 2
        assert band_top + fm_h <= rect.bottom() + 1
        inked = sum(img.pixelColor(x, y) != bg for x in range(rect.left(), rect.right())
                    for y in range(band_top, band_top + fm_h))
        assert inked > 20, f"row {row}: no score text under the thumbnail"
        assert "%" in idx.data() or "." in idx.data().split("\n")[0]
        checked["portrait" if ph > pw else "landscape"] += 1
    assert checked == {"portrait": 4, "landscape": 4}


def test_a_new_query_starts_at_the_top_of_the_results(qtbot, scene_catalog):
    catalog, photos = scene_catalog
    w = make_window(qtbot, catalog)
    w.search.results.set_thumb_size(320)  # 12 big thumbnails do not fit: the grid scrolls
    query_and_wait(qtbot, w, photos / "scene1.jpg")
    bar = w.search.results.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=10_000)
    bar.setValue(bar.maximum())
    assert bar.value() > 0
    query_and_wait(qtbot, w, photos / "scene4.jpg")
    assert bar.value() == 0


def test_esc_in_the_filter_clears_it_and_does_not_cancel_indexing(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "cat", index_batch_size=2)
    w.add_folders([str(photo_folder)], index=False)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS) as blocker:
        assert w.indexing.start("rmac")
        w.indexing.pause(True)
        w.search.results.filter_edit.setFocus()
        QTest.keyClicks(w.search.results.filter_edit, "scene")
        assert w.search.results.filter_edit.text() == "scene"
        QTest.keyClick(w.search.results.filter_edit, Qt.Key.Key_Escape)
        assert w.search.results.filter_edit.text() == ""
        w.escape()  # a second Esc, the filter empty: still nothing to do with indexing
        assert w.is_indexing() and not w.indexing.task.cancel_event.is_set()
        w.indexing.pause(False)
    report = blocker.args[0]
    assert not report.cancelled and report.indexed == 12


def test_a_query_during_indexing_says_it_searched_a_partial_index(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "cat", index_batch_size=2)
    w.add_folders([str(photo_folder)], index=False)
    assert w.indexing.start("rmac")
    worker = w.indexing.task

    held = []

    def hold(p) -> None:  # in the worker thread: it then waits at this report, batches stored
        if not held and p.phase == "indexing" and 2 <= p.done < p.total:
            held.append(p.done)
            worker.set_paused(True)

    worker.progress.connect(hold, Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(lambda: worker.paused, timeout=WAIT_MS)
    w.indexing.pause_button.setChecked(True)  # the window's pause state agrees with the worker's
    query_and_wait(qtbot, w, photo_folder / "scene0.jpg")
    searched = w.search.results.model.total()
    assert 0 < searched < 12
    assert w.search.results.note_label.isVisibleTo(w)
    note = w.search.results.note_label.text()
    assert "Indexing is running" in note and f"searched the {searched} photo" in note
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS):
        w.indexing.pause(False)
    # The finished index re-runs the query over every photo, and the note goes.
    # (Its preview, the ranking before re-ranking, says it is being refined: wait for the final one.)
    qtbot.waitUntil(lambda: w.search.results.model.total() == 12 and not w.search.tasks.busy("query"), timeout=WAIT_MS)
    assert not w.search.results.note_label.isVisibleTo(w)


def test_the_window_fits_a_1024_pixel_wide_screen(qtbot, scene_catalog):
    catalog, photos = scene_catalog
    w = make_window(qtbot, catalog)
    query_and_wait(qtbot, w, photos / "scene2.jpg")
    for i in range(w.tabs.count()):
        w.tabs.setCurrentIndex(i)
        assert w.minimumSizeHint().width() <= 1024, w.tabs.tabText(i)
    w.resize(1024, 700)
    assert w.width() <= 1024


def test_switching_collections_clears_the_query_overlay_and_counts(qtbot, scene_catalog, tmp_path):
    catalog, photos = scene_catalog
    w = make_window(qtbot, catalog)
    with qtbot.waitSignal(w.search.explain_finished, timeout=WAIT_MS):
        query_and_wait(qtbot, w, photos / "scene3.jpg")
    w.search.query_pane.set_overlay("regions")
    assert w.search.query_pane.view._overlay.pixmap().isNull() is False and "for result scene" in w.search.query_pane.legend.text.text()
    assert w.search.results.count_label.text() == "12 results"
    assert w.session.open(str(tmp_path / "other"))
    assert w.search.query is None and w.search.results.model.total() == 0
    assert w.search.results.count_label.text() == "0 results"
    assert w.search.query_pane.caption.text() == "No query yet"
    assert not w.search.query_pane.view.has_photo() and w.search.query_pane.view._overlay.pixmap().isNull()
    # The new collection's method (the default, seddati-cam) has no regions: the overlay choice
    # falls back to none, with no legend; a kind it has waits for a result.
    assert w.search.query_pane.overlay_kind() == "none" and w.search.query_pane.legend.text.text() == ""
    w.search.query_pane.set_overlay("cam")
    assert w.search.query_pane.legend.text.text() == "The overlay appears once a result is chosen."
    assert w.search.why_panel.data is None and w.search.why_panel.query_parts.topLevelItemCount() == 0
    assert not w.search.results.note_label.isVisibleTo(w)
    # Forgetting the open collection opens another one rather than leaving a blank picker.
    w.session.open(str(catalog))
    w.session.forget()
    assert w.collection is not None and str(w.collection.directory) == str(tmp_path / "other")
    assert w.collection_panel.collection_combo.currentData() == str(tmp_path / "other")


def test_a_missing_remembered_collection_is_not_recreated_empty(qtbot, tmp_path, lookalike_home):
    from gui.settings import open_settings

    gone = tmp_path / "unplugged" / "catalog"
    s = open_settings()
    s.setValue("last_collection", str(gone))
    s.setValue("collections", [str(gone)])
    s.sync()
    w = make_window(qtbot, None)
    assert not gone.exists()
    assert w.collection is None
    assert w.banner.isVisible() and "cannot be found" in w.banner.text.text()
    assert w.collection_panel.collection_combo.currentIndex() == -1  # nothing looks open
    combo = w.collection_panel.collection_combo
    combo.activated.emit(combo.findData(str(gone)))  # picked again from the list
    assert not gone.exists() and w.collection is None


def test_the_screenshot_hook_leaves_the_saved_settings_unchanged(tmp_path, scene_catalog):
    catalog, photos = scene_catalog
    home = tmp_path / "shot-home"
    ini = home / "config" / "lookalike.ini"
    ini.parent.mkdir(parents=True)
    mine = tmp_path / "my-collection"
    s = QSettings(str(ini), QSettings.Format.IniFormat)
    s.setValue("last_collection", str(mine))
    s.setValue("collections", [str(mine)])
    s.setValue("thumb_size", 200)
    s.sync()
    before = ini.read_bytes()
    other = tmp_path / "fresh-catalog-for-the-hook"
    shot = tmp_path / "shot.png"
    env = dict(os.environ, LOOKALIKE_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    for cat in (catalog, other):  # an existing catalog, and one the hook creates
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "gui", "--catalog", str(cat), "--query",
                               str(photos / "scene1.jpg"), "--screenshot", str(shot)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert shot.is_file(), done.stderr
        shot.unlink()
    assert ini.read_bytes() == before
    assert not mine.exists()


def test_results_show_calibrated_similarity_and_a_no_good_match_line(qtbot, scene_catalog):
    catalog, photos = scene_catalog
    w = make_window(qtbot, catalog)
    query_and_wait(qtbot, w, photos / "scene1.jpg")
    second = w.search.results.model.item(1)
    # Every photo of this collection scores below this calibration's chance level.
    cal = ScoreCalibration("rmac", typical=second.score - 0.2, chance=second.score + 0.01, copy=1.5,
                           spread=0.05, photos=12)
    w.search.results.set_calibration(cal)
    assert w.search.results.model.data(w.search.results.model.index(1)).startswith(f"#2 · {cal.percent(second.score):.0f} %")
    assert "No good match" in w.search.results.note_label.text() and w.search.results.note_label.isVisibleTo(w)
    good = ScoreCalibration("rmac", typical=second.score - 0.4, chance=second.score - 0.2, copy=1.0,
                            spread=0.05, photos=12)
    w.search.results.set_calibration(good)
    assert "No good match" not in w.search.results.note_label.text()
    w.search.results.threshold_slider.setValue(50)  # the slider is in calibrated percent now
    assert w.search.results.threshold_label.text() == "≥ 50 %"
    assert all(it.score >= good.chance - 1e-9 for it in w.search.results.model.items())


def test_a_query_on_an_empty_collection_gets_advice_for_the_window_not_the_cli(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "empty")
    query_and_wait(qtbot, w, photo_folder / "scene0.jpg")
    text = w.banner.text.text()
    assert w.banner.isVisible() and "Add… under Folders" in text and "lookalike index" not in text


def test_a_second_window_on_the_same_collection_is_warned(qtbot, scene_catalog):
    catalog, _photos = scene_catalog
    first = make_window(qtbot, catalog)
    second = make_window(qtbot, catalog)
    assert "already open in another Lookalike window" in second.banner.text.text() and second.banner.isVisible()
    assert "already open" not in first.banner.text.text()
    second.close()
    first.close()
    third = make_window(qtbot, catalog)  # the lock went with the windows
    assert "already open" not in third.banner.text.text()


def test_browse_says_where_the_photos_are_when_a_folder_only_has_sub_folders(qtbot, tmp_path, photo_folder):
    w = make_window(qtbot, tmp_path / "cat")
    nested = tmp_path / "top"
    nested.mkdir()
    (photo_folder).rename(nested / "photos")
    with qtbot.waitSignal(w.index_finished, timeout=WAIT_MS):
        w.add_folders([str(nested)])
    v = w.browse_view
    w.tabs.setCurrentWidget(v)
    v.show_folder(str(nested))
    assert v.model.rowCount() == 0
    assert "12 photos in sub-folders" in v.count_label.text() and "Sub-folders" in v.count_label.text()
    v.subfolders.setChecked(True)
    assert v.model.rowCount() == 12 and v.count_label.text() == "12 photos"
