"""Browse tab (pytest-qt, offscreen): tree counts, sorting, find similar from the grid, region
query from a dragged box, back/forward. (Duplicates tab: tests/test_duplicates_gui.py.)"""
from __future__ import annotations

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

    def clear_pending(self) -> None:
        """Nothing is queued: decoding is what ``finish`` stands for."""


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
    from gui.browse.view import BrowseView

    v = BrowseView(lambda: col, thumbs if thumbs is not None else FakeThumbnails(), None)
    qtbot.addWidget(v)
    v.resize(1100, 700)
    v.show()
    qtbot.waitExposed(v)
    return v


def test_tree_shows_photo_counts_and_a_failure_badge(qtbot, col, collection_dir):
    from gui.browse.view import COUNT_ROLE, FAILED_ROLE, PATH_ROLE

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


# The Duplicates tab's tests are in tests/test_duplicates_gui.py (they use the fixtures above).


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
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        v.similar_btn.click()
    assert w.search.results.model.total() > 0
