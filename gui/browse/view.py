"""Browse tab: folder tree with photo counts and failure badges, a photo grid, a viewer pane.

``BrowseView(collection_getter, thumbnails, parent)``; ``collection_getter()`` returns the
current ``engine.api.Collection`` or None. Emits ``find_similar(path)`` and
``find_similar_region(path, box, box_mode)``; the main window runs the query.
Everything is read from the catalog (``engine.services.browse.CollectionBrowser``): no disk walk.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QEvent, QModelIndex, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (QAction, QColor, QDesktopServices, QIcon, QKeySequence, QPainter, QPixmap, QShortcut,
                           QStandardItem, QStandardItemModel)
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QListView,
                               QListWidget, QMenu, QPushButton, QSplitter, QStackedWidget, QToolButton, QTreeView,
                               QVBoxLayout, QWidget)

from engine.services.browse import CollectionBrowser, FolderNode, PhotoEntry

from engine.services.formatting import plural

from ..search.grid_delegate import ThumbnailGridDelegate, grid_cell_size
from ..search.viewer import PhotoViewer

PATH_ROLE = Qt.ItemDataRole.UserRole + 1
COUNT_ROLE = Qt.ItemDataRole.UserRole + 2
FAILED_ROLE = Qt.ItemDataRole.UserRole + 3

SORTS = (("Name", "name", False), ("Date taken (oldest first)", "date", False),
         ("Date taken (newest first)", "date", True), ("Size (largest first)", "size", True),
         ("Size (smallest first)", "size", False))


@dataclass(frozen=True)
class BrowseState:
    """One entry of the back/forward history."""

    folder: str | None
    viewer_path: str | None = None


def folder_label(node: FolderNode) -> str:
    text = f"{node.name}  ({node.total_photos})"
    if node.total_failed:
        text += f"  ⚠ {node.total_failed}"
    return text


def _badge_icon() -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(200, 60, 50))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(1, 1, 12, 12)
    p.setPen(QColor("white"))
    p.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, "!")
    p.end()
    return QIcon(pix)


class FolderTreeModel(QStandardItemModel):
    """Folders of the collection: label ``name (photos)  ⚠ failed``; path/count/failed in roles."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHorizontalHeaderLabels(["Folders"])
        self._items: dict[str, QStandardItem] = {}
        self._badge = None

    def set_tree(self, roots: list[FolderNode]) -> None:
        self.clear()
        self.setHorizontalHeaderLabels(["Folders"])
        self._items.clear()
        if self._badge is None:
            self._badge = _badge_icon()

        def add(parent: QStandardItem, node: FolderNode) -> None:
            item = QStandardItem(folder_label(node))
            item.setEditable(False)
            item.setData(node.path, PATH_ROLE)
            item.setData(node.total_photos, COUNT_ROLE)
            item.setData(node.total_failed, FAILED_ROLE)
            tip = f"{node.path}\n{plural(node.photos, 'photo')} here, {node.total_photos} with sub-folders"
            if node.total_failed:
                item.setIcon(self._badge)
                tip += f"\n{plural(node.total_failed, 'file')} could not be indexed (click to list them)"
            item.setToolTip(tip)
            self._items[node.path] = item
            parent.appendRow(item)
            for c in node.children:
                add(item, c)

        for r in roots:
            add(self.invisibleRootItem(), r)

    def index_of(self, path: str) -> QModelIndex:
        item = self._items.get(path)
        return item.index() if item is not None else QModelIndex()


