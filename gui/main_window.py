"""The main window: assembles the collection dock, the Search, Browse and Duplicates tabs, the
toolbar, the menus and the status bar, and passes on what one part tells another.

Nothing here computes or decides what is shown: every background job is a task of a
:class:`gui.workers.TaskRunner`; the parts are in ``gui/collection/`` (collections, folders,
method and device, indexing, folder watching, adaptation), ``gui/search/``, ``gui/browse/``
and ``gui/duplicates/``; settings are read and written through :class:`gui.settings.AppSettings`.
"""
from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMessageBox, QTabWidget, QVBoxLayout, QWidget

from .actions import ActionSlots, build_actions, build_toolbar
from .banner import MessageBanner
from .browse.view import BrowseView
from .collection.adapt import AdaptController
from .collection.folder_watch import FolderWatchController
from .collection.indexing import IndexingController
from .collection.methods import MethodChoice
from .collection.panel import CollectionPanel
from .collection.session import CollectionSession
from .dialogs import HELP_TEXT, PreferencesDialog, about_text, about_version
from .duplicates.view import DuplicatesView
from .resources import app_icon
from .search.panel import SearchPanel
from .search.query_input import QueryInput
from .settings import THUMB_SIZES, AppSettings, open_settings
from .thumbnails import ThumbnailProvider
from .workers import TaskRunner


