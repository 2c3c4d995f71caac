"""Duplicates tab: exact, near-duplicate and similar groups kept apart, reviewed fast and safely.

``DuplicatesView(collection_getter, thumbnails, parent)``. The finder
(``engine.services.duplicates.DuplicateFinder``) runs as a task of the GUI's
:class:`gui.workers.TaskRunner` with a progress bar: the kNN graph, then the verification of
candidate pairs (stored in the catalog, so a stopped run resumes). The overview counts each
tier; one tier is shown at a time:

* **Exact** and **Near-duplicates**: each group shows its photos with the full folder path,
  resolution, size and date; the suggested keep is marked with the rule that chose it (keep
  rules are adjustable: "Keep rules…") and the others are pre-selected.
* **Similar** (other shots of the same scene): browse only; nothing is pre-selected and the
  bulk action never touches them.

Keyboard review (the current group is outlined): N / Down next group, P / Up previous, 1-9 keep
that photo (the others are selected), X not a duplicate (remembered in the catalog), R resolved
(keep all; remembered), C compare the keep with the first selected photo, Tab next tier.
"Apply suggestion to all…" moves every exact and near group's non-keep photos after one
confirmation that states what moves where. Moves go to a folder the user picks (never
overwriting: ``engine.services.duplicates.move_to_folder``) or to the system trash
(``QFile.moveToTrash``). Nothing is ever deleted permanently.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QFile, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDialog, QFileDialog, QHBoxLayout, QLabel, QMessageBox, QProgressBar,
                               QPushButton, QScrollArea, QSlider, QStackedWidget, QTabBar, QVBoxLayout, QWidget)

from engine.services.duplicate_threshold import ThresholdChoice, duplicate_threshold
from engine.services.duplicates import (DEFAULT_THRESHOLD, TIERS, DuplicateFinder, DuplicateGroup, KeepRules,
                                        move_to_folder, suggested_moves, tier_counts)

from ..workers import Task, TaskRunner
from .cards import GroupWidget, PhotoCard
from .compare import CompareView
from .keep_rules import KeepRulesDialog

MAX_GROUPS_SHOWN = 200
TIER_TABS = {"exact": "Exact copies", "near": "Near-duplicates", "similar": "Similar shots (browse only)"}
TRASH = "trash"
REVIEW_KEYS = "Keys: N/P next/previous group · 1-9 keep that photo · X not a duplicate · R keep all · C compare · Tab next tier"


class DuplicatesView(QWidget):
    find_similar = Signal(str)
    photos_removed = Signal()  # moved photos left the catalog: the collection's counts changed

    def __init__(self, collection_getter, thumbnails, parent: QWidget | None = None):
        super().__init__(parent)
        self.collection_getter = collection_getter
        self.thumbnails = thumbnails
        self.finder: DuplicateFinder | None = None
        self._finder_key: tuple | None = None
        self.groups: list[DuplicateGroup] = []
        self.group_widgets: list[GroupWidget] = []
        self.current = -1
        self.tier = "near"
        self.last_moved: list[tuple[str, str]] = []
        # Its own runner: a long verification never holds the threads queries run on.
        self.tasks = TaskRunner(self, threads=2)
        self._computing: tuple | None = None
        self.choice: ThresholdChoice | None = None
        self._choice_method = ""
        # Tests replace these with functions returning an answer instead of a dialog.
        self.confirm = self._confirm_dialog
        self.choose_folder = lambda: QFileDialog.getExistingDirectory(self, "Move the photos to")

        self.progress = QProgressBar()
        self.progress.hide()
        self.overview = QLabel("Press “Find duplicates”.")
        self.overview.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(self._build_search_row())
        lay.addWidget(self.progress)
        lay.addWidget(self.overview)
        lay.addLayout(self._build_actions_row())
        lay.addWidget(self._build_review(), 1)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._bind_review_keys()
        if thumbnails is not None:
            thumbnails.ready.connect(self._on_thumbnail)
        self._update_label()
        self._update_buttons()

    def _build_search_row(self) -> QHBoxLayout:
        """Scope, Find / Stop, the similar-shots threshold and the keep rules."""
        self.scope = QComboBox()
        self.scope.setToolTip("Look for duplicates in the whole collection or in one folder")
        self.scope.currentIndexChanged.connect(lambda _i: self.find_duplicates())
        self.find_btn = QPushButton("Find duplicates")
        self.find_btn.clicked.connect(lambda: self.find_duplicates(force=True))
        self.cancel_btn = QPushButton("Stop")
        self.cancel_btn.setToolTip("Stop checking; what was checked is kept and the next run resumes")
        self.cancel_btn.clicked.connect(self.cancel)
        self.cancel_btn.hide()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(50, 99)
        self.slider.setValue(round(DEFAULT_THRESHOLD * 100))
        self._auto_value = self.slider.value()
        self.slider.setToolTip("Similar shots: search similarity at or above this (browse only). Near-duplicates "
                               "are confirmed by comparing the photos themselves, not by this threshold.")
        self.slider.valueChanged.connect(self._on_slider)
        self.threshold_label = QLabel()
        self._regroup_timer = QTimer(self)
        self._regroup_timer.setSingleShot(True)
        self._regroup_timer.setInterval(60)
        self._regroup_timer.timeout.connect(self.regroup)
        self.rules_btn = QPushButton("Keep rules…")
        self.rules_btn.clicked.connect(self.edit_keep_rules)
        top = QHBoxLayout()
        top.addWidget(QLabel("In:"))
        top.addWidget(self.scope, 1)
        top.addWidget(self.find_btn)
        top.addWidget(self.cancel_btn)
        top.addWidget(QLabel("Similar shots from:"))
        top.addWidget(self.slider, 1)
        top.addWidget(self.threshold_label)
        top.addWidget(self.rules_btn)
        return top

    def _build_actions_row(self) -> QHBoxLayout:
        """What was done (summary), where moved photos go, and the move / copy actions."""
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.dest = QComboBox()
        self.dest.addItem("to the system trash", TRASH)
        self.dest.addItem("to a folder…", None)
        self.dest.setToolTip("Where moved photos go (nothing is deleted)")
        self.dest.activated.connect(self._on_dest)
        self.apply_btn = QPushButton("Apply suggestion to all exact + near groups…")
        self.apply_btn.setToolTip("Move every non-kept photo of every exact and near-duplicate group, after one "
                                  "confirmation. Similar shots are never included.")
        self.apply_btn.clicked.connect(self.apply_suggestions)
        self.copy_btn = QPushButton("Copy list")
        self.copy_btn.setToolTip("Copy the paths of the selected photos")
        self.copy_btn.clicked.connect(self.copy_list)
        self.move_btn = QPushButton("Move selected…")
        self.move_btn.clicked.connect(self.move_selected)
        actions = QHBoxLayout()
        actions.addWidget(self.summary, 1)
        actions.addWidget(QLabel("Move"))
        actions.addWidget(self.dest)
        for b in (self.apply_btn, self.move_btn, self.copy_btn):
            actions.addWidget(b)
        return actions

    def _build_review(self) -> QStackedWidget:
        """The tier tabs over the scrolled groups, and the compare view in its place on demand."""
        self.tabs = QTabBar()
        for t in TIERS:
            self.tabs.addTab(TIER_TABS[t])
        self.tabs.setCurrentIndex(TIERS.index(self.tier))
        self.tabs.currentChanged.connect(lambda i: self.show_tier(TIERS[i]))
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.body)
        self.keys_hint = QLabel(REVIEW_KEYS)
        self.keys_hint.setStyleSheet("color: gray")
        self.review = QWidget()
        rl = QVBoxLayout(self.review)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.tabs)
        rl.addWidget(self.scroll, 1)
        rl.addWidget(self.keys_hint)
        self.compare = CompareView()
        self.compare.closed.connect(self.close_compare)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.review)
        self.stack.addWidget(self.compare)
        return self.stack

    def _bind_review_keys(self) -> None:
        keys = [("N", self.next_group), ("Down", self.next_group), ("P", self.previous_group),
                ("Up", self.previous_group), ("X", self.not_duplicate_current), ("R", self.resolve_current),
                ("C", self.compare_current), ("Tab", self.next_tier)]
        keys += [(str(n), lambda n=n: self.keep_nth(n)) for n in range(1, 10)]
        for key, slot in keys:
            sc = QShortcut(QKeySequence(key), self.review)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)

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
        return (id(col), m, col.generation(m), self.scope.currentData())

    def find_duplicates(self, force: bool = False) -> None:
        """(Re)compute the graph and verify the candidate pairs of the chosen scope (a task,
        with progress), then group."""
        col = self.collection_getter()
        if col is None:
            self.overview.setText("No collection is open.")
            return
        if self.scope.count() == 0:
            self._refresh_scopes(col)
        key = self._key(col)
        if not (force or key != self._finder_key or self.finder is None):
            self.regroup()
            return
        if self._computing == key:
            return  # already on its way
        self.cancel()  # an older request (other scope) stops; its checks are kept, its result dropped
        folder = self.scope.currentData()
        self.overview.setText("Comparing photos…")
        self._computing = key
        self.find_btn.setEnabled(False)
        self.cancel_btn.show()
        self.progress.setRange(0, 0)
        self.progress.show()
        self.tasks.start("duplicates", lambda task: self._compute(task, col, folder),
                         lambda result: self._on_computed(key, result), lambda message: self._on_failed(key, message),
                         on_progress=self._on_progress)

    @staticmethod
    def _compute(task: Task, col, folder) -> tuple[DuplicateFinder, ThresholdChoice]:  # pool thread
        choice = duplicate_threshold(col)
        cfg = choice.config(keep=col.keep_rules())
        finder = DuplicateFinder.from_collection(
            col, folder=folder, config=cfg, progress=lambda d, t: task.report(("Searching neighbours", d, t)))
        finder.verify(progress=lambda p: task.report((
            "Hashing photos (for rotated copies)" if p.phase == "hashing" else "Checking candidate pairs",
            p.done, p.total)), cancel=task.cancel_event)
        finder.groups(DEFAULT_THRESHOLD)  # checks against each group's keep happen here, off the UI thread
        return finder, choice

    def cancel(self) -> None:
        task = self.tasks.running("duplicates")
        if task is not None:
            task.cancel()

    def stop(self, msecs: int = 10000) -> bool:
        """Cancel the running scan and wait for it (the window closes)."""
        self.cancel()
        return self.tasks.wait(msecs)

    def busy(self) -> bool:
        """True while the task searches and verifies."""
        return self._computing is not None

    def _on_progress(self, progress: tuple[str, int, int]) -> None:
        phase, done, total = progress
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.progress.setFormat(f"{phase}: {done} / {total}")

    def _computed(self, key) -> None:
        if self._computing == key:
            self._computing = None
            self.find_btn.setEnabled(True)
            self.cancel_btn.hide()
            self.progress.hide()

    def _on_failed(self, key, message: str) -> None:
        """No descriptors yet, and the like: said in the overview (the window stays up)."""
        self._computed(key)
        self.finder = None
        self.overview.setText(f"Cannot look for duplicates: {message}")
        self._show([])

    def _on_computed(self, key, result: tuple[DuplicateFinder, ThresholdChoice]) -> None:
        self._computed(key)
        col = self.collection_getter()
        if col is None or self._key(col) != key:
            return  # the collection or scope changed meanwhile: a newer request follows
        self.finder, self._finder_key = result[0], key
        self._apply_choice(result[1], col.active_method)
        self.regroup()
        if not self.finder.complete:
            self.overview.setText(self.overview.text() + " Checking was stopped: press “Find duplicates” to "
                                  "resume (what was checked is kept).")

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
        self.slider.setToolTip(f"Similar shots: search similarity at or above this (browse only). Default: "
                               f"{choice.describe(method)}. Near-duplicates are confirmed by comparing the photos.")
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

    # -- showing --------------------------------------------------------------------------
    def tier_groups(self, tier: str | None = None) -> list[DuplicateGroup]:
        t = tier or self.tier
        return [g for g in self.groups if g.tier == t]

    def show_tier(self, tier: str) -> None:
        if tier not in TIERS:
            raise ValueError(tier)
        self.tier = tier
        if self.tabs.currentIndex() != TIERS.index(tier):
            self.tabs.blockSignals(True)
            self.tabs.setCurrentIndex(TIERS.index(tier))
            self.tabs.blockSignals(False)
        self._rebuild()

    def next_tier(self) -> None:
        self.show_tier(TIERS[(TIERS.index(self.tier) + 1) % len(TIERS)])

    def _show(self, groups: list[DuplicateGroup]) -> None:
        self.groups = groups
        counts = tier_counts(groups)
        for k, t in enumerate(TIERS):
            self.tabs.setTabText(k, f"{TIER_TABS[t]} ({counts[t]['groups']})")
        if not self.tier_groups() and groups:  # open on a tier that has something
            self.tier = next((t for t in TIERS if counts[t]["groups"]), self.tier)
            self.tabs.blockSignals(True)
            self.tabs.setCurrentIndex(TIERS.index(self.tier))
            self.tabs.blockSignals(False)
        c = counts
        text = (f"<b>Exact copies</b>: {c['exact']['groups']} groups, {c['exact']['could_go']} photos could go · "
                f"<b>Near-duplicates</b> (the same photo, edited; each verified): {c['near']['groups']} groups, "
                f"{c['near']['could_go']} could go · <b>Similar shots</b>: {c['similar']['groups']} groups, "
                f"{c['similar']['photos']} photos, browse only")
        if self.choice is not None and self.choice.calibrated:
            text += f" (default {self.choice.describe(self._choice_method)})"
        self.overview.setText(text)
        self._rebuild()

    def _rebuild(self) -> None:
        for w in self.group_widgets:
            w.setParent(None)
            w.deleteLater()
        self.group_widgets = []
        shown = self.tier_groups()
        for n, g in enumerate(shown[:MAX_GROUPS_SHOWN], 1):
            w = GroupWidget(n, g, self.thumbnails)
            for c in w.cards:
                c.find_similar.connect(self.find_similar)
                c.check.toggled.connect(lambda _on: self._update_buttons())
                c.keep_requested.connect(lambda card, w=w: self._keep_card(w, card))
                c.compare_requested.connect(lambda card, w=w: self._compare_card(w, card))
            w.not_duplicate.connect(self.not_duplicate)
            w.resolved.connect(self.resolve)
            self.body_layout.insertWidget(self.body_layout.count() - 1, w)
            self.group_widgets.append(w)
        self.current = 0 if self.group_widgets else -1
        self._highlight()
        if not shown:
            self.summary.setText("Nothing in this tier." if self.groups else "No duplicates found.")
        elif len(shown) > MAX_GROUPS_SHOWN:
            self.summary.setText(f"First {MAX_GROUPS_SHOWN} of {len(shown)} groups shown.")
        else:
            self.summary.setText("")
        self._update_buttons()

    def _highlight(self) -> None:
        for k, w in enumerate(self.group_widgets):
            w.set_current(k == self.current)
        if 0 <= self.current < len(self.group_widgets):
            self.scroll.ensureWidgetVisible(self.group_widgets[self.current], 0, 0)
            self.scroll.horizontalScrollBar().setValue(0)  # a wide group: its buttons and keep stay in view

    def _on_thumbnail(self, path: str) -> None:
        for c in self.cards():
            if c.info.path == path:
                c.refresh_thumbnail()

    def thumbnails_loaded(self) -> bool:
        return all(c.refresh_thumbnail() for c in self.cards())

    # -- keyboard review ------------------------------------------------------------------
    def next_group(self) -> None:
        if self.group_widgets:
            self.current = min(len(self.group_widgets) - 1, self.current + 1)
            self._highlight()

    def previous_group(self) -> None:
        if self.group_widgets:
            self.current = max(0, self.current - 1)
            self._highlight()

    def current_widget(self) -> GroupWidget | None:
        return self.group_widgets[self.current] if 0 <= self.current < len(self.group_widgets) else None

    def keep_nth(self, n: int) -> None:
        w = self.current_widget()
        if w is not None and n <= len(w.cards):
            self._keep_card(w, w.cards[n - 1])

    def _keep_card(self, w: GroupWidget, card: PhotoCard) -> None:
        w.keep(card)
        self.current = self.group_widgets.index(w)
        self._highlight()
        self._update_buttons()

    def not_duplicate_current(self) -> None:
        w = self.current_widget()
        if w is not None:
            self.not_duplicate(w)

    def resolve_current(self) -> None:
        w = self.current_widget()
        if w is not None and w.group.removable:
            self.resolve(w)

    def not_duplicate(self, w: GroupWidget) -> None:
        """Remember that the group's photos are different photos; drop the group."""
        col = self.collection_getter()
        if col is not None:
            col.mark_not_duplicates(w.group.members)
        self._drop_group(w, "Remembered: not duplicates.")

    def resolve(self, w: GroupWidget) -> None:
        """Remember that the group was reviewed and every photo is kept; drop the group."""
        col = self.collection_getter()
        if col is not None:
            col.mark_resolved(w.group.members)
        self._drop_group(w, "Remembered: all kept.")

    def _drop_group(self, w: GroupWidget, message: str) -> None:
        col = self.collection_getter()
        if self.finder is not None and col is not None:
            self.finder.decisions = col.pair_decisions()
        at = self.group_widgets.index(w)
        self.groups = [g for g in self.groups if g is not w.group]
        self._show(self.groups)
        self.current = min(at, len(self.group_widgets) - 1)
        self._highlight()
        self.summary.setText(message)

    # -- compare --------------------------------------------------------------------------
    def _compare_card(self, w: GroupWidget, card: PhotoCard) -> None:
        keep = next((c for c in w.cards if c.is_keep), w.cards[0])
        other = card if card is not keep else next((c for c in w.cards if c is not keep), None)
        if other is not None:
            self.open_compare(keep.info.path, other.info.path)

    def compare_current(self) -> None:
        w = self.current_widget()
        if w is None or len(w.cards) < 2:
            return
        keep = next((c for c in w.cards if c.is_keep), w.cards[0])
        other = next((c for c in w.cards if c is not keep and c.check.isChecked()),
                     next(c for c in w.cards if c is not keep))
        self.open_compare(keep.info.path, other.info.path)

    def open_compare(self, a: str, b: str) -> None:
        self.compare.set_photos(a, b, "(A)", "(B)")
        self.stack.setCurrentWidget(self.compare)
        self.compare.setFocus()

    def close_compare(self) -> None:
        self.stack.setCurrentWidget(self.review)
        self.review.setFocus()

    # -- keep rules -----------------------------------------------------------------------
    def edit_keep_rules(self) -> None:
        col = self.collection_getter()
        rules = col.keep_rules() if col is not None else KeepRules()
        dlg = KeepRulesDialog(rules, self)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.set_keep_rules(dlg.rules())

    def set_keep_rules(self, rules: KeepRules) -> None:
        """Store the rules in the collection and re-suggest every group's keep. In a task: a
        new keep may need checking against members it was not compared with."""
        col = self.collection_getter()
        if col is not None:
            col.set_keep_rules(rules)
        if self.finder is not None:
            self.find_duplicates(force=True)

    # -- selection and actions ------------------------------------------------------------
    def cards(self) -> list[PhotoCard]:
        return [c for w in self.group_widgets for c in w.cards]

    def checked_paths(self) -> list[str]:
        return [c.info.path for c in self.cards() if c.check.isChecked()]

    def _update_buttons(self) -> None:
        n = len(self.checked_paths())
        self.copy_btn.setEnabled(n > 0)
        self.move_btn.setEnabled(n > 0)
        self.move_btn.setText(f"Move {n} selected…")
        moves = suggested_moves(self.groups)
        self.apply_btn.setEnabled(bool(moves))

    def copy_list(self) -> str:
        text = "\n".join(self.checked_paths())
        QGuiApplication.clipboard().setText(text)
        return text

    def _on_dest(self, i: int) -> None:
        if self.dest.itemData(i) is None:
            folder = self.choose_folder()
            if folder:
                self.set_destination(folder)
            else:
                self.dest.setCurrentIndex(0)

    def set_destination(self, folder: str) -> None:
        """Move to ``folder`` (or :data:`TRASH`) from now on."""
        if folder == TRASH:
            self.dest.setCurrentIndex(0)
            return
        i = self.dest.findData(folder)
        if i < 0:
            self.dest.insertItem(1, f"to {folder}", folder)
            i = 1
        self.dest.setCurrentIndex(i)

    def destination(self) -> str | None:
        """The chosen folder, :data:`TRASH`, or None when none is chosen yet."""
        return self.dest.currentData()

    def _where(self, dest: str) -> str:
        return "the system trash" if dest == TRASH else dest

    def move_selected(self) -> list[tuple[str, str]]:
        """Move the selected photos to the chosen destination after a confirmation."""
        paths = self.checked_paths()
        dest = self.destination()
        if not paths:
            return []
        if dest is None:
            dest = self.choose_folder()
            if not dest:
                return []
            self.set_destination(dest)
        listing = "\n".join(paths[:15]) + (f"\n… and {len(paths) - 15} more" if len(paths) > 15 else "")
        if not self.confirm("Move photos", f"Move these {len(paths)} photos to {self._where(dest)}?\n\n{listing}",
                            [f"{p}  →  {self._where(dest)}" for p in paths]):
            return []
        return self._move(paths, dest)

    def move_checked_to(self, folder: str) -> list[tuple[str, str]]:
        """Move the selected photos into ``folder`` now (never overwriting)."""
        return self._move(self.checked_paths(), folder)

    def move_checked_to_trash(self) -> list[tuple[str, str]]:
        """Move the selected photos to the system trash after a confirmation listing them."""
        paths = self.checked_paths()
        if not paths:
            return []
        listing = "\n".join(paths[:15]) + (f"\n… and {len(paths) - 15} more" if len(paths) > 15 else "")
        if not self.confirm("Move to trash", f"Move these {len(paths)} photos to the trash?\n\n{listing}", paths):
            return []
        return self._move(paths, TRASH)

    def apply_suggestions(self) -> list[tuple[str, str]]:
        """Move every exact and near group's non-keep photos after one confirmation saying
        exactly what moves where (similar shots are never included)."""
        moves = suggested_moves(self.groups)
        paths = [p for _g, ps in moves for p in ps]
        if not paths:
            return []
        dest = self.destination()
        if dest is None:
            dest = self.choose_folder()
            if not dest:
                return []
            self.set_destination(dest)
        n_exact = sum(1 for g, _p in moves if g.tier == "exact")
        n_near = len(moves) - n_exact
        text = (f"Move {len(paths)} photos to {self._where(dest)}: all but the suggested keep of {n_near} "
                f"near-duplicate groups and {n_exact} exact-copy groups.\n\nThe kept photo of each group stays "
                f"where it is. Similar shots are not touched. Nothing is deleted"
                + (" (a name already taken there gets a number)." if dest != TRASH else
                   "; the trash can be emptied later by you.")
                + "\n\nShow Details for every file and where it goes.")
        detail = [f"{p}  →  {self._where(dest)}   (keeps {g.keep.path})" for g, ps in moves for p in ps]
        if not self.confirm("Apply the suggestion to every group", text, detail):
            return []
        return self._move(paths, dest)

    def _confirm_dialog(self, title: str, text: str, details: list[str]) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDetailedText("\n".join(details))
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Yes

    def _move(self, paths: list[str], dest: str) -> list[tuple[str, str]]:
        """Move ``paths`` to ``dest`` (a folder or :data:`TRASH`); remember the groups as
        resolved; drop the moved photos from the catalog and the view."""
        if dest == TRASH:
            moved, failed = [], []
            for p in paths:
                (moved if QFile.moveToTrash(p) else failed).append(p)
            moved = [(p, TRASH) for p in moved]
        else:
            errors: list[tuple[str, str]] = []
            try:
                moved = move_to_folder(paths, dest, errors)
            except OSError as exc:  # the destination folder itself cannot be made
                QMessageBox.warning(self, "Lookalike", f"Could not move the photos: {exc}")
                return []
            failed = [p for p in paths if p not in {s for s, _d in moved}]
            if errors:
                QMessageBox.warning(self, "Lookalike", f"Moved {len(moved)} photos; {len(errors)} could not be "
                                    f"moved and were left in place: {errors[0][1]} ({os.path.basename(errors[0][0])}"
                                    f"{' and others' if len(errors) > 1 else ''}).")
        self._remember_resolved({s for s, _d in moved})
        self._forget([s for s, _d in moved])
        self.last_moved = moved
        msg = f"Moved {len(moved)} photos to {self._where(dest)}."
        if failed:
            msg += f" {len(failed)} could not be moved (gone, or no trash on this drive?); they were left in place."
        self.summary.setText(msg)
        return moved

    def _remember_resolved(self, moved: set[str]) -> None:
        """A group whose photos were moved is resolved: its kept photos and the moved ones
        are not proposed again (e.g. when the moved copies land in another indexed folder)."""
        col = self.collection_getter()
        if col is None:
            return
        for g in self.groups:
            if any(m.path in moved for m in g.members):
                col.mark_resolved(g.members)

    def _forget(self, paths: list[str]) -> None:
        """Drop moved photos from the catalog and from the groups on screen."""
        if not paths:
            return
        col = self.collection_getter()
        if col is not None:
            col.remove_photos(paths)
            self.photos_removed.emit()
        self.finder = None
        self._finder_key = None
        gone = set(paths)
        kept = []
        for g in self.groups:
            members = [m for m in g.members if m.path not in gone]
            if len(members) >= 2:
                kept.append(g.with_members(members))
        self._show(kept)
