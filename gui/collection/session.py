"""Which collection the window has open: opening or creating one, the lock against a second
window, a remembered collection that went missing, forgetting one, adding and removing folders."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QLockFile, QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

from engine.api import Collection, catalog_exists, data_home, default_catalog_dir, is_archive, open_archive
from engine.errors import LookalikeError

from ..banner import MessageBanner
from ..settings import AppSettings
from ..workers import readable_error


ARCHIVE_NOTE = ("This is an archive, opened read-only: drop a photo on the window to search it. Its photos "
                "were described on other machines (lookalike archive index); indexing, folders, browsing, "
                "duplicates and adapting are not available here, and results are not re-ranked.")


class CollectionSession(QObject):
    """Holds ``collection`` (or None); ``opened(collection or None)`` whenever that changes.

    ``device()`` is the device a collection opens with; ``busy()`` is True while indexing runs
    (then the collection is not switched); with ``confirm`` a missing collection is asked about.
    """

    opened = Signal(object)
    known_changed = Signal()  # the list of collections may read otherwise (a failed open)
    folders_changed = Signal()

    def __init__(self, settings: AppSettings, banner: MessageBanner, window: QWidget,
                 device: Callable[[], str], busy: Callable[[], bool], confirm: bool = True):
        super().__init__(window)
        self.settings, self.banner, self.window = settings, banner, window
        self.device, self.busy, self.confirm = device, busy, confirm
        self.collection: Collection | None = None
        self._lock: QLockFile | None = None

    def open_initial(self, catalog_dir: str | None) -> None:
        """At start-up: the catalog asked for on the command line (created when new, as the CLI
        does), else the last one used (not recreated when it went missing), else the default."""
        last = self.settings.last_collection
        if catalog_dir:
            self.open(catalog_dir)
        elif last:
            self.open(last, create=False)
        else:
            self.open(str(default_catalog_dir()))

    def open(self, directory: str, create: bool = True) -> bool:
        """Open (with ``create``: or create) the collection whose catalog is ``directory``.

        A remembered collection whose folder is gone (an unplugged drive) is not recreated
        empty: the user is told and chooses (``create=False``)."""
        if self.busy():
            self.banner.show_message("Wait for indexing to finish (or cancel it) before switching collections.")
            return False
        archive = is_archive(directory)
        if not create and not archive and not catalog_exists(directory):
            return self._missing(directory)
        try:
            col = open_archive(directory, self.device()) if archive else Collection.open(directory, device=self.device())
        except (LookalikeError, OSError) as exc:
            self.banner.show_message(f"Cannot open the collection {directory}: {readable_error(exc)}")
            self.known_changed.emit()  # the list shows the one still open again
            return False
        self.close()
        self.collection = col
        d = str(col.directory)
        known = self.settings.collections
        if d not in known:
            self.settings.collections = known + [d]
        self.settings.last_collection = d
        self.banner.hide_message()
        if not col.read_only:  # an archive is never written (it may sit on a read-only share)
            self._take_lock(col)
        self.opened.emit(col)
        if col.read_only:
            self.banner.show_message(ARCHIVE_NOTE, info=True)
        elif not col.folders():
            self.banner.show_message("This collection has no photo folders yet: choose Add… under Folders "
                                     "(or drop a folder on the window) and its photos are indexed.", info=True)
        return True

    def close(self) -> None:
        if self.collection is not None:
            self.collection.close()
            self.collection = None
        if self._lock is not None:
            self._lock.unlock()
            self._lock = None

    def _take_lock(self, col: Collection) -> None:
        """Warn when another Lookalike window has this collection open (both would index it)."""
        lock = QLockFile(str(col.directory / "window.lock"))
        lock.setStaleLockTime(0)  # a crashed window's lock is stale once its process is gone
        if lock.tryLock(0):
            self._lock = lock
            return
        info = lock.getLockInfo()  # PySide6: (pid, hostname, appname); empty when unreadable
        who = f" (process {info[0]})" if info and info[0] else ""
        self.banner.show_message(f"This collection is already open in another Lookalike window{who}. Changes made "
                                 "in both at once may index photos twice; close one of them.", info=True)

    def _missing(self, directory: str) -> bool:
        """A remembered collection's catalog is not there: ask instead of creating it empty."""
        self.close()
        self.opened.emit(None)
        text = (f"The collection {directory} cannot be found (is its drive unplugged?). Its photos "
                "and index are kept there; plug the drive in and choose it again, or choose another "
                "collection.")
        self.banner.show_message(text)
        if self.confirm:  # asked once the window is up (at start-up it is not shown yet)
            QTimer.singleShot(0, lambda: self._ask_missing(directory, text))
        return False

    def _ask_missing(self, directory: str, text: str) -> None:
        if self.collection is not None:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Collection not found", text, parent=self.window)
        retry = box.addButton("Look again", QMessageBox.ButtonRole.AcceptRole)
        create = box.addButton("Start it empty there", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Choose another", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is retry:
            self.open(directory, create=False)
        elif box.clickedButton() is create:
            self.open(directory)

    def open_archive_dialog(self) -> None:
        """File > Open archive…: a folder written by ``lookalike archive index --out``."""
        directory = QFileDialog.getExistingDirectory(self.window, "Open an archive (its --out folder)")
        if directory:
            self.open_archive_folder(directory)

    def open_archive_folder(self, directory: str) -> bool:
        """Open ``directory`` as an archive, or say why it is not one (nothing is created)."""
        if not is_archive(directory):
            self.banner.show_message(f"{directory} is not a Lookalike archive: an archive is the --out folder "
                                     "of 'lookalike archive index' (it holds archive.json). To search a folder "
                                     "of photos, add it to a collection instead (Add… under Folders).")
            return False
        return self.open(directory, create=False)

    def choose(self, directory: str) -> None:
        """A collection picked from the list (one that went missing is not recreated)."""
        if directory and (self.collection is None or directory != str(self.collection.directory)):
            self.open(directory, create=False)

    def new_collection(self) -> None:
        name, ok = QInputDialog.getText(self.window, "New collection", "Name of the new collection:")
        if ok and name.strip():
            safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in name.strip())
            self.open(str(data_home() / "collections" / safe))

    def forget(self) -> None:
        """Take the open collection off the list (its catalog stays on disk) and open another."""
        if self.collection is None or self.busy():
            if self.busy():
                self.banner.show_message("Cancel indexing before forgetting this collection.")
            return
        d = str(self.collection.directory)
        rest = [c for c in self.settings.collections if c != d]
        self.settings.collections = rest
        self.settings.last_collection = None
        self.close()
        if rest:
            self.open(rest[0], create=False)
        else:
            self.opened.emit(None)
            self.banner.show_message(f"Forgot {d} (its catalog stays on disk). Choose New… to start a collection.",
                                     info=True)

    # -- folders ------------------------------------------------------------------------------
    def add_folder(self, folder: str) -> bool:
        if self.collection is None:
            return False
        try:
            self.collection.add_folder(folder)
        except (LookalikeError, OSError) as exc:
            self.banner.show_message(readable_error(exc))
            return False
        self.folders_changed.emit()
        return True

    def remove_folder(self, folder: str) -> None:
        if self.collection is None:
            return
        if self.busy():
            self.banner.show_message("Cancel indexing before removing a folder.")
            return
        try:
            self.collection.remove_folder(folder)
        except (LookalikeError, OSError) as exc:
            self.banner.show_message(readable_error(exc))
        self.folders_changed.emit()

    def known(self) -> list[str]:
        return self.settings.collections

    @staticmethod
    def label(directory: str) -> str:
        name = Path(directory).name or directory
        return f"{name} (archive)" if is_archive(directory) else name
