"""The message line at the top of the window: errors in red, information in blue, closable."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton


class MessageBanner(QFrame):
    """``show_message(text, info=False)``; ``last_error`` is the last error shown ("" after info)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet("#banner { background: #b3261e; border-radius: 4px; } "
                           "#banner QLabel { color: white; } #banner[info=\"true\"] { background: #2b6cb0; }")
        self.last_error = ""
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.clicked.connect(self.hide_message)
        lay.addWidget(self.text, 1)
        lay.addWidget(close)
        self.hide()

    def show_message(self, text: str, info: bool = False) -> None:
        self.last_error = "" if info else text
        self.setProperty("info", "true" if info else "false")
        self.style().unpolish(self)
        self.style().polish(self)
        self.text.setText(text)
        self.show()

    def hide_message(self) -> None:
        self.hide()
