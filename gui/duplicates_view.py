"""Duplicates tab: groups of identical / near-identical photos side by side, with safe actions.

``DuplicatesView(collection_getter, thumbnails, parent)``. The kNN graph is computed once per
collection state (``engine.duplicates.DuplicateFinder``); the threshold slider regroups from
it live. Each group shows its photos with resolution, file size and date; the suggested keeper
(largest resolution, then oldest) is marked and the others are pre-checked. Actions on the
checked photos: copy the list, move them to a folder the user picks (never overwriting), or
move them to the system trash (``QFile.moveToTrash``) after a confirmation that lists them.
Nothing is ever deleted permanently.
"""
from __future__ import annotations

import os
import time

import threading

from PySide6.QtCore import QFile, QObject, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QMenu, QMessageBox,
                               QPushButton, QScrollArea, QSlider, QVBoxLayout, QWidget)

from engine.duplicate_threshold import ThresholdChoice, duplicate_threshold, stored_choice
from engine.duplicates import DEFAULT_THRESHOLD, DuplicateConfig, DuplicateFinder, DuplicateGroup, PhotoInfo, move_to_folder

MAX_GROUPS_SHOWN = 300
THUMB = 150
# Up to this many photos the similarity graph is computed in the UI thread (well under a
# second); above it in a worker thread (a 20,000-photo kNN graph takes ~25 s on 2 CPU cores).
SYNC_LIMIT = 3000


class _Relay(QObject):
    """Lives in the UI thread; the worker thread emits on it (delivered queued)."""

    done = Signal(object, object, object)  # key, DuplicateFinder or None, error message or None


def _fmt_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


class PhotoCard(QFrame):
    """One photo of a group: thumbnail, facts, keep badge, a check box 'select'."""

    find_similar = Signal(str)

    def __init__(self, info: PhotoInfo, keep: bool, thumbnails, parent=None):
        super().__init__(parent)
        self.info = info
        self.thumbnails = thumbnails
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.image = QLabel()
        self.image.setFixedSize(QSize(THUMB, THUMB))
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.check = QCheckBox("select")
        self.check.setChecked(not keep)
        self.check.setToolTip("Selected photos are the ones the actions move")
        res = f"{info.width} × {info.height}" if info.width else "? × ?"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.date))
        facts = QLabel(f"<b>{os.path.basename(info.path)}</b><br>{res}<br>{_fmt_size(info.size)}<br>"
                       f"{'taken' if info.taken is not None else 'modified'} {when}"
                       + ("<br><span style='color:#2e7d32'><b>✓ suggested keep</b></span>" if keep else ""))
        facts.setToolTip(info.path)
        facts.setWordWrap(True)
        facts.setFixedWidth(THUMB + 10)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.image)
        lay.addWidget(facts)
        lay.addWidget(self.check)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(lambda pos: self.menu().exec(self.mapToGlobal(pos)))
        self.refresh_thumbnail()

    def refresh_thumbnail(self) -> bool:
        pix = self.thumbnails.request(self.info.path, THUMB) if self.thumbnails is not None else None
        if pix is None:
            self.image.setText("…")
            return False
        self.image.setPixmap(pix)
        return True

    def menu(self) -> QMenu:
        m = QMenu(self)
        m.addAction("Reveal in folder", lambda: reveal(self.info.path))
        m.addAction("Open", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(self.info.path)))
        m.addAction("Find similar", lambda: self.find_similar.emit(self.info.path))
        m.addAction("Copy path", lambda: QGuiApplication.clipboard().setText(self.info.path))
        return m


