"""Browse and Duplicates tabs (pytest-qt, offscreen): tree counts, sorting, find similar from the
grid, region query from a dragged box, back/forward, duplicate groups and safe moves."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, QPoint, Qt, Signal  # noqa: E402
from PySide6.QtGui import QColor, QPixmap  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from engine.api import Collection  # noqa: E402
from tests.conftest import write_copies_folder  # noqa: E402

WAIT_MS = 180_000  # generous: the machine is shared; nothing here asserts on speed
SMALL = {"image_side": 256}


class FakeThumbnails(QObject):
    """The ThumbnailProvider interface: None on first request, then a pixmap after ``ready``."""

    ready = Signal(str)

    def __init__(self):
        super().__init__()
        self.requested: list[str] = []
        self.loaded: set[str] = set()

    def request(self, path: str, size: int):
        self.requested.append(path)
        if path in self.loaded:
            pix = QPixmap(size, size)
            pix.fill(QColor("steelblue"))
            return pix
        return None

    def finish(self, path: str) -> None:
        self.loaded.add(path)
        self.ready.emit(path)


@pytest.fixture(autouse=True)
def lookalike_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def collection_dir(tmp_path_factory):
    """photos/: 4 scenes + 4 unrelated; photos/copies/: a 75 % copy, a q80 copy and a byte copy of
    each scene; photos/copies/broken.jpg fails. Indexed once with rmac (small input)."""
    root = tmp_path_factory.mktemp("browse")
    photos = write_copies_folder(root / "photos", vary_other_sizes=True)
    (photos / "copies" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    col = Collection.open(root / "catalog")
    col.add_folder(photos)
    report = col.index(method="rmac", overrides=SMALL)
    assert report.indexed == 20 and len(report.failed) == 1
    col.close()
    return root / "catalog", photos


@pytest.fixture
def col(collection_dir):
    c = Collection.open(collection_dir[0], create=False)
    yield c
    c.close()


def _browse(qtbot, col, thumbs=None):
    from gui.browse_view import BrowseView

    v = BrowseView(lambda: col, thumbs if thumbs is not None else FakeThumbnails(), None)
    qtbot.addWidget(v)
    v.resize(1100, 700)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_tree_shows_photo_counts_and_a_failure_badge(qtbot, col, collection_dir):
    from gui.browse_view import COUNT_ROLE, FAILED_ROLE, PATH_ROLE

    _cat, photos = collection_dir
    v = _browse(qtbot, col)
    root = v.tree_model.index(0, 0)
    assert root.data(PATH_ROLE) == str(photos) and root.data(COUNT_ROLE) == 20
    assert root.data(FAILED_ROLE) == 1 and "(20)" in root.data() and "⚠ 1" in root.data()
    sub = v.tree_model.index(0, 0, root)
    assert sub.data(PATH_ROLE) == str(photos / "copies") and sub.data(COUNT_ROLE) == 12
    # Clicking the folder lists its photos, and its failed file with the reason.
    v.tree.setCurrentIndex(sub)
    assert v.model.rowCount() == 12 and v.folder == str(photos / "copies")
    assert v.failures.isVisibleTo(v) and v.failures.count() == 1
    assert v.failures.item(0).text().startswith("broken.jpg: ")


def test_grid_sorts_filters_and_fills_thumbnails_when_ready(qtbot, col, collection_dir):
    _cat, photos = collection_dir
    thumbs = FakeThumbnails()
    v = _browse(qtbot, col, thumbs)
    v.show_folder(str(photos))
    assert v.model.rowCount() == 8
    v.set_sort("name")
    assert [e.name for e in v.model.entries][:2] == ["other0.jpg", "other1.jpg"]
    v.set_sort("size", descending=True)
    sizes = [e.size for e in v.model.entries]
    assert sizes == sorted(sizes, reverse=True)
    v.set_sort("date")
    dates = [e.date for e in v.model.entries]
    assert dates == sorted(dates)
    v.filter_edit.setText("SCENE")
    assert {e.name for e in v.model.entries} == {f"scene{i}.jpg" for i in range(4)}
    v.subfolders.setChecked(True)
    assert v.model.rowCount() == 16
    first = v.model.index(0)
    assert first.data(Qt.ItemDataRole.DecorationRole) is not None  # placeholder while loading
    path = v.model.path_at(0)
    assert path in thumbs.requested
    with qtbot.waitSignal(v.model.dataChanged, timeout=5000):
        thumbs.finish(path)
    assert first.data(Qt.ItemDataRole.DecorationRole).width() == v.model.icon_size


def test_key_s_on_the_grid_asks_for_similar_photos_and_the_query_finds_the_copies(qtbot, col, collection_dir):
    _cat, photos = collection_dir
    v = _browse(qtbot, col)
    v.show_folder(str(photos))
    v.set_sort("name")
    row = next(i for i, e in enumerate(v.model.entries) if e.name == "scene2.jpg")
    v.grid.setFocus()
    v.grid.setCurrentIndex(v.model.index(row))
    with qtbot.waitSignal(v.find_similar, timeout=5000) as sig:
        QTest.keyClick(v.grid, Qt.Key.Key_S)
    assert sig.args == [str(photos / "scene2.jpg")]
    results = col.search(sig.args[0], top=4)
    assert {Path(r.path).name for r in results} == {"scene2.jpg", "scene2_same.jpg", "scene2_q80.jpg",
                                                     "scene2_small.jpg"}
    # The context menu offers the same action.
    menu = v.grid_menu(sig.args[0])
    with qtbot.waitSignal(v.find_similar, timeout=5000):
        next(a for a in menu.actions() if a.text() == "Find similar").trigger()


def test_dragging_a_box_in_the_viewer_queries_that_region(qtbot, col, collection_dir):
    _cat, photos = collection_dir
    v = _browse(qtbot, col)
    v.show_folder(str(photos))
    v.set_sort("name")
    target = str(photos / "scene1.jpg")
    v.open_viewer(target)
    assert v.stack.currentWidget() is v.viewer and v.viewer.current_path() == target
    assert "320 × 240 px" in v.viewer.details.text()
    canvas = v.viewer.canvas
    qtbot.waitUntil(lambda: canvas.image_rect().width() > 0, timeout=5000)
    r = canvas.image_rect()
    p1 = QPoint(int(r.left() + 0.25 * r.width()), int(r.top() + 0.25 * r.height()))
    p2 = QPoint(int(r.left() + 0.75 * r.width()), int(r.top() + 0.75 * r.height()))
    assert v.viewer.similar_btn.text() == "Find similar" and not v.viewer.box_mode.isVisibleTo(v.viewer)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, p1)
    QTest.mouseMove(canvas, p2)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, p2)
    # One "Find similar" button: with a box dragged it searches for the box.
    assert v.viewer.similar_btn.text() == "Find similar to the box" and v.viewer.box_mode.isVisibleTo(v.viewer)
    assert not v.similar_btn.isVisibleTo(v)  # the grid's own button hides while the viewer shows
    with qtbot.waitSignal(v.find_similar_region, timeout=5000) as sig:
        v.viewer.similar_btn.click()
    path, box, mode = sig.args
    assert path == target and mode == "image"
    x1, y1, x2, y2 = box
    assert abs(x1 - 80) < 6 and abs(y1 - 60) < 6 and abs(x2 - 240) < 6 and abs(y2 - 180) < 6
    results = col.search(path, top=3, box=box, box_mode=mode)
    assert results and Path(results[0].path).name.startswith("scene1")
    # Arrow keys move through the listing.
    QTest.keyClick(canvas, Qt.Key.Key_Right)
    assert v.viewer.current_path() != target


def test_back_and_forward_walk_the_browse_history(qtbot, col, collection_dir):
    _cat, photos = collection_dir
    v = _browse(qtbot, col)
    top, sub = str(photos), str(photos / "copies")
    v.show_folder(top)
    v.show_folder(sub)
    v.open_viewer(v.model.path_at(0))
    assert v.stack.currentWidget() is v.viewer
    QTest.keyClick(v.viewer.canvas, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)  # back: grid of sub
    assert v.stack.currentWidget() is v.grid and v.folder == sub
    v.go_back()
    assert v.folder == top and v.model.rowCount() == 8 and not v.can_go_back()
    QTest.keyClick(v.grid, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert v.folder == sub
    v.go_forward()
    assert v.stack.currentWidget() is v.viewer
    assert not v.can_go_forward()
    v.go_back()
    v.show_folder(top)  # a new navigation drops the forward history
    assert not v.can_go_forward()


def _duplicates(qtbot, col):
    from gui.duplicates_view import DuplicatesView

    v = DuplicatesView(lambda: col, FakeThumbnails(), None)
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    qtbot.waitUntil(lambda: v.finder is not None, timeout=WAIT_MS)
    return v


def test_duplicates_view_groups_the_copies_and_regroups_with_the_slider(qtbot, col):
    v = _duplicates(qtbot, col)
    # Generated scenes are more alike than real photos: a stricter threshold than the default.
    v.set_threshold(0.93)
    assert len(v.groups) == 4
    for g in v.groups:
        names = {Path(p).name.split("_")[0].split(".")[0] for p in g.paths}
        assert len(names) == 1 and len(g.members) == 4
        assert g.keep.pixels == max(m.pixels for m in g.members)
    # The suggested keeper is unchecked, the other three are checked.
    assert len(v.checked_paths()) == 12
    assert all(not w.cards[0].check.isChecked() for w in v.group_widgets)
    v.slider.setValue(99)
    qtbot.waitUntil(lambda: len(v.groups) == 4 and all(g.exact for g in v.groups), timeout=5000)
    assert all(len(g.members) == 2 for g in v.groups)  # only the byte copies remain
    assert "scene" in v.copy_list()


def test_duplicates_view_offers_a_calibrated_threshold_and_keeps_a_users_own(qtbot, col, monkeypatch):
    import gui.duplicates_view as dv
    from engine.duplicate_threshold import ThresholdChoice

    # A method whose similarities run low (e.g. whitened cluster-MAC): its measured default.
    choice = ThresholdChoice(0.3, True, (0.1, 0.3, 0.5, 0.7))
    monkeypatch.setattr(dv, "duplicate_threshold", lambda c: choice)
    v = _duplicates(qtbot, col)
    assert v.slider.minimum() == 1 and v.slider.value() == 30 and v.threshold_label.text() == "0.30"
    assert "calibrated for rmac" in v.slider.toolTip()
    assert v.finder.config.threshold == 0.3 and v.finder.config.floor == 0.01
    v.slider.setValue(95)
    v.find_duplicates(force=True)
    qtbot.waitUntil(lambda: not v.busy() and v.finder is not None, timeout=WAIT_MS)
    assert v.slider.value() == 95  # the user's own threshold survives a recomputation


def test_big_collections_are_compared_in_a_worker_thread_and_scoped_to_a_folder(qtbot, col, collection_dir,
                                                                               monkeypatch):
    import gui.duplicates_view as dv

    _cat, photos = collection_dir
    monkeypatch.setattr(dv, "SYNC_LIMIT", 0)  # every collection counts as big
    v = dv.DuplicatesView(lambda: col, FakeThumbnails(), None)
    qtbot.addWidget(v)
    v.slider.setValue(93)
    v.show()
    qtbot.waitUntil(lambda: v.finder is not None and not v.busy(), timeout=WAIT_MS)
    assert len(v.groups) == 4
    v.set_scope(str(photos / "copies"))  # only the copies: 4 groups of 3
    qtbot.waitUntil(lambda: not v.busy() and v._finder_key is not None
                    and v._finder_key[-1] == str(photos / "copies"), timeout=WAIT_MS)
    assert len(v.groups) == 4 and all(len(g.members) == 3 for g in v.groups)
    assert all(Path(p).parent.name == "copies" for g in v.groups for p in g.paths)


def test_duplicates_view_moves_chosen_files_to_a_folder_and_deletes_nothing(qtbot, tmp_path, collection_dir):
    # Work on a private copy of the collection: this test moves files.
    _cat, photos = collection_dir
    mine = tmp_path / "photos"
    shutil.copytree(photos, mine)
    c = Collection.open(tmp_path / "cat")
    c.add_folder(mine)
    c.index(method="rmac", overrides=SMALL)
    before = {p.name: p.read_bytes() for p in mine.rglob("*.jpg")}
    v = _duplicates(qtbot, c)
    v.set_threshold(0.93)
    chosen = v.checked_paths()
    assert len(chosen) == 12
    # Cancelling the trash confirmation (which lists the files) leaves everything in place.
    asked = []
    v.confirm = lambda title, text, paths: asked.append(paths) or False
    assert v.move_checked_to_trash() == [] and asked == [chosen]
    assert all(os.path.exists(p) for p in chosen)
    dest = tmp_path / "moved"
    dest.mkdir()
    (dest / "scene0_q80.jpg").write_bytes(b"do not overwrite me")
    moved = v.move_checked_to(str(dest))
    assert len(moved) == 12 and all(not os.path.exists(p) for p in chosen)
    after = {p.name: p.read_bytes() for p in list(mine.rglob("*.jpg")) + list(dest.iterdir())}
    assert (dest / "scene0_q80.jpg").read_bytes() == b"do not overwrite me"
    assert (dest / "scene0_q80 (1).jpg").read_bytes() == before["scene0_q80.jpg"]
    # Every file's bytes are still somewhere: nothing deleted.
    assert sorted(before.values()) == sorted(b for n, b in after.items() if n != "scene0_q80.jpg")
    assert v.groups == [] and c.catalog.image_count() == 8
    c.close()


def test_find_similar_from_the_browse_tab_runs_the_query_in_the_main_window(qtbot, collection_dir):
    from gui.main_window import MainWindow

    cat, photos = collection_dir
    w = MainWindow(catalog_dir=str(cat), confirm=False, index_overrides=SMALL)
    qtbot.addWidget(w)
    w.show()
    assert w.browse_view is not None and w.duplicates_view is not None
    w.tabs.setCurrentWidget(w.browse_view)
    v = w.browse_view
    v.show_folder(str(photos))
    row = next(i for i, e in enumerate(v.model.entries) if e.name == "scene3.jpg")
    v.grid.setCurrentIndex(v.model.index(row))
    with qtbot.waitSignal(w.query_finished, timeout=WAIT_MS):
        v.similar_btn.click()
    assert w.model.total() > 0
