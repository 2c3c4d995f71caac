"""Application start-up: QApplication, main window, and the screenshot automation hook."""
from __future__ import annotations

import argparse
import sys


def run_app(args: argparse.Namespace) -> int:
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Lookalike")
    app.setOrganizationName("Lookalike")
    window = MainWindow(catalog_dir=args.catalog)
    window.show()
    if args.screenshot:
        from PySide6.QtCore import QTimer

        def shoot() -> None:
            window.grab().save(args.screenshot)
            app.quit()

        QTimer.singleShot(500, shoot)
    return app.exec()