def reveal(path: str) -> None:
    """Show the file's folder in the system file manager."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path)))


class GroupWidget(QFrame):
    def __init__(self, number: int, group: DuplicateGroup, thumbnails, parent=None):
        super().__init__(parent)
        self.group = group
        self.setFrameShape(QFrame.Shape.Box)
        kind = "identical files" if group.exact else f"near-duplicates (similarity ≥ {group.similarity:.2f})"
        header = QLabel(f"<b>Group {number}</b>: {len(group.members)} photos, {kind}")
        row = QHBoxLayout()
        self.cards = [PhotoCard(m, k == 0, thumbnails) for k, m in enumerate(group.members)]
        for c in self.cards:
            row.addWidget(c)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(header)
        lay.addLayout(row)


class DuplicatesView(QWidget):
    find_similar = Signal(str)

    def __init__(self, collection_getter, thumbnails, parent: QWidget | None = None):
        super().__init__(parent)
        self.collection_getter = collection_getter
        self.thumbnails = thumbnails
        self.finder: DuplicateFinder | None = None
        self._finder_key: tuple | None = None
        self.groups: list[DuplicateGroup] = []
        self.group_widgets: list[GroupWidget] = []
        self.last_moved: list[tuple[str, str]] = []
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_computed, Qt.ConnectionType.QueuedConnection)
        self._computing: tuple | None = None  # key being computed in the worker thread
        self.choice: ThresholdChoice | None = None  # the default threshold of the collection + method
        self._choice_method = ""
        # Tests replace this with a function returning True/False instead of a dialog.
        self.confirm = self._confirm_dialog

        self.scope = QComboBox()
        self.scope.setToolTip("Look for duplicates in the whole collection or in one folder")
        self.scope.currentIndexChanged.connect(lambda _i: self.find_duplicates())
        self.find_btn = QPushButton("Find duplicates")
        self.find_btn.clicked.connect(lambda: self.find_duplicates(force=True))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(50, 99)
        self.slider.setValue(round(DEFAULT_THRESHOLD * 100))
        self._auto_value = self.slider.value()  # the value we set; a user's own value is kept
        self.slider.setToolTip("Similarity threshold: lower finds more (looser) duplicates")
        self.slider.valueChanged.connect(self._on_slider)
        self.threshold_label = QLabel()
        self._regroup_timer = QTimer(self)
        self._regroup_timer.setSingleShot(True)
        self._regroup_timer.setInterval(60)
        self._regroup_timer.timeout.connect(self.regroup)
        self.summary = QLabel("Press “Find duplicates”.")
        self.summary.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("In:"))
        top.addWidget(self.scope, 1)
        top.addWidget(self.find_btn)
        top.addWidget(QLabel("Threshold:"))
        top.addWidget(self.slider, 1)
        top.addWidget(self.threshold_label)

        self.copy_btn = QPushButton("Copy list")
        self.copy_btn.setToolTip("Copy the paths of the selected photos")
        self.copy_btn.clicked.connect(self.copy_list)
        self.move_btn = QPushButton("Move selected to folder…")
        self.move_btn.clicked.connect(self._choose_and_move)
        self.trash_btn = QPushButton("Move selected to trash…")
        self.trash_btn.clicked.connect(self.move_checked_to_trash)
        self.select_others_btn = QPushButton("Select all but the suggested keep")
        self.select_others_btn.clicked.connect(self.select_suggested)
        actions = QHBoxLayout()
        actions.addWidget(self.summary, 1)
        for b in (self.select_others_btn, self.copy_btn, self.move_btn, self.trash_btn):
            actions.addWidget(b)

        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.body)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addLayout(actions)
        lay.addWidget(self.scroll, 1)
        if thumbnails is not None:
            thumbnails.ready.connect(self._on_thumbnail)
        self._update_label()
        self._update_buttons()

    # -- computing ------------------------------------------------------------------------
    def threshold(self) -> float:
        return self.slider.value() / 100.0

    def set_threshold(self, t: float) -> None:
        self.slider.setValue(round(t * 100))
        self.regroup()

    def _update_label(self) -> None:
        self.threshold_label.setText(f"{self.threshold():.2f}")

    def _refresh_scopes(self, col) -> None:
        current = self.scope.currentData()
        self.scope.blockSignals(True)
        self.scope.clear()
        self.scope.addItem("Whole collection", None)
        if col is not None:
            for f in col.folders():
                self.scope.addItem(f, f)
        i = self.scope.findData(current)
        self.scope.setCurrentIndex(max(0, i))
        self.scope.blockSignals(False)

    def set_scope(self, folder: str | None) -> None:
        i = self.scope.findData(folder)
        if i < 0:
            self.scope.addItem(folder, folder)
            i = self.scope.count() - 1
        self.scope.setCurrentIndex(i)

    def showEvent(self, e) -> None:
        super().showEvent(e)
        col = self.collection_getter()
        if self.scope.count() == 0:
            self._refresh_scopes(col)
        if col is not None and (self.finder is None or self._key(col) != self._finder_key):
            QTimer.singleShot(0, self.find_duplicates)

    def _key(self, col) -> tuple:
        m = col.active_method
        return (id(col), m, col.catalog.generation(m), self.scope.currentData())

    def find_duplicates(self, force: bool = False) -> None:
        """(Re)compute the similarity graph of the chosen scope, then group at the slider's threshold."""
        col = self.collection_getter()
        if col is None:
            self.summary.setText("No collection is open.")
            return
        if self.scope.count() == 0:
            self._refresh_scopes(col)
        key = self._key(col)
        if not (force or key != self._finder_key or self.finder is None):
            self.regroup()
            return
        if self._computing == key:
            return  # already on its way
        folder = self.scope.currentData()
        self.summary.setText("Comparing photos…")
        # Small collections are compared at once, unless the method's default threshold has
        # yet to be measured on this collection (seconds of CNN work: the worker does that).
        if col.catalog.image_count() <= SYNC_LIMIT and stored_choice(col) is not None:
            QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                result, error = self._compute(col, folder)
            finally:
                QGuiApplication.restoreOverrideCursor()
            self._on_computed(key, result, error)
            return
        self._computing = key
        self.find_btn.setEnabled(False)

        def work() -> None:
            result, error = self._compute(col, folder)
            self._relay.done.emit(key, result, error)

        threading.Thread(target=work, name="duplicates", daemon=True).start()

    @staticmethod
    def _compute(col, folder) -> tuple[tuple[DuplicateFinder, ThresholdChoice] | None, str | None]:
        try:
            choice = duplicate_threshold(col)
            cfg = DuplicateConfig(threshold=choice.threshold, floor=choice.floor)
            return (DuplicateFinder.from_collection(col, folder=folder, config=cfg), choice), None
        except Exception as exc:  # no descriptors yet, etc.: say it, do not crash the window
            return None, str(exc)

    def busy(self) -> bool:
        """True while the similarity graph is computed in the worker thread."""
        return self._computing is not None

    def _on_computed(self, key, result, error) -> None:
        if self._computing == key:
            self._computing = None
        self.find_btn.setEnabled(True)
        if error is not None:
            self.finder = None
            self.summary.setText(f"Cannot look for duplicates: {error}")
            self._show([])
            return
        col = self.collection_getter()
        if col is None or self._key(col) != key:
            return  # the collection or scope changed meanwhile: a newer request follows
        self.finder, self._finder_key = result[0], key
        self._apply_choice(result[1], col.active_method)
        self.regroup()

    def _apply_choice(self, choice: ThresholdChoice, method: str) -> None:
        """Offer the method's similarity range and, unless the user set a threshold, its default."""
        self.choice, self._choice_method = choice, method
        self.slider.blockSignals(True)
        keep_user_value = self.slider.value() != self._auto_value
        self.slider.setMinimum(round(choice.floor * 100))
        if not keep_user_value:
            self.slider.setValue(round(choice.threshold * 100))
            self._auto_value = self.slider.value()
        self.slider.blockSignals(False)
        self.slider.setToolTip(f"Similarity threshold: lower finds more (looser) duplicates. Default: "
                               f"{choice.describe(method)}.")
        self._update_label()

    def _on_slider(self, _v: int) -> None:
        self._update_label()
        self._regroup_timer.start()

    def regroup(self) -> None:
        self._regroup_timer.stop()
        if self.finder is None:
            self.find_duplicates()
            return
        self._show(self.finder.groups(self.threshold()))

    def _show(self, groups: list[DuplicateGroup]) -> None:
        self.groups = groups
        for w in self.group_widgets:
            w.setParent(None)
            w.deleteLater()
        self.group_widgets = []
        for n, g in enumerate(groups[:MAX_GROUPS_SHOWN], 1):
            w = GroupWidget(n, g, self.thumbnails)
            for c in w.cards:
                c.find_similar.connect(self.find_similar)
                c.check.toggled.connect(lambda _on: self._update_buttons())
            self.body_layout.insertWidget(self.body_layout.count() - 1, w)
            self.group_widgets.append(w)
        extra = sum(len(g.members) - 1 for g in groups)
        text = f"{len(groups)} groups, {extra} photos that could go"
        if len(groups) > MAX_GROUPS_SHOWN:
            text += f" (first {MAX_GROUPS_SHOWN} groups shown; raise the threshold to narrow)"
        if not groups:
            text = "No duplicates at this threshold."
        if self.choice is not None and self.choice.calibrated:
            text += f" (Default {self.choice.describe(self._choice_method)}.)"
        self.summary.setText(text)
        self._update_buttons()

    def _on_thumbnail(self, path: str) -> None:
        for w in self.group_widgets:
            for c in w.cards:
                if c.info.path == path:
                    c.refresh_thumbnail()

    def thumbnails_loaded(self) -> bool:
        return all(c.refresh_thumbnail() for w in self.group_widgets for c in w.cards)

    # -- selection and actions ------------------------------------------------------------
    def cards(self) -> list[PhotoCard]:
        return [c for w in self.group_widgets for c in w.cards]

    def checked_paths(self) -> list[str]:
        return [c.info.path for c in self.cards() if c.check.isChecked()]

    def select_suggested(self) -> None:
        for w in self.group_widgets:
            for k, c in enumerate(w.cards):
                c.check.setChecked(k > 0)

    def _update_buttons(self) -> None:
        n = len(self.checked_paths())
        for b in (self.copy_btn, self.move_btn, self.trash_btn):
            b.setEnabled(n > 0)
        self.move_btn.setText(f"Move {n} selected to folder…")
        self.trash_btn.setText(f"Move {n} selected to trash…")

    def copy_list(self) -> str:
        text = "\n".join(self.checked_paths())
        QGuiApplication.clipboard().setText(text)
        return text

    def _choose_and_move(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Move the selected photos to")
        if folder:
            self.move_checked_to(folder)

    def move_checked_to(self, folder: str) -> list[tuple[str, str]]:
        """Move the checked photos into ``folder`` (never overwriting); they leave the catalog."""
        paths = self.checked_paths()
        if not paths:
            return []
        try:
            moved = move_to_folder(paths, folder)
        except OSError as exc:
            QMessageBox.warning(self, "Lookalike", f"Could not move the photos: {exc}")
            return []
        self._forget([s for s, _d in moved])
        self.last_moved = moved
        self.summary.setText(f"Moved {len(moved)} photos to {folder}.")
        return moved

    def _confirm_dialog(self, title: str, text: str, paths: list[str]) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDetailedText("\n".join(paths))
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Yes

    def move_checked_to_trash(self) -> list[str]:
        """Move the checked photos to the system trash after a confirmation listing them."""
        paths = self.checked_paths()
        if not paths:
            return []
        listing = "\n".join(paths[:20]) + (f"\n… and {len(paths) - 20} more" if len(paths) > 20 else "")
        if not self.confirm("Move to trash", f"Move these {len(paths)} photos to the trash?\n\n{listing}", paths):
            return []
        trashed, failed = [], []
        for p in paths:
            (trashed if QFile.moveToTrash(p) else failed).append(p)
        self._forget(trashed)
        msg = f"Moved {len(trashed)} photos to the trash."
        if failed:
            msg += f" {len(failed)} could not be moved (no trash on this drive?); they were left in place."
        self.summary.setText(msg)
        return trashed

    def _forget(self, paths: list[str]) -> None:
        """Drop moved photos from the catalog and from the groups on screen."""
        if not paths:
            return
        col = self.collection_getter()
        if col is not None:
            col.catalog.remove_images(paths)
        self.finder = None
        self._finder_key = None
        gone = set(paths)
        kept = []
        for g in self.groups:
            members = [m for m in g.members if m.path not in gone]
            if len(members) >= 2:
                kept.append(DuplicateGroup(members, g.exact, g.similarity))
        self._show(kept)