class PhotoGridModel(QAbstractListModel):
    """Photos of the current listing; thumbnails requested lazily from the shared provider."""

    def __init__(self, thumbnails, parent=None, icon_size: int = 160):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.icon_size = icon_size
        self.entries: list[PhotoEntry] = []
        self._row_of: dict[str, int] = {}
        self._placeholder: QPixmap | None = None
        if thumbnails is not None:
            thumbnails.ready.connect(self._on_ready)

    def set_entries(self, entries: list[PhotoEntry]) -> None:
        self.beginResetModel()
        self.entries = list(entries)
        self._row_of = {e.path: i for i, e in enumerate(self.entries)}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.entries)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.entries):
            return None
        e = self.entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return e.name
        if role == Qt.ItemDataRole.DecorationRole:
            pix = self.thumbnails.request(e.path, self.icon_size) if self.thumbnails is not None else None
            return pix if pix is not None else self._loading()
        if role == Qt.ItemDataRole.ToolTipRole:
            res = f"{e.width} × {e.height}" if e.width else "?"
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.date))
            src = "taken" if e.taken is not None else "modified"
            return f"{e.path}\n{res} px, {e.size / 1e6:.2f} MB\n{src} {when}"
        if role == PATH_ROLE:
            return e.path
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(self.icon_size + 24, self.icon_size + 40)
        return None

    def path_at(self, row: int) -> str | None:
        return self.entries[row].path if 0 <= row < len(self.entries) else None

    def row_of(self, path: str) -> int | None:
        return self._row_of.get(path)

    def thumbnails_loaded(self, rows) -> bool:
        if self.thumbnails is None:
            return True
        return all(self.thumbnails.request(self.entries[r].path, self.icon_size) is not None
                   for r in rows if r < len(self.entries))

    def _loading(self) -> QPixmap:
        if self._placeholder is None or self._placeholder.width() != self.icon_size:
            self._placeholder = QPixmap(self.icon_size, self.icon_size)
            self._placeholder.fill(QColor(128, 128, 128, 60))
        return self._placeholder

    def _on_ready(self, path: str) -> None:
        row = self._row_of.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


