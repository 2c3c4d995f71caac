"""Application start-up: QApplication, main window, and the screenshot automation hook.

``main.py gui --catalog DIR --query IMAGE --screenshot FILE.png [--overlay K] [--why N]``
opens the window, runs the query, waits until the results, their visible thumbnails and
the explanation are shown, saves a screenshot of the whole window and exits (0; 1 when it
gave up waiting or the query failed, the screenshot is saved anyway). The hook runs on
settings of its own in a temporary file: the user's saved settings (last collection, the
list of collections, window layout) are neither read nor changed by it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

SCREENSHOT_TIMEOUT_S = 300
SCREENSHOT_SIZE = (1280, 800)  # a common laptop screen


def run_app(args: argparse.Namespace) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .resources import app_icon

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Lookalike")
    app.setWindowIcon(app_icon())  # dialogs and the task bar too
    app.setOrganizationName("Lookalike")
    app.setStyle("Fusion")  # follows the system's dark / light colour scheme (Qt >= 6.5)
    settings = None
    if getattr(args, "screenshot", None):
        from PySide6.QtCore import QSettings

        scratch = tempfile.TemporaryDirectory(prefix="lookalike-shot-")
        app.aboutToQuit.connect(scratch.cleanup)
        settings = QSettings(str(Path(scratch.name) / "lookalike.ini"), QSettings.Format.IniFormat)
    window = MainWindow(catalog_dir=args.catalog, settings=settings)
    if getattr(args, "screenshot", None):
        window.resize(*SCREENSHOT_SIZE)
    window.show()
    overlay = getattr(args, "overlay", None)
    if overlay:
        window.search.query_pane.set_overlay(overlay)
    if getattr(args, "browse", None):
        window.tabs.setCurrentWidget(window.browse_view)
        window.browse_view.show_folder(args.browse)
    if getattr(args, "duplicates", False):
        window.tabs.setCurrentWidget(window.duplicates_view)
    if getattr(args, "query", None):
        if getattr(args, "why", None):
            window.search.pending_why_rank = int(args.why)
        window.search.run_query(args.query)
    if getattr(args, "screenshot", None):
        shooter = _Shooter(app, window, args.screenshot, bool(getattr(args, "query", None)))
        QTimer.singleShot(300, shooter.poll)
    return app.exec()


class _Shooter:
    """Polls until the window is settled, then saves the screenshot and quits."""

    def __init__(self, app, window, path: str, wants_results: bool):
        self.app, self.window, self.path = app, window, path
        self.wants_results = wants_results
        self.start = time.monotonic()
        self.calm = 0
        self.status = 0

    def settled(self) -> bool:
        w = self.window
        if w.busy():
            return False
        results = w.search.results
        if self.wants_results and w.search.query is not None and results.model.total() == 0 and not w.banner.last_error:
            return False
        # Painting requests the visible thumbnails; they must all be decoded.
        w.grab()
        return not w.thumbnails.pending() and results.model.thumbnails_loaded(results.visible_rows())

    def poll(self) -> None:
        from PySide6.QtCore import QTimer

        timed_out = time.monotonic() - self.start > SCREENSHOT_TIMEOUT_S
        self.calm = self.calm + 1 if self.settled() else 0
        if self.calm < 3 and not timed_out:
            QTimer.singleShot(200, self.poll)
            return
        last_error = self.window.banner.last_error
        if timed_out or last_error:
            print(f"lookalike gui: {'gave up waiting' if timed_out else last_error}", file=sys.stderr)
            self.status = 1
        self.window.grab().save(self.path)
        print(self.path)
        self.window.close()
        self.app.exit(self.status)
