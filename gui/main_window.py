"""The main window (minimal in the foundation; the full GUI issue builds it out)."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow


class MainWindow(QMainWindow):
    def __init__(self, catalog_dir: str | None = None):
        super().__init__()
        self.setWindowTitle("Lookalike")
        self.catalog_dir = catalog_dir
        label = QLabel("Drop a photo here to find similar ones.")
        self.setCentralWidget(label)
        self.resize(1000, 700)
