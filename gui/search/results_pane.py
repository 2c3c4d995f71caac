"""The Results page of the Search tab: path filter, sort, "hide near-duplicates", the similarity
threshold, the note above the grid and the grid itself.

Similarities are shown on the collection's calibrated scale once it is there (fitted or read
in a task: ``engine.api.score_calibration``); until then the slider spans the raw scores of the
current results.
"""
from __future__ import annotations

import logging
import os

from PySide6.QtCore import QEvent, QPoint, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QListView,
                               QMenu, QSlider, QVBoxLayout, QWidget)

from engine.api import score_calibration, stored_calibration
from engine.errors import LookalikeError
from engine.services import duplicate_threshold as thresholds  # looked up at call time: tests replace it
from engine.services.formatting import plural

from ..settings import THUMB_SIZES, AppSettings
from .grid_delegate import ThumbnailGridDelegate, grid_cell_size
from .results_model import NEAR_DUPLICATE_SCORE, PathRole, ResultsModel

log = logging.getLogger(__name__)


class ResultsPane(QWidget):
    """Shows a query's results; asks for what a result's menu or a double-click offers."""

    view_requested = Signal(str)  # path: show it large
    query_requested = Signal(str)  # path: search with it
    why_requested = Signal(str)  # path: explain it
    current_changed = Signal(str, float)  # path, score of the result now selected
    status_message = Signal(str, int)  # text, milliseconds (the window's status bar)
    failed = Signal(str)  # what could not be done, for the window's banner

    def __init__(self, thumbnails, tasks, collection_getter, settings: AppSettings, parent=None):
        super().__init__(parent)
        self.tasks = tasks
        self.collection_getter = collection_getter
        self.settings = settings
        self.model = ResultsModel(thumbnails, self)
        self.calibration = None  # engine.api.ScoreCalibration of the active method, or None
        self.score_range = (0.0, 1.0)
        self.searched_note = ""  # what the last query searched, when not the whole collection
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(self._build_filter_row())
        lay.addLayout(self._build_threshold_row())
        # What the similarity means, "no good match", or a partial index: one line above the grid.
        self.note_label = QLabel("")
        self.note_label.setWordWrap(True)
        self.note_label.setObjectName("resultsNote")
        self.note_label.setStyleSheet("#resultsNote { color: palette(text); background: rgba(230, 160, 0, 60); "
                                      "border-radius: 3px; padding: 3px; }")
        self.note_label.hide()
        lay.addWidget(self.note_label)
        lay.addWidget(self._build_grid(), 1)

    def _build_filter_row(self) -> QHBoxLayout:
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by path (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter_changed)
        self.filter_edit.installEventFilter(self)  # Esc in it clears it (see eventFilter)
        self.hide_dups = QCheckBox("Hide near-duplicates")
        self.hide_dups.setToolTip("Hide the query itself and near-identical copies of it")
        self.hide_dups.setChecked(self.settings.hide_near_duplicates)
        self.model.set_hide_near_duplicates(self.hide_dups.isChecked())
        self.hide_dups.toggled.connect(self._on_hide_dups)
        self.sort_combo = QComboBox()
        self.sort_combo.addItem("Sort by score", ResultsModel.SORT_SCORE)
        self.sort_combo.addItem("Sort by date", ResultsModel.SORT_DATE)
        self.sort_combo.currentIndexChanged.connect(lambda _i: self.model.set_sort(self.sort_combo.currentData()))
        row = QHBoxLayout()
        row.addWidget(self.filter_edit, 1)
        row.addWidget(self.sort_combo)
        row.addWidget(self.hide_dups)
        return row

    def _build_threshold_row(self) -> QHBoxLayout:
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setToolTip("Hide results less similar than this (the slider spans the scores of "
                                         "the current results: methods differ in their score ranges)")
        self.threshold_slider.valueChanged.connect(self._on_threshold_changed)
        self.threshold_label = QLabel("all")
        self.count_label = QLabel("")
        row = QHBoxLayout()
        row.addWidget(QLabel("Similarity"))
        row.addWidget(self.threshold_slider, 1)
        row.addWidget(self.threshold_label)
        row.addWidget(self.count_label)
        return row

    def _build_grid(self) -> QListView:
        view = self.view = QListView()
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setMovement(QListView.Movement.Static)
        view.setUniformItemSizes(True)  # constant-time layout for 10,000 results
        view.setLayoutMode(QListView.LayoutMode.Batched)
        view.setBatchSize(200)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setDragEnabled(True)
        view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        view.setAcceptDrops(False)
        view.setWordWrap(False)
        view.setSpacing(4)
        self.grid_delegate = ThumbnailGridDelegate(self.model.thumb_size, lines=2, parent=view)
        view.setItemDelegate(self.grid_delegate)
        view.setModel(self.model)
        view.doubleClicked.connect(self._on_double_click)
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.customContextMenuRequested.connect(self._on_context_menu)
        view.selectionModel().currentChanged.connect(self._on_current)
        return view

    # -- content ----------------------------------------------------------------------------
    def show_results(self, items, query_path: str | None, searched_note: str) -> None:
        if items:
            self.score_range = (min(it.score for it in items), max(it.score for it in items))
        self.searched_note = searched_note
        self.model.set_results(items, query_path)
        self.view.scrollToTop()  # a new query starts at its best results
        if self.hide_dups.isChecked():
            self.update_near_duplicate_score()
        self._on_threshold_changed(self.threshold_slider.value())
        self.update_count()

    def clear(self) -> None:
        """No results (another collection, a failed query); the slider spans 0-1 again."""
        self.model.clear()
        self.score_range = (0.0, 1.0)
        self.searched_note = ""
        self.update_count()

    def select_row(self, row: int) -> None:
        self.view.setCurrentIndex(self.model.index(row))

    def update_count(self) -> None:
        shown, total = self.model.rowCount(), self.model.total()
        self.count_label.setText(plural(total, "result") if shown == total else f"{shown} of {plural(total, 'result')}")
        notes = [self.searched_note] if self.searched_note else []
        best = self.model.best_score()
        cal = self.calibration
        if cal is not None and best is not None and not cal.is_good_match(best):
            notes.append(f"No good match: the best result is {cal.percent(best):.0f} % similar; below 50 % "
                         "a resemblance is likely coincidence in this collection.")
        self.note_label.setText("\n".join(notes))
        self.note_label.setVisible(bool(notes))
        self.note_label.setToolTip(cal.meaning() if cal is not None else "")

    def visible_rows(self) -> range:
        n = self.model.rowCount()
        if n == 0:
            return range(0)
        vp = self.view.viewport().rect()
        first = self.view.indexAt(vp.topLeft() + QPoint(4, 4))
        last = self.view.indexAt(vp.bottomRight() - QPoint(4, 4))
        lo = first.row() if first.isValid() else 0
        hi = last.row() if last.isValid() else min(n - 1, lo + 200)
        return range(lo, min(n, hi + 1))

    # -- similarity threshold and calibration -------------------------------------------------
    def slider_threshold(self, value: int) -> float:
        """Score threshold of slider position ``value``: the calibrated similarity in %, or
        without a calibration 0 = lowest score shown, 100 = highest."""
        if value <= 0:
            return -float("inf")
        if self.calibration is not None:
            return self.calibration.score_at(value)
        lo, hi = self.score_range
        return lo + (hi - lo) * value / 100

    def _on_threshold_changed(self, value: int) -> None:
        t = self.slider_threshold(value)
        if value <= 0:
            self.threshold_label.setText("all")
        else:
            self.threshold_label.setText(f"≥ {value} %" if self.calibration is not None else f"≥ {t:.3f}")
        self.model.set_threshold(t)
        self.update_count()

    def set_threshold(self, value: float) -> None:
        """Move the slider to the position nearest to score ``value``."""
        if self.calibration is not None:
            self.threshold_slider.setValue(int(round(self.calibration.percent(value))))
            return
        lo, hi = self.score_range
        self.threshold_slider.setValue(int(round(100 * (value - lo) / (hi - lo))) if hi > lo else 0)

    def load_calibration(self) -> None:
        """Fit (or read) the active method's score calibration in a task; until it is there the
        grid shows raw scores."""
        col = self.collection_getter()
        self.set_calibration(None)
        if col is None or not col.has_descriptors():
            return
        if col.read_only:  # an archive is not written: its calibration would have nowhere to go
            self.status_message.emit("Similarities are shown as the method's raw scores (archive).", 8000)
            return
        method = col.active_method
        try:
            stored = stored_calibration(col, method)
        except (LookalikeError, OSError, ValueError, KeyError):  # unreadable stored state: fitted again below
            log.warning("the stored score calibration of %s could not be read", method, exc_info=True)
            stored = None
        if stored is not None:
            self.set_calibration(stored)
            return

        def done(cal) -> None:
            if self.collection_getter() is col and col.active_method == method:
                self.set_calibration(cal)

        self.tasks.start("calibration", lambda _task: score_calibration(col, method), done,
                         lambda message: self.status_message.emit(
                             f"Similarities are shown as the method's raw scores: {message}", 10000))

    def set_calibration(self, cal) -> None:
        value = self.threshold_slider.value()
        threshold = self.slider_threshold(value)
        self.calibration = cal
        self.model.set_calibration(cal)
        self.threshold_slider.setToolTip(
            "Hide results less similar than this. " + (cal.meaning() if cal is not None else
                                                       "(The slider spans the scores of the current results.)"))
        if value > 0:  # keep the same score threshold on the new scale
            self.set_threshold(threshold)
        self._on_threshold_changed(self.threshold_slider.value())

    # -- near-duplicates, filter, sort ----------------------------------------------------------
    def _on_hide_dups(self, on: bool) -> None:
        self.settings.hide_near_duplicates = on
        self.model.set_hide_near_duplicates(on)
        self.update_count()
        if on:
            self.update_near_duplicate_score()

    def update_near_duplicate_score(self) -> None:
        """Near-duplicates of the query score >= 0.95; for a method whose similarities run lower
        (e.g. cluster-MAC), >= the collection's calibrated duplicate threshold (measured once per
        indexing, in a task: see engine/services/duplicate_threshold.py)."""
        col = self.collection_getter()
        if col is None:
            return
        if col.read_only:  # the calibrated threshold is stored in a catalog; an archive has none
            self.model.set_near_duplicate_score(NEAR_DUPLICATE_SCORE)
            self.update_count()
            return
        method = col.active_method

        def done(choice) -> None:
            if self.collection_getter() is not col or col.active_method != method:
                return
            score = choice.threshold if choice.calibrated else NEAR_DUPLICATE_SCORE
            self.model.set_near_duplicate_score(score)
            self.hide_dups.setToolTip(f"Hide results scoring {score:.2f} or more with {method}, and the query itself")
            self.update_count()

        self.tasks.start("near-duplicate-score", lambda _task: thresholds.duplicate_threshold(col, method), done,
                         lambda message: self.status_message.emit(
                             f"Near-duplicates are results scoring {NEAR_DUPLICATE_SCORE} or more ({message})", 8000))

    def _on_filter_changed(self, text: str) -> None:
        self.model.set_text_filter(text)
        self.update_count()

    def focus_filter(self) -> None:
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def eventFilter(self, obj, event) -> bool:
        # Esc typed in the filter reaches the line edit first (the window's Esc shortcut
        # does not fire while it has the focus, and not at all in an inactive window).
        if obj is self.filter_edit and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Escape:
            self.filter_edit.clear()
            return True
        return super().eventFilter(obj, event)

    # -- thumbnail size -------------------------------------------------------------------------
    def change_thumb_size(self, step: int) -> None:
        i = min(range(len(THUMB_SIZES)), key=lambda k: abs(THUMB_SIZES[k] - self.model.thumb_size))
        self.set_thumb_size(THUMB_SIZES[max(0, min(len(THUMB_SIZES) - 1, i + step))])

    def set_thumb_size(self, size: int) -> None:
        self.model.set_thumb_size(size)
        self.grid_delegate.set_thumb_size(size)
        self.view.setIconSize(QSize(size, size))
        self.view.setGridSize(grid_cell_size(size, self.view.fontMetrics().height(), 2) + QSize(8, 8))

    # -- a result's menu ------------------------------------------------------------------------
    def _on_current(self, current, _previous) -> None:
        if current.isValid():
            it = self.model.item(current.row())
            self.current_changed.emit(it.path, it.score)

    def _on_double_click(self, index) -> None:
        path = index.data(PathRole)
        if path:
            self.view_requested.emit(path)

    def _on_context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        path = index.data(PathRole) if index.isValid() else None
        if path:
            self.result_menu(path).exec(self.view.viewport().mapToGlobal(pos))

    def result_menu(self, path: str) -> QMenu:
        menu = QMenu(self)
        menu.addAction("View", lambda: self.view_requested.emit(path))
        menu.addAction("Open in another application", lambda: self._open_url(path, f"No application could open {path}."))
        menu.addAction("Reveal in folder", lambda: self._open_url(os.path.dirname(path),
                                                                  f"Could not open the folder of {path}."))
        menu.addAction("Copy path", lambda: QGuiApplication.clipboard().setText(path))
        menu.addAction("Use as query", lambda: self.query_requested.emit(path))
        menu.addAction("Why matched?", lambda: self.why_requested.emit(path))
        return menu

    def _open_url(self, path: str, failure: str) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self.failed.emit(failure)