class MainWindow(QMainWindow):
    """Lookalike's window. ``catalog_dir`` opens that collection (else the last one used).

    ``index_batch_size``: photos per catalog commit (None: from the method's speed);
    ``index_overrides``: method settings for new indexes (tests: a small image side);
    ``confirm``: ask before (re)indexing, adapting, or about a missing collection.
    """

    index_finished = Signal(object)  # IndexReport, or None after an error
    adapt_finished = Signal()  # "Adapt to my photos" ended (kept, not kept, cancelled or failed)

    def __init__(self, catalog_dir: str | None = None, settings: QSettings | None = None,
                 index_batch_size: int | None = None, confirm: bool = True, index_overrides: dict | None = None):
        super().__init__()
        self.setWindowTitle("Lookalike")
        self.setWindowIcon(app_icon())
        self.settings = AppSettings(settings or open_settings())
        self.banner = MessageBanner()
        self.tasks = TaskRunner(self)  # queries, explanations, calibration, warm-up, rescans, adaptation
        self.thumbnails = ThumbnailProvider(self)
        status = self.statusBar()
        self.session = CollectionSession(self.settings, self.banner, self, lambda: self.methods.device(),
                                         lambda: self.is_indexing(), confirm)
        self.methods = MethodChoice(self.session, self.settings, self, confirm)
        self.indexing = IndexingController(self.session, self.methods, self.settings, self.banner, status,
                                           index_batch_size, index_overrides)
        self.adapt = AdaptController(self.tasks, self.session, self.banner, status, self, self.is_indexing, confirm)
        self.folder_watch = FolderWatchController(self.tasks, self)
        self.search = SearchPanel(self.tasks, self.thumbnails, self.settings, lambda: self.collection, self.banner,
                                  self.indexing.found)
        self.query_input = QueryInput(self, self.search.run_query, self.add_folders, self.banner.show_message)
        self.browse_view = BrowseView(lambda: self.collection, self.thumbnails, self)
        self.duplicates_view = DuplicatesView(lambda: self.collection, self.thumbnails, self)
        self.collection_panel = CollectionPanel(self.session, self.methods.method_combo, self.indexing.start)
        self._assemble()
        self.menu_actions = build_actions(self, ActionSlots(
            open_query=self.query_input.open_dialog, paste_query=self.query_input.paste,
            add_folder=self.collection_panel.choose_folder, open_archive=self.session.open_archive_dialog,
            adapt=self.adapt.start,
            watch_folders=self._on_watch_toggled, preferences=self.show_preferences,
            bigger_thumbnails=lambda: self.search.results.change_thumb_size(+1),
            smaller_thumbnails=lambda: self.search.results.change_thumb_size(-1),
            help=self.show_help, about=self.show_about, find=self.focus_filter, escape=self.escape),
            watching=self.settings.watch_folders)
        self.folder_watch.set_enabled(self.menu_actions.watch_folders.isChecked())
        self._connect()
        self._restore_settings()
        self.session.open_initial(catalog_dir)

    def _assemble(self) -> None:
        self.tabs = QTabWidget()
        self.tabs.addTab(self.search, "Search")
        self.tabs.addTab(self.browse_view, "Browse")
        self.tabs.addTab(self.duplicates_view, "Duplicates")
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.banner)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.dock = QDockWidget("Collection", self)
        self.dock.setObjectName("collection_dock")
        self.dock.setWidget(self.collection_panel)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        build_toolbar(self, self.query_input.open_dialog, self.methods.method_combo, self.methods.device_combo)

    def _connect(self) -> None:
        self.session.opened.connect(self._on_opened)
        self.session.folders_changed.connect(self._on_folders_changed)
        self.methods.method_changed.connect(self._on_method_changed)
        self.methods.index_requested.connect(self.indexing.start)
        self.indexing.started.connect(self._on_index_started)
        self.indexing.progressed.connect(
            lambda p: self.collection_panel.show_indexing(p.done, p.total, self.indexing.method))
        self.indexing.finished.connect(self._on_index_finished)
        self.adapt.finished.connect(self._on_adapt_finished)
        self.folder_watch.changes_found.connect(self._on_folder_changes)
        self.folder_watch.folders_missing.connect(self._on_folders_missing)
        self.search.parts_learned.connect(self.apply_capabilities)
        self.search.results.status_message.connect(self.statusBar().showMessage)
        self.browse_view.find_similar.connect(self._find_similar)
        self.browse_view.find_similar_region.connect(self._find_similar_region)
        self.duplicates_view.find_similar.connect(self._find_similar)
        self.duplicates_view.photos_removed.connect(self.collection_panel.refresh)

    # -- state ---------------------------------------------------------------------------------
    @property
    def collection(self):
        """The open ``engine.api.Collection``, or None."""
        return self.session.collection

    def is_indexing(self) -> bool:
        return self.indexing.running()

    def busy(self) -> bool:
        """Whether anything runs in the background (indexing, query, explanation, thumbnails)."""
        return self.is_indexing() or self.tasks.busy() or self.thumbnails.pending() > 0

    def add_folders(self, folders: list[str], index: bool = True) -> None:
        """Add photo folders to the collection; with ``index`` index them now."""
        added = [f for f in folders if self.session.add_folder(f)]
        if added and index:
            self.indexing.start()

    def apply_capabilities(self) -> None:
        """Offer only the overlays, box modes and actions the active method supports."""
        col = self.collection
        name = col.active_method if col is not None else None
        caps = self.methods.capabilities(name)
        self.search.apply_capabilities(name, caps, self.methods.states_parts(name))
        self.browse_view.viewer.set_activation_crop(caps is None or "activation_crop" in caps)
        trainable = caps is None or "train" in caps
        adapt = self.menu_actions.adapt
        adapt.setEnabled(col is not None and trainable and not col.read_only)
        adapt.setToolTip("Train this method's head on your own photos" if trainable else
                         f"{name} has nothing to train: choose an ACTNET or DARAC method")

    # -- what one part tells the others ---------------------------------------------------------
    def _on_opened(self, col) -> None:
        self._set_read_only(read_only := col is not None and col.read_only)  # an archive: search only
        self.folder_watch.set_collection(None if read_only else col)
        self.search.reset()
        self.collection_panel.refresh()
        self.search.results.load_calibration()
        self.apply_capabilities()
        if col is None:
            return
        # The model and search index load in the background now, not on the first drop.
        self.tasks.start("warm-up", lambda _task: col.warm_up(), lambda _none: None, lambda message:
                         self.banner.show_message(f"The model of this collection could not be loaded: {message}"))
        self.indexing.resume_if_interrupted(col)

    def _set_read_only(self, read_only: bool) -> None:
        """An archive offers Search only: no indexing, folders, browsing, duplicates or training."""
        self.tabs.setCurrentIndex(0 if read_only else self.tabs.currentIndex())
        for tab in (1, 2):
            self.tabs.setTabEnabled(tab, not read_only)
            self.tabs.setTabToolTip(tab, "Not available for an archive (opened read-only)" if read_only else "")
        for act in (self.menu_actions.add_folder, self.menu_actions.watch_folders):
            act.setEnabled(not read_only)
        self.methods.method_combo.set_read_only(read_only)

    def _on_folders_changed(self) -> None:
        self.collection_panel.refresh()
        self.folder_watch.rewatch()

    def _on_method_changed(self) -> None:
        """The active method changed: its calibration, what it offers, the results."""
        self.collection_panel.refresh()
        self.search.results.load_calibration()
        self.apply_capabilities()
        self.search.rerun_query()

    def _on_index_started(self) -> None:
        self.folder_watch.set_paused(True)  # the index run sees the changes itself
        self.collection_panel.set_indexing(True)

    def _on_index_finished(self, report) -> None:
        self.folder_watch.set_paused(False)
        self.folder_watch.rewatch()  # new sub-folders
        self.collection_panel.set_indexing(False)
        self.collection_panel.refresh()
        if report is not None:
            self.search.results.load_calibration()  # the descriptors changed: so did the scores' spread
            self.apply_capabilities()
            if not report.cancelled:
                self.search.rerun_query()
        self.index_finished.emit(report)

    def _on_adapt_finished(self, _text: str) -> None:
        self.collection_panel.refresh()
        self.adapt_finished.emit()

    def _on_watch_toggled(self, on: bool) -> None:
        self.settings.watch_folders = on
        self.folder_watch.set_enabled(on)

    def _on_folder_changes(self, changes) -> None:
        """New, edited or deleted photos found while the window is open: update the index."""
        col = self.collection
        if col is None or self.is_indexing():
            return  # the running index sees them, or the next rescan does
        if not col.has_descriptors():
            self.statusBar().showMessage(f"Photo folders changed ({changes.summary()}); press Index to index them.", 15000)
            return
        self.statusBar().showMessage(f"Photo folders changed ({changes.summary()}): updating the index…", 10000)
        self.indexing.start(verify_hashes=list(changes.verify_paths))

    def _on_folders_missing(self, folders: list) -> None:
        self.banner.show_message(f"Not reachable now: {', '.join(folders)}. Its photos stay in the collection and "
                                 "are checked again later (an unplugged drive?).", info=True)

    def _find_similar(self, path: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.search.run_query(path)

    def _find_similar_region(self, path: str, box: tuple, box_mode: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.search.query_region(path, box, box_mode)

    # -- keys and dialogs -----------------------------------------------------------------------
    def focus_filter(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.search.right_tabs.setCurrentIndex(0)
        self.search.results.focus_filter()

    def escape(self) -> None:
        """Esc clears the path filter where it has the focus or a text, else cancels an adaptation.
        It never stops indexing: a stray Esc left a collection half-indexed (Cancel does that)."""
        edit = self.search.results.filter_edit
        if edit.hasFocus() or edit.text():
            edit.clear()
        else:
            self.adapt.cancel()

    def show_preferences(self) -> None:
        PreferencesDialog(self, self.methods, self.search.results, self.menu_actions.watch_folders, THUMB_SIZES).exec()

    def show_help(self) -> None:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "How to use Lookalike", HELP_TEXT, parent=self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.exec()

    def show_about(self) -> None:
        QMessageBox.about(self, "About Lookalike", about_text(about_version()))

    # -- settings and shutdown ------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        if s.window_geometry is not None:
            self.restoreGeometry(s.window_geometry)
        else:
            self.resize(1280, 820)
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:  # a laptop's 1366 x 768: the bottom rows were off screen
            avail = screen.availableGeometry()
            self.resize(min(self.width(), avail.width() - 16), min(self.height(), avail.height() - 48))
        if s.window_state is not None:
            self.restoreState(s.window_state)
        self.search.results.set_thumb_size(s.thumb_size)
        self.search.query_pane.restore(s.overlay, s.overlay_opacity)

    def save_settings(self) -> None:
        s = self.settings
        s.window_geometry = self.saveGeometry()
        s.window_state = self.saveState()
        s.thumb_size = self.search.results.model.thumb_size
        s.device = self.methods.device()
        s.overlay_opacity = self.search.query_pane.opacity_slider.value()
        s.overlay = self.search.query_pane.overlay_kind()
        if self.collection is not None:
            s.last_collection = str(self.collection.directory)
        s.sync()

    def closeEvent(self, event) -> None:
        self.save_settings()
        self.folder_watch.stop()
        self.indexing.cancel()
        self.indexing.wait(30000)
        self.adapt.cancel()  # training stops between steps; the previous weights stay
        self.duplicates_view.stop()
        self.tasks.wait(30000)
        self.thumbnails.clear_pending()
        self.thumbnails.wait_idle(10000)
        self.session.close()
        super().closeEvent(event)
