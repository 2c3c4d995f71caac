"""One duplicate group on screen: its header with the review buttons and a card per photo."""
from __future__ import annotations

import os
import time

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QCheckBox, QFrame, QHBoxLayout, QLabel, QMenu, QPushButton, QVBoxLayout

from engine.services.duplicates import TIER_TITLES, DuplicateGroup, PhotoInfo, size_text

THUMB = 150


def reveal(path: str) -> None:
    """Show the file's folder in the system file manager."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path)))


class PhotoCard(QFrame):
    """One photo of a group: thumbnail, name, full folder, facts, keep badge, a 'move' check box."""

    find_similar = Signal(str)
    keep_requested = Signal(object)   # self
    compare_requested = Signal(object)  # self

    def __init__(self, info: PhotoInfo, keep: bool, removable: bool, reason: str, thumbnails, parent=None):
        super().__init__(parent)
        self.info = info
        self.thumbnails = thumbnails
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.image = QLabel()
        self.image.setFixedSize(QSize(THUMB, THUMB))
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.check = QCheckBox("move")
        self.check.setChecked(removable and not keep)
        self.check.setToolTip("Selected photos are the ones the move actions take")
        res = f"{info.width} × {info.height}" if info.width else "? × ?"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.date))
        self.badge = QLabel()
        self.badge.setWordWrap(True)
        self.set_keep(keep and removable, reason)
        self.facts = facts = QLabel(f"<b>{os.path.basename(info.path)}</b><br>"
                       f"<span style='color:#555'>{info.folder}</span><br>{res} · {size_text(info.size)}<br>"
                       f"{'taken' if info.taken is not None else 'modified'} {when}")
        facts.setToolTip(info.path)
        facts.setWordWrap(True)
        facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for w in (facts, self.badge):
            w.setFixedWidth(THUMB + 30)
        self.keep_btn = QPushButton("Keep this")
        self.keep_btn.clicked.connect(lambda: self.keep_requested.emit(self))
        self.compare_btn = QPushButton("Compare")
        self.compare_btn.clicked.connect(lambda: self.compare_requested.emit(self))
        buttons = QHBoxLayout()
        buttons.addWidget(self.keep_btn)
        buttons.addWidget(self.compare_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.image)
        lay.addWidget(facts)
        lay.addWidget(self.badge)
        lay.addWidget(self.check)
        lay.addLayout(buttons)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(lambda pos: self.menu().exec(self.mapToGlobal(pos)))
        self.refresh_thumbnail()

    def set_keep(self, keep: bool, reason: str = "") -> None:
        self.is_keep = keep
        self.badge.setText(f"<span style='color:#2e7d32'><b>✓ keep</b></span> <span style='color:#2e7d32'>"
                           f"{reason}</span>" if keep else "")

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


class GroupWidget(QFrame):
    """A group's header (tier, evidence, actions) and its photo cards."""

    not_duplicate = Signal(object)  # self
    resolved = Signal(object)       # self

    def __init__(self, number: int, group: DuplicateGroup, thumbnails, parent=None):
        super().__init__(parent)
        self.group = group
        self.setFrameShape(QFrame.Shape.Box)
        self.setLineWidth(1)
        what = TIER_TITLES[group.tier]
        if group.tier == "near":
            what += f" · {group.evidence}"
        elif group.tier == "similar":
            what += f" · search similarity ≥ {group.similarity:.2f}; nothing is proposed for removal"
        self.header = QLabel(f"<b>Group {number}</b>: {len(group.members)} photos, {what}")
        self.header.setWordWrap(True)
        self.not_dup_btn = QPushButton("Not a duplicate (X)")
        self.not_dup_btn.setToolTip("Remember that these photos are different; they are not grouped again")
        self.not_dup_btn.clicked.connect(lambda: self.not_duplicate.emit(self))
        self.resolved_btn = QPushButton("Keep all (R)")
        self.resolved_btn.setToolTip("Reviewed: keep every photo of this group; it is not proposed again")
        self.resolved_btn.clicked.connect(lambda: self.resolved.emit(self))
        head = QHBoxLayout()  # buttons first: a wide group scrolls, they stay in view
        if group.removable:
            head.addWidget(self.resolved_btn)
            head.addWidget(self.not_dup_btn)
        head.addWidget(self.header, 1)
        row = QHBoxLayout()
        self.cards = [PhotoCard(m, k == 0, group.removable, group.reason, thumbnails)
                      for k, m in enumerate(group.members)]
        for c in self.cards:
            row.addWidget(c)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addLayout(row)
        self.set_current(False)

    def set_current(self, on: bool) -> None:
        self.setStyleSheet("GroupWidget { border: 3px solid #1e88e5; }" if on else
                           "GroupWidget { border: 1px solid #bbb; }")

    def keep(self, card: PhotoCard) -> None:
        """Make ``card`` the photo kept (the others of the group are selected for moving)."""
        for c in self.cards:
            c.set_keep(c is card, "your choice" if c is card else "")
            c.check.setChecked(c is not card)
