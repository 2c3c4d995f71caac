""""Adapt to my photos": train the active method's head on the collection's own photos.

The training runs as a task of the window's :class:`gui.workers.TaskRunner`; the engine keeps
the trained weights only if held-out retrieval improves. Progress goes to the status bar;
Esc (the window's) cancels.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QStatusBar, QWidget

from ..banner import MessageBanner
from ..workers import TaskRunner
from .session import CollectionSession


class AdaptController(QObject):
    """``start(epochs)``; ``finished(text)`` when it ended (kept, not kept, cancelled or failed).
    ``is_indexing()``: no adaptation starts while indexing runs."""

    finished = Signal(str)

    def __init__(self, tasks: TaskRunner, session: CollectionSession, banner: MessageBanner,
                 status_bar: QStatusBar, window: QWidget, is_indexing, confirm: bool = True):
        super().__init__(window)
        self.tasks, self.session, self.banner, self.status_bar = tasks, session, banner, status_bar
        self.window, self.is_indexing, self.confirm = window, is_indexing, confirm

    def running(self) -> bool:
        return self.tasks.busy("adapt")

    def cancel(self) -> None:
        task = self.tasks.running("adapt")
        if task is not None:
            task.cancel()

    def start(self, epochs: int = 5) -> bool:
        col = self.session.collection
        if col is None:
            self.banner.show_message("Open or create a collection first.")
            return False
        if self.is_indexing() or self.running():
            self.banner.show_message("Wait until indexing or the running adaptation has finished.")
            return False
        name = col.active_method
        if not col.is_trainable(name):
            self.banner.show_message(f"Method '{name}' has nothing to adapt; choose an ACTNET or DARAC method first.")
            return False
        if self.confirm and QMessageBox.question(
                self.window, "Adapt to my photos",
                f"Train '{name}' for {epochs} epochs on augmented copies of up to 300 photos of this "
                "collection? Photos are re-indexed with the new weights only if they find held-out "
                "copies better. Esc cancels.") != QMessageBox.StandardButton.Yes:
            return False
        self.status_bar.showMessage("Adapting: starting…")

        def work(task):
            return col.train(name, epochs=epochs, cancel=task.cancel_event, progress=lambda phase, done, total, msg:
                             task.report(f"Adapting {name}: {phase} {done}/{total} {msg} (Esc cancels)"))

        self.tasks.start("adapt", work, lambda report: self._done(name, report),
                         lambda message: self._finish(f"Could not adapt '{name}': {message}"),
                         on_progress=self.status_bar.showMessage)
        return True

    def _done(self, name: str, report) -> None:
        if report.cancelled:
            self._finish("Adaptation cancelled; the method keeps its previous weights.")
        elif report.kept:
            self._finish(f"Adapted '{name}': held-out mAP {report.val_before:.3f} → {report.val_after:.3f}; "
                         f"{report.reindexed} photos re-indexed.")
        else:
            self._finish(f"Adaptation did not help (held-out mAP {report.val_before:.3f} → "
                         f"{report.val_after:.3f}); the previous weights are kept.")

    def _finish(self, text: str) -> None:
        self.status_bar.showMessage(text, 20000)
        self.banner.show_message(text, info=True)
        self.finished.emit(text)
