"""The keep rules dialog: which photo of a group is suggested as the one to keep."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QPushButton, QVBoxLayout, QWidget)

from engine.services.duplicates import KEEP_RULE_TITLES, KEEP_RULES, KeepRules


class KeepRulesDialog(QDialog):
    """Order of the keep rules, preferred formats and folders."""

    def __init__(self, rules: KeepRules, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keep rules")
        self.list = QListWidget()
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        for r in rules.order + tuple(x for x in KEEP_RULES if x not in rules.order):
            self.list.addItem(KEEP_RULE_TITLES[r])
            self.list.item(self.list.count() - 1).setData(Qt.ItemDataRole.UserRole, r)
        up, down = QPushButton("Up"), QPushButton("Down")
        up.clicked.connect(lambda: self._move(-1))
        down.clicked.connect(lambda: self._move(1))
        self.formats = QLineEdit(" ".join(rules.formats))
        self.formats.setToolTip("File extensions preferred, best first (others come after, equal)")
        self.folders = QLineEdit("; ".join(rules.folders))
        self.folders.setToolTip("Folders whose photos are preferred, best first, separated by ';'")
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("The first rule that tells two photos apart decides which one is kept:"))
        row = QHBoxLayout()
        row.addWidget(self.list, 1)
        side = QVBoxLayout()
        side.addWidget(up)
        side.addWidget(down)
        side.addStretch(1)
        row.addLayout(side)
        lay.addLayout(row)
        lay.addWidget(QLabel("Preferred formats:"))
        lay.addWidget(self.formats)
        lay.addWidget(QLabel("Preferred folders:"))
        lay.addWidget(self.folders)
        lay.addWidget(box)

    def _move(self, d: int) -> None:
        r = self.list.currentRow()
        if r < 0 or not 0 <= r + d < self.list.count():
            return
        item = self.list.takeItem(r)
        self.list.insertItem(r + d, item)
        self.list.setCurrentRow(r + d)

    def rules(self) -> KeepRules:
        order = tuple(self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count()))
        fmts = tuple(f if f.startswith(".") else "." + f for f in self.formats.text().lower().split() if f)
        folders = tuple(f.strip() for f in self.folders.text().split(";") if f.strip())
        return KeepRules(order, fmts, folders)
