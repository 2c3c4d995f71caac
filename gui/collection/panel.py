"""The Collection dock: the collection list, its folders, what is indexed, the failed files."""
from __future__ import annotations

import os
import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QListWidget, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.errors import LookalikeError
from engine.services.formatting import plural

from ..workers import readable_error
from .session import CollectionSession


class CollectionPanel(QWidget):
    """Shows the session's collection; its buttons act on the session or ask ``start_index()``.

    ``method_picker.set_current(name)`` is told the active method whenever the facts are read.
    """

    def __init__(self, session: CollectionSession, method_picker, start_index, parent=None):
        super().__init__(parent)
        self.session = session
        self.method_picker = method_picker
        self.failed_files: list[tuple[str, str]] = []
        self.failures_dialog: QDialog | None = None
        self._indexing = False
        session.opened.connect(lambda _col: self.refresh_list())
        session.known_changed.connect(self.refresh_list)
        self.collection_combo = QComboBox()
        self.collection_combo.setToolTip("Each collection has its own catalog")
        self.collection_combo.activated.connect(lambda i: session.choose(self.collection_combo.itemData(i)))
        self.collection_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.collection_combo.setMinimumContentsLength(10)
        self.collection_combo.setPlaceholderText("Choose a collection")
        new_col = QPushButton("New…")
        new_col.clicked.connect(session.new_collection)
        forget_col = QPushButton("Forget")
        forget_col.setToolTip("Remove this collection from the list (its catalog stays on disk)")
        forget_col.clicked.connect(session.forget)
        self.folder_list = QListWidget()
        self.folder_list.setToolTip("Photo folders of this collection (drop a folder on the window to add it)")
        self.add_folder_button = add_folder = QPushButton("Add…")
        add_folder.setToolTip("Add a photo folder to this collection (its photos are indexed)")
        add_folder.clicked.connect(self.choose_folder)
        self.remove_folder_button = QPushButton("Remove")
        self.remove_folder_button.setToolTip("Remove the selected folder from this collection (the photos stay on disk)")
        self.remove_folder_button.clicked.connect(self._remove_selected_folder)
        self.index_button = QPushButton("Index now")
        self.index_button.clicked.connect(lambda: start_index())
        self.start_index = start_index
        lay = QVBoxLayout(self)
        lay.addWidget(self.collection_combo)
        lay.addLayout(_row(new_col, forget_col))
        self.folders_label = QLabel("Folders")
        lay.addWidget(self.folders_label)
        lay.addWidget(self.folder_list, 1)
        lay.addLayout(_row(add_folder, self.remove_folder_button))
        lay.addLayout(self._build_facts())
        lay.addWidget(self.index_button)

    def _build_facts(self) -> QFormLayout:
        self.info_images = QLabel("-")
        self.info_method = QLabel("-")
        self.info_last = QLabel("-")
        for label in (self.info_images, self.info_method):
            label.setWordWrap(True)  # "512 of 1008 indexed so far" must not widen the dock
        self.failed_button = QPushButton("0 failed")
        self.failed_button.setFlat(True)
        self.failed_button.setToolTip("Show the files that could not be indexed, with the reason")
        self.failed_button.clicked.connect(self.show_failures)
        form = QFormLayout()
        form.addRow("Images", self.info_images)
        form.addRow("Indexed with", self.info_method)
        form.addRow("Last indexed", self.info_last)
        form.addRow("Failed", self.failed_button)
        return form

    # -- what is shown ------------------------------------------------------------------------
    def refresh_list(self) -> None:
        """The known collections, the open one chosen (none when none is open)."""
        combo, col = self.collection_combo, self.session.collection
        combo.blockSignals(True)
        combo.clear()
        for d in self.session.known():
            combo.addItem(self.session.label(d), d)
            combo.setItemData(combo.count() - 1, d, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(-1 if col is None else combo.findData(str(col.directory)))
        combo.blockSignals(False)
        self.index_button.setEnabled(col is not None and not self._indexing)

    def refresh(self) -> None:
        """The folders and facts of the open collection, read again."""
        col = self.session.collection
        self.folder_list.clear()
        self._set_read_only(col is not None and col.read_only)
        if col is not None and col.read_only:
            self._refresh_archive(col)
            return
        if col is None:
            for label in (self.info_images, self.info_method, self.info_last):
                label.setText("-")
            self._show_failed([])
            return
        try:
            st = col.status()
        except (LookalikeError, OSError) as exc:
            self.session.banner.show_message(readable_error(exc))
            return
        self.folder_list.addItems(st["folders"])
        counts = {m["name"]: m["descriptors"] for m in st["methods"]}
        self.info_images.setText(str(st["images"]))
        active = st["active_method"]
        done = counts.get(active, 0)
        if not st["images"]:
            self.info_method.setText(f"{active} (nothing indexed yet)")
        else:
            self.info_method.setText(f"{active} ({done} of {st['images']})" if done < st["images"]
                                     else f"{active} (all {plural(done, 'photo')})")
        self.info_last.setText(time.strftime("%Y-%m-%d %H:%M", time.localtime(st["last_indexed"]))
                               if st["last_indexed"] else "never")
        self._show_failed([(f["path"], f["reason"]) for f in st["failed"]])
        self.method_picker.set_current(active)

    def _set_read_only(self, read_only: bool) -> None:
        """An archive's panel: its recorded sources, no folder or index buttons."""
        for button in (self.add_folder_button, self.remove_folder_button, self.index_button):
            button.setVisible(not read_only)
        self.folders_label.setText("Sources, as the archive recorded them" if read_only else "Folders")
        self.folder_list.setToolTip("The folders the archive's workers described (read-only)" if read_only else
                                    "Photo folders of this collection (drop a folder on the window to add it)")

    def _refresh_archive(self, col) -> None:
        try:
            st = col.status()
            failed = col.failures()
        except (LookalikeError, OSError) as exc:
            self.session.banner.show_message(readable_error(exc))
            return
        # Sources recorded on the workers' hosts: say which this machine cannot see.
        self.folder_list.addItems([s if os.path.isdir(s) else f"{s}  (not reachable here)" for s in st["sources"]])
        index = st["index"]
        searchable = index["photos"] if index else 0
        planned = st["planned_photos"]
        self.info_images.setText(f"{searchable} searchable (archive)" if searchable >= planned else
                                 f"{searchable} searchable of {planned} planned")
        self.info_method.setText(f"{st['method']} (read-only)")
        self.info_last.setText(time.strftime("index built %Y-%m-%d %H:%M", time.localtime(index["built"]))
                               if index else "no index built yet")
        self._show_failed(failed)
        self.method_picker.set_current(st["method"])

    def _show_failed(self, failed: list[tuple[str, str]]) -> None:
        self.failed_files = list(failed)
        n_failed = len(self.failed_files)
        self.failed_button.setText(f"{plural(n_failed, 'file')} – show" if n_failed else "none")
        self.failed_button.setEnabled(bool(self.failed_files))

    def set_indexing(self, on: bool) -> None:
        self._indexing = on
        self.index_button.setEnabled(not on and self.session.collection is not None)

    def show_indexing(self, done: int, total: int, method: str) -> None:
        self.info_images.setText(f"{done} of {total} indexed so far")
        self.info_method.setText(f"{method} (indexing…)")

    # -- actions ------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a photo folder")
        if folder and self.session.add_folder(folder):
            self.start_index()

    def _remove_selected_folder(self) -> None:
        item = self.folder_list.currentItem()
        if item is not None:
            self.session.remove_folder(item.text())

    def show_failures(self) -> None:
        dlg = QDialog(self)
        dlg.setWindowTitle("Files that could not be indexed")
        table = QTableWidget(len(self.failed_files), 2)
        table.setHorizontalHeaderLabels(["File", "Reason"])
        for r, (p, reason) in enumerate(self.failed_files):
            table.setItem(r, 0, QTableWidgetItem(p))
            table.setItem(r, 1, QTableWidgetItem(reason))
        table.resizeColumnsToContents()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dlg.reject)
        lay = QVBoxLayout(dlg)
        lay.addWidget(table)
        lay.addWidget(buttons)
        dlg.resize(800, 400)
        dlg.show()
        self.failures_dialog = dlg


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row