class BrowseView(QWidget):
    """Folder tree + photo grid + viewer, with back/forward history."""

    find_similar = Signal(str)
    find_similar_region = Signal(str, tuple, str)

    def __init__(self, collection_getter, thumbnails, parent: QWidget | None = None):
        super().__init__(parent)
        self.collection_getter = collection_getter
        self.thumbnails = thumbnails
        self.browser: CollectionBrowser | None = None
        self._loaded_for: tuple | None = None
        self.folder: str | None = None
        self.history: list[BrowseState] = []
        self.history_pos = -1
        self._navigating = False

        split = QSplitter()
        split.addWidget(self._build_folders())
        split.addWidget(self._build_photos())
        split.setStretchFactor(1, 4)
        split.setSizes([260, 900])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        # Key S on the grid: an event filter, since item views eat letter keys (keyboard search).
        # Alt+Left/Right also through the filter: offscreen / inactive windows get no shortcuts.
        self.grid.installEventFilter(self)
        self.viewer.canvas.installEventFilter(self)
        for keys, slot in (("Alt+Left", self.go_back), ("Alt+Right", self.go_forward)):
            s = QShortcut(QKeySequence(keys), self)
            s.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            s.activated.connect(slot)
        self._update_nav()

    def _build_folders(self) -> QWidget:
        """Left: the folder tree and the failures of the selected folder."""
        self.tree_model = FolderTreeModel(self)
        self.tree = QTreeView()
        self.tree.setModel(self.tree_model)
        self.tree.setHeaderHidden(True)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.selectionModel().currentChanged.connect(self._on_tree_current)
        self.failures = QListWidget()
        self.failures.setToolTip("Files of this folder that could not be indexed, with the reason")
        self.failures_label = QLabel()
        left = QWidget()
        left.setMinimumWidth(220)
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.tree, 3)
        ll.addWidget(self.failures_label)
        ll.addWidget(self.failures, 1)
        self.failures.hide()
        self.failures_label.hide()
        return left

    def _build_toolbar(self) -> QHBoxLayout:
        """Back / forward, sort, sub-folders, the name filter, the count and Find similar."""
        self.back_btn = QToolButton()
        self.back_btn.setText("◀")
        self.back_btn.setToolTip("Back (Alt+Left)")
        self.back_btn.clicked.connect(self.go_back)
        self.forward_btn = QToolButton()
        self.forward_btn.setText("▶")
        self.forward_btn.setToolTip("Forward (Alt+Right)")
        self.forward_btn.clicked.connect(self.go_forward)
        self.sort_combo = QComboBox()
        for label, key, desc in SORTS:
            self.sort_combo.addItem(label, (key, desc))
        self.sort_combo.currentIndexChanged.connect(lambda _i: self.refresh_listing())
        self.subfolders = QCheckBox("Sub-folders")
        self.subfolders.setToolTip("Also show the photos of sub-folders")
        self.subfolders.toggled.connect(lambda _on: self.refresh_listing())
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by file name")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(lambda _t: self.refresh_listing())
        self.similar_btn = QPushButton("Find similar")
        self.similar_btn.setToolTip("Find photos similar to the selected one (S)")
        self.similar_btn.clicked.connect(self.find_similar_to_current)
        self.count_label = QLabel()
        bar = QHBoxLayout()
        for w in (self.back_btn, self.forward_btn, self.sort_combo, self.subfolders):
            bar.addWidget(w)
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(self.count_label)
        bar.addWidget(self.similar_btn)
        return bar

    def _build_photos(self) -> QWidget:
        """Right: the toolbar over the photo grid, or the viewer in its place."""
        bar = self._build_toolbar()
        self.model = PhotoGridModel(self.thumbnails, self)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(200)
        self.grid.setIconSize(QSize(self.model.icon_size, self.model.icon_size))
        self.grid.setGridSize(grid_cell_size(self.model.icon_size, self.grid.fontMetrics().height(), 1) + QSize(8, 8))
        self.grid.setItemDelegate(ThumbnailGridDelegate(self.model.icon_size, lines=1, parent=self.grid))
        self.grid.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setModel(self.model)
        self.grid.doubleClicked.connect(lambda idx: self.open_viewer(self.model.path_at(idx.row())))
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid.customContextMenuRequested.connect(self._grid_menu)
        self.viewer = PhotoViewer()
        self.viewer.closed.connect(lambda: self.close_viewer(record=True))
        self.viewer.find_similar.connect(self.find_similar)
        self.viewer.find_similar_region.connect(self.find_similar_region)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.grid)
        self.stack.addWidget(self.viewer)
        # The viewer has its own "Find similar" (for the photo or a box on it): one button at a time.
        self.stack.currentChanged.connect(lambda _i: self.similar_btn.setVisible(self.stack.currentWidget() is self.grid))
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(bar)
        rl.addWidget(self.stack, 1)
        return right

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.KeyPress and event.modifiers() == Qt.KeyboardModifier.AltModifier:
            if event.key() == Qt.Key.Key_Left:
                self.go_back()
                return True
            if event.key() == Qt.Key.Key_Right:
                self.go_forward()
                return True
        if (obj is self.grid and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_S
                and not (event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier)):
            self.find_similar_to_current()
            return True
        return super().eventFilter(obj, event)

    # -- loading --------------------------------------------------------------------------
    def _key(self, col) -> tuple | None:
        if col is None:
            return None
        return (id(col), col.image_count(), len(col.failures()), tuple(col.folders()))

    def reload(self, force: bool = False) -> None:
        """Re-read the catalog (when the collection changed or was re-indexed)."""
        col = self.collection_getter()
        key = self._key(col)
        if not force and key == self._loaded_for and self.browser is not None:
            return
        self._loaded_for = key
        self.browser = col.browser() if col is not None else None
        self.tree_model.set_tree(self.browser.tree() if self.browser else [])
        self.tree.expandToDepth(0)
        if self.folder is None and self.browser and self.browser.roots:
            self.folder = self.browser.roots[0]
        if self.folder is not None:
            self._select_tree(self.folder)
        self.refresh_listing()

    def showEvent(self, e) -> None:
        super().showEvent(e)
        self.reload()

    def show_folder(self, folder: str, record: bool = True) -> None:
        """Show the photos of ``folder`` (an absolute path of the collection or a sub-folder)."""
        if self.browser is None:
            self.reload()
        self.folder = os.path.abspath(os.path.expanduser(folder))
        self._select_tree(self.folder)
        self.close_viewer(record=False)
        self.refresh_listing()
        if record:
            self._push(BrowseState(self.folder))

    def _select_tree(self, folder: str) -> None:
        idx = self.tree_model.index_of(folder)
        if idx.isValid():
            self._navigating = True
            try:
                self.tree.setCurrentIndex(idx)
                self.tree.scrollTo(idx)
            finally:
                self._navigating = False
        self._show_failures(folder)

    def _on_tree_current(self, current: QModelIndex, _prev) -> None:
        if self._navigating or not current.isValid():
            return
        self.show_folder(current.data(PATH_ROLE))

    def _show_failures(self, folder: str) -> None:
        self.failures.clear()
        fails = self.browser.failures_in(folder, recursive=True) if self.browser else []
        for path, reason in fails:
            self.failures.addItem(f"{os.path.relpath(path, folder)}: {reason}")
        self.failures_label.setText(f"⚠ {plural(len(fails), 'file')} could not be indexed:")
        self.failures.setVisible(bool(fails))
        self.failures_label.setVisible(bool(fails))

    def sort_key(self) -> tuple[str, bool]:
        return self.sort_combo.currentData()

    def set_sort(self, key: str, descending: bool = False) -> None:
        for i in range(self.sort_combo.count()):
            if self.sort_combo.itemData(i) == (key, descending):
                self.sort_combo.setCurrentIndex(i)
                return
        raise ValueError(f"unknown sort {key!r} descending={descending}")

    def refresh_listing(self) -> None:
        if self.browser is None:
            self.model.set_entries([])
            self.count_label.setText("No collection")
            return
        key, desc = self.sort_key()
        entries = self.browser.list_photos(self.folder, recursive=self.subfolders.isChecked(), sort=key,
                                           descending=desc, name_filter=self.filter_edit.text())
        if self.thumbnails is not None:
            self.thumbnails.clear_pending()
        self.model.set_entries(entries)
        self.count_label.setText(plural(len(entries), "photo"))
        self.count_label.setToolTip("")
        below = self.tree_model.index_of(self.folder).data(COUNT_ROLE) if self.folder else None
        if not entries and not self.subfolders.isChecked() and not self.filter_edit.text() and below:
            # The top folder of a collection often holds only sub-folders: say where the photos are.
            self.count_label.setText(f"No photos directly here; {plural(below, 'photo')} in sub-folders: tick Sub-folders")
            self.count_label.setToolTip("Sub-folders shows the photos of every folder below this one too")
        if self.stack.currentWidget() is self.viewer:
            self.viewer.paths = [e.path for e in entries]

    def visible_paths(self) -> list[str]:
        return [e.path for e in self.model.entries]

    # -- selection and queries ------------------------------------------------------------
    def current_path(self) -> str | None:
        if self.stack.currentWidget() is self.viewer:
            return self.viewer.current_path()
        idx = self.grid.currentIndex()
        return self.model.path_at(idx.row()) if idx.isValid() else None

    def find_similar_to_current(self) -> None:
        p = self.current_path()
        if p:
            self.find_similar.emit(p)

    def _grid_menu(self, pos) -> None:
        idx = self.grid.indexAt(pos)
        if not idx.isValid():
            return
        self.grid.setCurrentIndex(idx)
        self.grid_menu(self.model.path_at(idx.row())).exec(self.grid.viewport().mapToGlobal(pos))

    def grid_menu(self, path: str) -> QMenu:
        menu = QMenu(self)
        act = QAction("Find similar", menu)
        act.setShortcut(QKeySequence(Qt.Key.Key_S))
        act.triggered.connect(lambda: self.find_similar.emit(path))
        menu.addAction(act)
        menu.addAction("Open in viewer", lambda: self.open_viewer(path))
        menu.addAction("Show in folder", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path))))
        menu.addAction("Open with the default application", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(path)))
        return menu

    # -- viewer ---------------------------------------------------------------------------
    def open_viewer(self, path: str | None, record: bool = True) -> None:
        if not path:
            return
        self.viewer.set_paths(self.visible_paths(), path)
        self.stack.setCurrentWidget(self.viewer)
        self.viewer.canvas.setFocus()
        if record:
            self._push(BrowseState(self.folder, path))

    def close_viewer(self, record: bool = False) -> None:
        if self.stack.currentWidget() is not self.viewer:
            return
        p = self.viewer.current_path()
        self.stack.setCurrentWidget(self.grid)
        if p is not None:
            row = self.model.row_of(p)
            if row is not None:
                self.grid.setCurrentIndex(self.model.index(row))
        self.grid.setFocus()
        if record:
            self._push(BrowseState(self.folder))

    # -- history --------------------------------------------------------------------------
    def _push(self, state: BrowseState) -> None:
        if 0 <= self.history_pos < len(self.history) and self.history[self.history_pos] == state:
            return
        del self.history[self.history_pos + 1:]
        self.history.append(state)
        self.history_pos = len(self.history) - 1
        self._update_nav()

    def _restore(self, state: BrowseState) -> None:
        if state.folder is not None and state.folder != self.folder:
            self.show_folder(state.folder, record=False)
        if state.viewer_path:
            self.open_viewer(state.viewer_path, record=False)
        else:
            self.close_viewer(record=False)
        self._update_nav()

    def can_go_back(self) -> bool:
        return self.history_pos > 0

    def can_go_forward(self) -> bool:
        return self.history_pos + 1 < len(self.history)

    def go_back(self) -> None:
        if self.can_go_back():
            self.history_pos -= 1
            self._restore(self.history[self.history_pos])

    def go_forward(self) -> None:
        if self.can_go_forward():
            self.history_pos += 1
            self._restore(self.history[self.history_pos])

    def _update_nav(self) -> None:
        self.back_btn.setEnabled(self.can_go_back())
        self.forward_btn.setEnabled(self.can_go_forward())
