"""The main window: collections, indexing, query, results grid, overlays and why-matched.

The window never computes a descriptor: indexing runs in an :class:`IndexThread`, queries
and explanations in a :class:`TaskRunner` pool, thumbnails in the :class:`ThumbnailProvider`
pool; results come back through queued signals. Engine errors become a readable message
in the banner at the top of the window.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QByteArray, QEvent, QLockFile, QPoint, QSettings, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox,
                               QDockWidget, QFileDialog, QFormLayout, QFrame, QHBoxLayout, QInputDialog, QLabel,
                               QLineEdit, QListView, QListWidget, QMainWindow, QMenu, QMessageBox, QProgressBar,
                               QPushButton, QSlider, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget,
                               QToolButton, QVBoxLayout, QWidget)

from engine.store import paths
from engine.api import Collection, method_capabilities
from engine.imaging.images import crop_box, is_image_path, load_image
from engine.search.score_calibration import score_calibration, stored_calibration

from .folder_watch import FolderWatchController
from .grid_delegate import ThumbnailGridDelegate, grid_cell_size
from .method_picker import MethodPicker, measured_speed
from .overlays import OVERLAY_KINDS, LegendLabel, Overlay, OverlayView
from .results_model import NEAR_DUPLICATE_SCORE, PathRole, ResultItem, ResultsModel
from .text import format_duration, plural
from .thumbnails import ThumbnailProvider, pil_to_qimage
from .resources import app_icon
from .why_panel import WhyData, WhyPanel, side_overlay
from .workers import IndexThread, IndexWorker, TaskRunner, readable_error

MAX_RESULTS = 10000
DISPLAY_SIDE = 1024  # longest side of the query / result pictures shown in the overlay views
THUMB_SIZES = (96, 128, 160, 200, 256, 320)
PROGRESS_EVERY_S = 2.0  # aim: an indexing progress update this often (photos per catalog commit follow)


def settings_path() -> Path:
    return paths.config_dir() / "lookalike.ini"


def open_settings() -> QSettings:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)


def detected_gpu() -> str | None:
    """Name of the accelerator ``auto`` would use, or None (CPU only)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "Apple Metal (MPS)"
    except Exception:
        return None
    return None


def _settings_key(path: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in path)


class MainWindow(QMainWindow):
    """Lookalike's window. ``catalog_dir`` opens that collection (else the last one used)."""

    query_finished = Signal()  # results (or an error) are shown
    explain_finished = Signal()
    adapt_finished = Signal()  # "Adapt to my photos" ended (kept, not kept, cancelled or failed)
    index_finished = Signal(object)  # IndexReport, or None after an error

    def __init__(self, catalog_dir: str | None = None, settings: QSettings | None = None,
                 index_batch_size: int | None = None, confirm: bool = True, index_overrides: dict | None = None):
        super().__init__()
        self.setWindowTitle("Lookalike")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.settings = settings or open_settings()
        self.index_batch_size = index_batch_size  # photos per catalog commit; None: from the method's speed
        self.index_overrides = index_overrides  # method settings for new indexes (tests: a small image_side)
        self.confirm = confirm  # ask before (re)indexing after a method change
        self.collection: Collection | None = None
        self.index_thread: IndexThread | None = None
        self.index_worker: IndexWorker | None = None
        self.last_report = None
        self.failed_files: list[tuple[str, str]] = []
        self.query: str | Image.Image | None = None
        self.query_label = ""
        self.query_image: QImage | None = None
        self.query_box: tuple[int, int, int, int] | None = None
        self.query_box_mode = "image"
        self._adapt_cancel: threading.Event | None = None
        self.explained_result: str | None = None
        self.why: WhyData | None = None
        self.last_error = ""
        self._pending_why_rank: int | None = None
        self.calibration = None  # engine.search.score_calibration.ScoreCalibration of the active method
        self._capabilities: dict[str, set[str] | None] = {}
        self.parts_kind: dict[str, str] = {}  # method -> "regions" / "clusters" / ..., learned from explanations
        self.searched_note = ""  # what the last query searched, when not the whole collection
        self._lock: QLockFile | None = None
        self._paused_at: float | None = None
        self._paused_s = 0.0
        self._index_started = 0.0
        self._index_first_done: int | None = None
        self.index_total = 0  # photos the running indexing found (0: none running)
        self.thumbnails = ThumbnailProvider(self)
        self.tasks = TaskRunner(self)
        self.folder_watch = FolderWatchController(self.tasks, self)
        self.folder_watch.changes_found.connect(self._on_folder_changes)
        self.folder_watch.folders_missing.connect(self._on_folders_missing)
        self.model = ResultsModel(self.thumbnails, self)
        self._build_ui()
        self._build_actions()
        self._restore_settings()
        self._add_extra_tabs()
        last = self.settings.value("last_collection")
        if catalog_dir:  # asked for on the command line: created when new, as the CLI does
            self.open_collection(catalog_dir)
        elif last:  # remembered: a folder that went missing (unplugged drive) is not recreated empty
            self.open_collection(str(last), create=False)
        else:
            self.open_collection(str(paths.default_catalog_dir()))

    # ================================================================== UI construction
    def _build_ui(self) -> None:
        # --- banner for messages
        self.banner = QFrame()
        self.banner.setObjectName("banner")
        self.banner.setStyleSheet("#banner { background: #b3261e; border-radius: 4px; } "
                                  "#banner QLabel { color: white; } #banner[info=\"true\"] { background: #2b6cb0; }")
        bl = QHBoxLayout(self.banner)
        bl.setContentsMargins(8, 4, 8, 4)
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.clicked.connect(self.hide_message)
        bl.addWidget(self.banner_text, 1)
        bl.addWidget(close)
        self.banner.hide()

        # --- query side: picture with overlays
        self.query_view = OverlayView()
        self.query_view.set_placeholder("Drop a photo here, paste one (Ctrl+V)\nor open one (Ctrl+O) to find similar photos.")
        self.query_caption = QLabel("No query yet")
        self.query_caption.setWordWrap(True)
        self.overlay_combo = QComboBox()
        for k in OVERLAY_KINDS:
            self.overlay_combo.addItem(k.capitalize() if k != "cam" else "CAM", k)
        self.overlay_combo.setToolTip("Overlay on the query (and in Why matched): R-MAC regions, clusters or CAM")
        self.overlay_combo.currentIndexChanged.connect(self._on_overlay_changed)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setToolTip("Overlay opacity")
        self.opacity_slider.valueChanged.connect(self._on_opacity_changed)
        self.legend = LegendLabel()
        self.opacity_slider.setMinimumWidth(80)
        ov_row = QHBoxLayout()
        ov_row.addWidget(QLabel("Overlay"))
        ov_row.addWidget(self.overlay_combo)
        ov_row.addWidget(QLabel("Opacity"))
        ov_row.addWidget(self.opacity_slider, 1)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.query_caption)
        ll.addWidget(self.query_view, 1)
        ll.addLayout(ov_row)
        ll.addWidget(self.legend)

        # --- results page
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by path (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter_changed)
        self.filter_edit.installEventFilter(self)  # Esc in it clears it (see eventFilter)
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setToolTip("Hide results less similar than this (the slider spans the scores of "
                                         "the current results: methods differ in their score ranges)")
        self.score_range = (0.0, 1.0)
        self.threshold_slider.valueChanged.connect(self._on_threshold_changed)
        self.threshold_label = QLabel("all")
        self.count_label = QLabel("")
        self.hide_dups = QCheckBox("Hide near-duplicates")
        self.hide_dups.setToolTip("Hide the query itself and near-identical copies of it")
        self.hide_dups.setChecked(self.settings.value("hide_near_duplicates", False, type=bool))
        self.model.set_hide_near_duplicates(self.hide_dups.isChecked())
        self.hide_dups.toggled.connect(self._on_hide_dups)
        self.sort_combo = QComboBox()
        self.sort_combo.addItem("Sort by score", ResultsModel.SORT_SCORE)
        self.sort_combo.addItem("Sort by date", ResultsModel.SORT_DATE)
        self.sort_combo.currentIndexChanged.connect(self._on_sort_changed)
        row1 = QHBoxLayout()
        row1.addWidget(self.filter_edit, 1)
        row1.addWidget(self.sort_combo)
        row1.addWidget(self.hide_dups)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Similarity"))
        row2.addWidget(self.threshold_slider, 1)
        row2.addWidget(self.threshold_label)
        row2.addWidget(self.count_label)
        # What the similarity means, "no good match", or a partial index: one line above the grid.
        self.note_label = QLabel("")
        self.note_label.setWordWrap(True)
        self.note_label.setObjectName("resultsNote")
        self.note_label.setStyleSheet("#resultsNote { color: palette(text); background: rgba(230, 160, 0, 60); "
                                      "border-radius: 3px; padding: 3px; }")
        self.note_label.hide()
        self.results_view = QListView()
        self.results_view.setViewMode(QListView.ViewMode.IconMode)
        self.results_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.results_view.setMovement(QListView.Movement.Static)
        self.results_view.setUniformItemSizes(True)  # constant-time layout for 10,000 results
        self.results_view.setLayoutMode(QListView.LayoutMode.Batched)
        self.results_view.setBatchSize(200)
        self.results_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results_view.setDragEnabled(True)
        self.results_view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.results_view.setAcceptDrops(False)
        self.results_view.setWordWrap(False)
        self.results_view.setSpacing(4)
        self.grid_delegate = ThumbnailGridDelegate(self.model.thumb_size, lines=2, parent=self.results_view)
        self.results_view.setItemDelegate(self.grid_delegate)
        self.results_view.setModel(self.model)
        self.results_view.doubleClicked.connect(self._on_double_click)
        self.results_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.results_view.customContextMenuRequested.connect(self._on_context_menu)
        self.results_view.selectionModel().currentChanged.connect(self._on_current_result)
        results_page = QWidget()
        rl = QVBoxLayout(results_page)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(row1)
        rl.addLayout(row2)
        rl.addWidget(self.note_label)
        rl.addWidget(self.results_view, 1)
        self.why_panel = WhyPanel()
        self.right_tabs = QTabWidget()
        self.right_tabs.addTab(results_page, "Results")
        self.right_tabs.addTab(self.why_panel, "Why matched")

        self.search_split = QSplitter(Qt.Orientation.Horizontal)
        self.search_split.addWidget(left)
        self.search_split.addWidget(self.right_tabs)
        self.search_split.setStretchFactor(0, 2)
        self.search_split.setStretchFactor(1, 3)
        self.search_split.setSizes([380, 620])
        self.search_split.setChildrenCollapsible(False)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.search_split, "Search")

        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(6, 6, 6, 6)
        cl.addWidget(self.banner)
        cl.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        # --- collection dock
        self.collection_combo = QComboBox()
        self.collection_combo.setToolTip("Each collection has its own catalog")
        self.collection_combo.activated.connect(self._on_collection_chosen)
        new_col = QPushButton("New…")
        new_col.clicked.connect(self._new_collection)
        forget_col = QPushButton("Forget")
        forget_col.setToolTip("Remove this collection from the list (its catalog stays on disk)")
        forget_col.clicked.connect(self._forget_collection)
        self.folder_list = QListWidget()
        self.folder_list.setToolTip("Photo folders of this collection (drop a folder on the window to add it)")
        add_folder = QPushButton("Add…")
        add_folder.setToolTip("Add a photo folder to this collection (its photos are indexed)")
        add_folder.clicked.connect(self._choose_folder)
        self.remove_folder_button = QPushButton("Remove")
        self.remove_folder_button.setToolTip("Remove the selected folder from this collection (the photos stay on disk)")
        self.remove_folder_button.clicked.connect(self._remove_selected_folder)
        self.index_button = QPushButton("Index now")
        self.index_button.clicked.connect(lambda: self.start_index())
        self.info_images = QLabel("-")
        self.info_method = QLabel("-")
        self.info_last = QLabel("-")
        for label in (self.info_images, self.info_method):
            label.setWordWrap(True)  # "512 of 1008 indexed so far" must not widen the dock
        self.failed_button = QPushButton("0 failed")
        self.failed_button.setFlat(True)
        self.failed_button.setToolTip("Show the files that could not be indexed, with the reason")
        self.failed_button.clicked.connect(self.show_failures)
        dock_w = QWidget()
        dl = QVBoxLayout(dock_w)
        self.collection_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.collection_combo.setMinimumContentsLength(10)
        self.collection_combo.setPlaceholderText("Choose a collection")
        dl.addWidget(self.collection_combo)
        crow = QHBoxLayout()
        crow.addWidget(new_col)
        crow.addWidget(forget_col)
        dl.addLayout(crow)
        dl.addWidget(QLabel("Folders"))
        dl.addWidget(self.folder_list, 1)
        frow = QHBoxLayout()
        frow.addWidget(add_folder)
        frow.addWidget(self.remove_folder_button)
        dl.addLayout(frow)
        form = QFormLayout()
        form.addRow("Images", self.info_images)
        form.addRow("Indexed with", self.info_method)
        form.addRow("Last indexed", self.info_last)
        form.addRow("Failed", self.failed_button)
        dl.addLayout(form)
        dl.addWidget(self.index_button)
        self.dock = QDockWidget("Collection", self)
        self.dock.setObjectName("collection_dock")
        self.dock.setWidget(dock_w)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)

        # --- toolbar: method and device
        tb = self.addToolBar("Main")
        tb.setObjectName("main_toolbar")
        tb.setMovable(False)
        self.method_combo = MethodPicker()
        self.method_combo.method_chosen.connect(self._on_method_chosen)
        self.device_combo = QComboBox()
        gpu = detected_gpu()
        self.gpu_name = gpu
        self.device_combo.addItem(f"Auto ({gpu})" if gpu else "Auto (CPU: no GPU found)", "auto")
        self.device_combo.addItem("CPU", "cpu")
        self.device_combo.addItem(f"GPU: {gpu}" if gpu else "GPU (none detected)", "cuda")
        if not gpu:
            self.device_combo.model().item(2).setEnabled(False)
        self.device_combo.activated.connect(self._on_device_chosen)
        open_btn = QAction("Open query…", self)
        open_btn.triggered.connect(self.open_query_dialog)
        tb.addAction(open_btn)
        tb.addSeparator()
        tb.addWidget(QLabel(" Method "))
        tb.addWidget(self.method_combo)
        tb.addWidget(QLabel("  Device "))
        tb.addWidget(self.device_combo)

        # --- status bar: indexing progress
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress_label = QLabel("")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._on_pause)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing; finished photos are kept and the next run goes on from there")
        self.cancel_button.clicked.connect(self.cancel_index)
        sb = self.statusBar()
        sb.addPermanentWidget(self.progress_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.pause_button)
        sb.addPermanentWidget(self.cancel_button)
        self._show_progress(False)

    def _build_actions(self) -> None:
        menu = self.menuBar().addMenu("&File")
        act = QAction("&Open query…", self)
        act.setShortcut(QKeySequence.StandardKey.Open)
        act.triggered.connect(self.open_query_dialog)
        menu.addAction(act)
        act = QAction("&Paste query", self)
        act.setShortcut(QKeySequence.StandardKey.Paste)
        act.triggered.connect(self.paste_query)
        menu.addAction(act)
        act = QAction("Add photo &folder…", self)
        act.triggered.connect(self._choose_folder)
        menu.addAction(act)
        menu.addSeparator()
        act = QAction("&Adapt to my photos…", self)
        act.setToolTip("Self-supervised training of the current method's head on this collection "
                       "(ACTNET and DARAC methods); kept only if it helps on held-out photos")
        act.triggered.connect(self.adapt_to_collection)
        menu.addAction(act)
        self.adapt_action = act
        act = QAction("&Watch folders for changes", self)
        act.setCheckable(True)
        act.setChecked(self.settings.value("watch_folders", True, type=bool))
        act.setToolTip("Index new, edited and deleted photos of the collection's folders while Lookalike is open")
        act.toggled.connect(self._on_watch_toggled)
        menu.addAction(act)
        self.watch_action = act
        self.folder_watch.set_enabled(act.isChecked())
        act = QAction("&Preferences…", self)
        act.setShortcut(QKeySequence.StandardKey.Preferences)
        act.triggered.connect(self.show_preferences)
        menu.addAction(act)
        menu.addSeparator()
        act = QAction("&Quit", self)
        act.setShortcut(QKeySequence.StandardKey.Quit)
        act.triggered.connect(self.close)
        menu.addAction(act)
        view = self.menuBar().addMenu("&View")
        for text, keys, slot in (("Bigger thumbnails", ["+", "="], lambda: self.change_thumb_size(+1)),
                                 ("Smaller thumbnails", ["-"], lambda: self.change_thumb_size(-1))):
            act = QAction(text, self)
            act.setShortcuts([QKeySequence(k) for k in keys])
            act.triggered.connect(slot)
            view.addAction(act)
        help_menu = self.menuBar().addMenu("&Help")
        act = QAction("How to use Lookalike", self)
        act.setShortcut(QKeySequence.StandardKey.HelpContents)
        act.triggered.connect(self.show_help)
        help_menu.addAction(act)
        help_menu.addAction("About Lookalike", self.show_about)
        for keys, slot in ((QKeySequence.StandardKey.Find, self.focus_filter),
                           (QKeySequence(Qt.Key.Key_Escape), self.escape)):
            sc = QShortcut(keys, self)
            sc.activated.connect(slot)

    def _add_extra_tabs(self) -> None:
        """Browse and Duplicates tabs, when those views are installed."""
        self.browse_view = self.duplicates_view = None
        for attr, module, cls, title in (("browse_view", "gui.browse_view", "BrowseView", "Browse"),
                                         ("duplicates_view", "gui.duplicates_view", "DuplicatesView", "Duplicates")):
            try:
                mod = __import__(module, fromlist=[cls])
                view = getattr(mod, cls)(lambda: self.collection, self.thumbnails, self)
            except ImportError:
                continue
            except Exception as exc:  # a broken optional view must not take the window down
                self.show_message(f"The {title} view could not be opened: {readable_error(exc)}")
                continue
            setattr(self, attr, view)
            self.tabs.addTab(view, title)
            sig = getattr(view, "find_similar", None)
            if sig is not None:
                sig.connect(self._find_similar)
            region_sig = getattr(view, "find_similar_region", None)
            if region_sig is not None:
                region_sig.connect(self._find_similar_region)

    def _find_similar(self, path: str) -> None:
        self.tabs.setCurrentIndex(0)
        self.run_query(path)

    def _find_similar_region(self, path: str, box: tuple, box_mode: str) -> None:
        """A box dragged in the viewer: query with that region (crop image or activations)."""
        self.tabs.setCurrentIndex(0)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        how = "activations" if box_mode == "activations" else "image"
        self.run_query(path, f"{os.path.basename(path)} [{x1},{y1},{x2},{y2}] ({how} crop)",
                       box=(x1, y1, x2, y2), box_mode=box_mode)

    # ================================================================== settings
    def _restore_settings(self) -> None:
        s = self.settings
        geo = s.value("window/geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            self.restoreGeometry(geo)
        else:
            self.resize(1280, 820)
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:  # a laptop's 1366 x 768: the bottom rows were off screen
            avail = screen.availableGeometry()
            self.resize(min(self.width(), avail.width() - 16), min(self.height(), avail.height() - 48))
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        size = int(s.value("thumb_size", 160))
        self.model.set_thumb_size(size if size in THUMB_SIZES else 160)
        self._apply_thumb_size()
        device = s.value("device", "auto")
        i = self.device_combo.findData(device)
        if i >= 0 and self.device_combo.model().item(i).isEnabled():
            self.device_combo.setCurrentIndex(i)
        self.opacity_slider.setValue(int(s.value("overlay_opacity", 60)))
        i = self.overlay_combo.findData(s.value("overlay", "regions"))
        self.overlay_combo.setCurrentIndex(max(0, i))

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("thumb_size", self.model.thumb_size)
        s.setValue("device", self.device_combo.currentData())
        s.setValue("overlay_opacity", self.opacity_slider.value())
        s.setValue("overlay", self.overlay_combo.currentData())
        if self.collection is not None:
            s.setValue("last_collection", str(self.collection.directory))
            s.setValue("method", self.collection.active_method)
        s.sync()

    def known_collections(self) -> list[str]:
        v = self.settings.value("collections", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in (v or [])]

    # ================================================================== messages
    def show_message(self, text: str, info: bool = False) -> None:
        self.last_error = "" if info else text
        self.banner.setProperty("info", "true" if info else "false")
        self.banner.style().unpolish(self.banner)
        self.banner.style().polish(self.banner)
        self.banner_text.setText(text)
        self.banner.show()

    def hide_message(self) -> None:
        self.banner.hide()

    # ================================================================== collections
    def open_collection(self, directory: str, create: bool = True) -> bool:
        """Open (with ``create``: or create) the collection whose catalog is ``directory``.

        A remembered collection whose folder is gone (an unplugged drive) is not recreated
        empty: the user is told and chooses (``create=False``)."""
        if self.is_indexing():
            self.show_message("Wait for indexing to finish (or cancel it) before switching collections.")
            return False
        from engine.store.catalog import DB_NAME

        if not create and not (Path(directory).expanduser() / DB_NAME).exists():
            return self._collection_missing(directory)
        try:
            col = Collection.open(directory, device=self.device_combo.currentData() or "auto")
        except Exception as exc:
            self.show_message(f"Cannot open the collection {directory}: {readable_error(exc)}")
            self._refresh_collection_combo()
            return False
        self._close_collection()
        self.collection = col
        self.folder_watch.set_collection(col)
        d = str(col.directory)
        known = self.known_collections()
        if d not in known:
            self.settings.setValue("collections", known + [d])
        self.settings.setValue("last_collection", d)
        self.hide_message()
        self._take_lock(col)
        self._refresh_collection_combo()
        self._reset_search_state()
        self.refresh_collection_info()
        self._load_calibration()
        self._apply_capabilities()
        # Model and search index load in the background now, not on the first drop.
        self.tasks.start("warm-up", col.warm_up, lambda _: None,
                         lambda message: self.show_message(f"The model of this collection could not be loaded: {message}"))
        resume = self.settings.value(f"resume/{_settings_key(d)}")
        if resume and col.folders():
            self.show_message(f"Resuming the interrupted indexing of this collection with {resume}.", info=True)
            QTimer.singleShot(0, lambda m=str(resume): self.start_index(m))
        elif not col.folders():
            self.show_message("This collection has no photo folders yet: choose Add… under Folders "
                              "(or drop a folder on the window) and its photos are indexed.", info=True)
        return True

    def _close_collection(self) -> None:
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
        self.show_message(f"This collection is already open in another Lookalike window{who}. Changes made "
                          "in both at once may index photos twice; close one of them.", info=True)

    def _collection_missing(self, directory: str) -> bool:
        """A remembered collection's catalog is not there: ask instead of creating it empty."""
        self._close_collection()
        self._reset_search_state()
        self.refresh_collection_info()
        self._refresh_collection_combo()
        text = (f"The collection {directory} cannot be found (is its drive unplugged?). Its photos "
                "and index are kept there; plug the drive in and choose it again, or choose another "
                "collection.")
        self.show_message(text)
        if self.confirm:  # asked once the window is up (at start-up it is not shown yet)
            QTimer.singleShot(0, lambda: self._ask_missing(directory, text))
        return False

    def _ask_missing(self, directory: str, text: str) -> None:
        if self.collection is not None:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Collection not found", text, parent=self)
        retry = box.addButton("Look again", QMessageBox.ButtonRole.AcceptRole)
        create = box.addButton("Start it empty there", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Choose another", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is retry:
            self.open_collection(directory, create=False)
        elif box.clickedButton() is create:
            self.open_collection(directory)

    def _reset_search_state(self) -> None:
        """Forget the previous collection's query, results, explanation and overlay."""
        self.query = None
        self.query_label = ""
        self.query_image = None
        self.query_box = None
        self.explained_result = None
        self.why = None
        self.searched_note = ""
        self._pending_why_rank = None
        self.query_caption.setText("No query yet")
        self.query_caption.setToolTip("")
        self.query_view.set_photo(None)
        self.query_view.set_placeholder("Drop a photo here, paste one (Ctrl+V)\nor open one (Ctrl+O) to find similar photos.")
        self.model.clear()
        self.score_range = (0.0, 1.0)
        self.why_panel.clear()
        self._render_query_overlay()
        self._update_count()

    def _refresh_collection_combo(self) -> None:
        self.collection_combo.blockSignals(True)
        self.collection_combo.clear()
        for d in self.known_collections():
            self.collection_combo.addItem(Path(d).name or d, d)
            self.collection_combo.setItemData(self.collection_combo.count() - 1, d, Qt.ItemDataRole.ToolTipRole)
        # No collection open (a missing one, or all forgotten): no item looks chosen.
        self.collection_combo.setCurrentIndex(-1 if self.collection is None else
                                              self.collection_combo.findData(str(self.collection.directory)))
        self.collection_combo.blockSignals(False)
        self.index_button.setEnabled(self.collection is not None and not self.is_indexing())

    def _on_collection_chosen(self, index: int) -> None:
        d = self.collection_combo.itemData(index)
        if d and (self.collection is None or d != str(self.collection.directory)):
            self.open_collection(d, create=False)  # a listed collection that went missing is not recreated

    def _new_collection(self) -> None:
        name, ok = QInputDialog.getText(self, "New collection", "Name of the new collection:")
        if ok and name.strip():
            safe = "".join(c if c.isalnum() or c in "-_ " else "_" for c in name.strip())
            self.open_collection(str(paths.data_home() / "collections" / safe))

    def _forget_collection(self) -> None:
        """Take the open collection off the list (its catalog stays on disk) and open another."""
        if self.collection is None or self.is_indexing():
            if self.is_indexing():
                self.show_message("Cancel indexing before forgetting this collection.")
            return
        d = str(self.collection.directory)
        rest = [c for c in self.known_collections() if c != d]
        self.settings.setValue("collections", rest)
        self.settings.remove("last_collection")
        self._close_collection()
        self.folder_watch.set_collection(None)
        if rest:
            self.open_collection(rest[0], create=False)
        else:
            self._reset_search_state()
            self.refresh_collection_info()
            self._refresh_collection_combo()
            self.show_message(f"Forgot {d} (its catalog stays on disk). Choose New… to start a collection.", info=True)

    def refresh_collection_info(self) -> None:
        col = self.collection
        self.folder_list.clear()
        if col is None:
            for label in (self.info_images, self.info_method, self.info_last):
                label.setText("-")
            self.failed_files = []
            self.failed_button.setText("none")
            self.failed_button.setEnabled(False)
            return
        try:
            st = col.status()
        except Exception as exc:
            self.show_message(readable_error(exc))
            return
        self.folder_list.addItems(st["folders"])
        counts = {m["name"]: m["descriptors"] for m in st["methods"]}
        self.info_images.setText(str(st["images"]))
        active = st["active_method"]
        done = counts.get(active, 0)
        if not st["images"]:
            self.info_method.setText(f"{active} (nothing indexed yet)")
        else:
            self.info_method.setText(f"{active} ({done} of {st['images']})" if done < st["images"]
                                     else f"{active} (all {plural(done, 'photo')})")
        self.info_last.setText(time.strftime("%Y-%m-%d %H:%M", time.localtime(st["last_indexed"]))
                               if st["last_indexed"] else "never")
        self.failed_files = [(f["path"], f["reason"]) for f in st["failed"]]
        n_failed = len(self.failed_files)
        self.failed_button.setText(f"{plural(n_failed, 'file')} – show" if n_failed else "none")
        self.failed_button.setEnabled(bool(self.failed_files))
        self.method_combo.set_current(active)

    def add_folder(self, folder: str, index: bool = True) -> None:
        if self.collection is None:
            return
        try:
            self.collection.add_folder(folder)
        except Exception as exc:
            self.show_message(readable_error(exc))
            return
        self.refresh_collection_info()
        self.folder_watch.rewatch()
        if index:
            self.start_index()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a photo folder")
        if folder:
            self.add_folder(folder)

    def _remove_selected_folder(self) -> None:
        item = self.folder_list.currentItem()
        if item is None or self.collection is None:
            return
        if self.is_indexing():
            self.show_message("Cancel indexing before removing a folder.")
            return
        try:
            self.collection.remove_folder(item.text())
        except Exception as exc:
            self.show_message(readable_error(exc))
        self.refresh_collection_info()
        self.folder_watch.rewatch()

    def show_failures(self) -> None:
        dlg = QDialog(self)
        dlg.setWindowTitle("Files that could not be indexed")
        table = QTableWidget(len(self.failed_files), 2)
        table.setHorizontalHeaderLabels(["File", "Reason"])
        for r, (p, reason) in enumerate(self.failed_files):
            table.setItem(r, 0, QTableWidgetItem(p))
            table.setItem(r, 1, QTableWidgetItem(reason))
        table.resizeColumnsToContents()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dlg.reject)
        lay = QVBoxLayout(dlg)
        lay.addWidget(table)
        lay.addWidget(buttons)
        dlg.resize(800, 400)
        dlg.show()
        self.failures_dialog = dlg

    # ================================================================== method and device
    def _on_method_chosen(self, name: str) -> None:
        col = self.collection
        if col is None or not name or name == col.active_method:
            return
        counts = {n: c for n, c, _g in col.catalog.methods()}
        if counts.get(name, 0) >= col.catalog.image_count() > 0 or not col.folders():
            col.set_active_method(name)
            self._method_changed()
            return
        n = max(col.catalog.image_count() - counts.get(name, 0), 0)
        if self.confirm:
            entry = self.method_combo.entries.get(name, {})
            speed, source = measured_speed(entry, float(self.settings.value(f"speed/{name}", 0) or 0))
            if speed and n:
                when = f"about {format_duration(n / speed)} ({speed:.1f} photos/s, {source})"
            else:
                when = f"unknown ({source}); the progress bar shows it once indexing runs"
            text = (f"Index {plural(n, 'photo') if n else 'the photos'} of this collection with {name}?\n"
                    f"Time: {when}.\nSearches use the current method until it is done.")
            if QMessageBox.question(self, "Index with another method", text) != QMessageBox.StandardButton.Yes:
                self.method_combo.set_current(col.active_method)
                return
        self.start_index(name)

    def _method_changed(self) -> None:
        """The active method changed: its calibration, what it offers, the results."""
        self.refresh_collection_info()
        self._load_calibration()
        self._apply_capabilities()
        self.rerun_query()

    def capabilities(self, name: str | None) -> set[str] | None:
        """:func:`engine.api.method_capabilities`, asked once per method (it builds the method)."""
        if not name:
            return None
        if name not in self._capabilities:
            self._capabilities[name] = method_capabilities(name)
        return self._capabilities[name]

    def _apply_capabilities(self) -> None:
        """Offer only the overlays, box modes and actions the active method supports."""
        col = self.collection
        name = col.active_method if col is not None else None
        caps = self.capabilities(name)
        kind = self.parts_kind.get(name or "")
        # What the explanation has: stated by the registry ("supports"), else learned from the
        # method's first explanation (Explanation.kind); until then every overlay is offered.
        stated = (self.method_combo.entries.get(name or "", {}).get("supports") is not None
                  or bool({"regions", "clusters", "layers"} & (caps or set())))
        if stated:
            parts = {"regions" if {"regions", "layers"} & caps else "", "clusters" if "clusters" in caps else ""}
        elif kind is not None:
            parts = {"regions" if kind in ("regions", "layers") else "", "clusters" if kind == "clusters" else ""}
        else:
            parts = {"regions", "clusters"}

        def overlay_ok(k: str) -> bool:
            if k == "none" or caps is None:
                return True
            if k == "cam":
                return "cam" in caps
            return k in parts

        model = self.overlay_combo.model()
        for i in range(self.overlay_combo.count()):
            k = self.overlay_combo.itemData(i)
            ok = overlay_ok(k)
            model.item(i).setEnabled(ok)
            model.item(i).setToolTip("" if ok else f"{name} has no {k} to show")
        if not overlay_ok(self.overlay_kind()):
            self.set_overlay(next(k for k in ("regions", "clusters", "none") if overlay_ok(k)))
        trainable = caps is None or "train" in caps
        self.adapt_action.setEnabled(col is not None and trainable)
        self.adapt_action.setToolTip("Train this method's head on your own photos" if trainable else
                                     f"{name} has nothing to train: choose an ACTNET or DARAC method")
        viewer = getattr(self.browse_view, "viewer", None)
        if viewer is not None and hasattr(viewer, "set_activation_crop"):
            viewer.set_activation_crop(caps is None or "activation_crop" in caps)

    def _on_device_chosen(self, index: int) -> None:
        device = self.device_combo.itemData(index)
        if self.collection is not None:
            self.collection.device = device
        self.settings.setValue("device", device)

    # ================================================================== indexing
    def is_indexing(self) -> bool:
        return self.index_thread is not None

    def start_index(self, method: str | None = None, verify_hashes: list[str] | None = None) -> bool:
        col = self.collection
        if col is None or self.is_indexing():
            return False
        if not col.folders():
            self.show_message("This collection has no folders yet: add a photo folder (or drop one on the window).")
            return False
        method = method or col.active_method
        overrides = self.index_overrides if col.catalog.method_config(method) is None else None
        worker = IndexWorker(col, method, self.index_batch_size or self._commit_size(method), overrides, verify_hashes)
        thread = IndexThread(worker, self)
        worker.progress.connect(self._on_index_progress)
        worker.file_failed.connect(self._on_file_failed)
        worker.finished.connect(self._on_index_finished)
        worker.error.connect(self._on_index_error)
        thread.finished.connect(self._on_thread_done)
        self.index_worker, self.index_thread = worker, thread
        self.settings.setValue(f"resume/{_settings_key(str(col.directory))}", method)
        self.settings.sync()
        self.pause_button.setChecked(False)
        self.hide_message()  # "no folders yet" and the like are answered now
        self._paused_at, self._paused_s = None, 0.0
        self._index_started, self._index_first_done = time.monotonic(), None
        self.index_total = 0
        self.progress.setRange(0, 0)
        self.progress_label.setText(f"Indexing with {method}: scanning folders…")
        self._show_progress(True)
        self.index_button.setEnabled(False)
        self.folder_watch.set_paused(True)
        thread.start()
        return True

    def _commit_size(self, method: str) -> int:
        """Photos per catalog commit, so that progress moves about every ``PROGRESS_EVERY_S``
        (a slow method at 0.3 photos/s reported only every 8 photos, 25 s apart)."""
        speed, _src = measured_speed(self.method_combo.entries.get(method, {}),
                                     float(self.settings.value(f"speed/{method}", 0) or 0))
        return max(1, min(8, int(speed * PROGRESS_EVERY_S))) if speed else 1

    def _show_progress(self, on: bool) -> None:
        for w in (self.progress, self.progress_label, self.pause_button, self.cancel_button):
            w.setVisible(on)

    def pause_index(self, paused: bool = True) -> None:
        self.pause_button.setChecked(paused)

    def _on_pause(self, paused: bool) -> None:
        if self.index_worker is None:
            return
        self.index_worker.set_paused(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        now = time.monotonic()
        if paused:
            self._paused_at = now
            self.progress_label.setText("Paused: " + self.progress_label.text().split(" · ETA")[0]
                                        + " · press Resume to go on")
        elif self._paused_at is not None:
            self._paused_s += now - self._paused_at
            self._paused_at = None
            self.progress_label.setText(self.progress_label.text().replace("Paused: ", "Resuming: ", 1))

    def cancel_index(self) -> None:
        if self.index_worker is not None:
            self.index_worker.cancel()
            self.progress_label.setText("Cancelling after the current photos…")

    def _index_rate(self, done: int) -> float | None:
        """Photos per second of this run, paused time left out (the indexer's own rate
        counts a pause as slowness, so the ETA jumped after Resume)."""
        if self._index_first_done is None:
            self._index_first_done, self._index_started = done, time.monotonic()
            return None
        elapsed = time.monotonic() - self._index_started - self._paused_s
        n = done - self._index_first_done
        return n / elapsed if n > 0 and elapsed > 0 else None

    def _on_index_progress(self, p) -> None:
        if self.index_worker is None:
            return
        if p.phase == "scanning":
            self.progress.setRange(0, 0)
            self.progress_label.setText("Scanning folders…")
        elif p.phase == "preparing":
            self.progress.setRange(0, 0)
            self.progress_label.setText("Learning the method's settings on a sample…")
        elif p.phase == "indexing":
            self.progress.setRange(0, max(1, p.total))
            self.progress.setValue(p.done)
            rate = self._index_rate(p.done) or p.images_per_s
            eta = (p.total - p.done) / rate if rate > 0 else None
            failed = f" · {p.failed} failed" if p.failed else ""
            state = "Paused: " if self.index_worker.paused else ""
            self.progress_label.setText(f"{state}{p.done} of {plural(p.total, 'photo')} · {rate:.1f} photos/s · "
                                        f"ETA {format_duration(eta)}{failed}")
            self.info_images.setText(f"{p.done} of {p.total} indexed so far")
            self.info_method.setText(f"{self.index_worker.method} (indexing…)")
            self.index_total = p.total
            if rate > 0 and self.index_worker.method:
                self.settings.setValue(f"speed/{self.index_worker.method}", round(rate, 2))

    def _on_file_failed(self, path: str, reason: str) -> None:
        self.statusBar().showMessage(f"Could not index {os.path.basename(path)}: {reason}", 8000)

    def _on_index_finished(self, report) -> None:
        self.last_report = report
        col = self.collection
        if col is not None and not report.cancelled:
            self.settings.remove(f"resume/{_settings_key(str(col.directory))}")
        msg = (f"Indexed {plural(report.indexed, 'new photo')} ({report.unchanged} unchanged, {report.removed} removed"
               f"{', ' + str(len(report.failed)) + ' failed' if report.failed else ''}) in {report.seconds:.1f} s")
        if report.cancelled:
            msg = "Indexing cancelled: " + msg + ". It resumes where it stopped next time."
        self.statusBar().showMessage(msg, 15000)
        self._index_done(report)
        self._load_calibration()  # the descriptors changed: so did the distribution of scores
        self._apply_capabilities()
        if not report.cancelled and self.query is not None:
            self.rerun_query()

    # ================================================================== folder watching
    def _on_watch_toggled(self, on: bool) -> None:
        self.settings.setValue("watch_folders", on)
        self.folder_watch.set_enabled(on)

    def _on_folder_changes(self, changes) -> None:
        """New, edited or deleted photos found while the window is open: update the index."""
        col = self.collection
        if col is None or self.is_indexing():
            return  # the running index sees them, or the next rescan does
        if not col.catalog.has_descriptor(col.active_method):
            self.statusBar().showMessage(f"Photo folders changed ({changes.summary()}); press Index to index them.", 15000)
            return
        self.statusBar().showMessage(f"Photo folders changed ({changes.summary()}): updating the index…", 10000)
        self.start_index(verify_hashes=list(changes.verify_paths))

    def _on_folders_missing(self, folders: list) -> None:
        names = ", ".join(folders)
        self.show_message(f"Not reachable now: {names}. Its photos stay in the collection and are checked "
                          "again later (an unplugged drive?).", info=True)

    def _on_index_error(self, message: str) -> None:
        self.show_message(f"Indexing failed: {message}")
        self._index_done(None)

    def _index_done(self, report) -> None:
        self.folder_watch.set_paused(False)
        self.folder_watch.rewatch()  # new sub-folders
        self._show_progress(False)
        self.index_button.setEnabled(True)
        self.refresh_collection_info()
        self.index_finished.emit(report)

    def _on_thread_done(self) -> None:
        thread = self.index_thread
        self.index_thread = None
        self.index_worker = None
        if thread is not None:
            thread.deleteLater()

    def wait_index(self, msecs: int = 120000) -> bool:
        """Block until the indexing thread ended (tests, shutdown)."""
        return self.index_thread is None or self.index_thread.wait(msecs)

    # ================================================================== queries
    def open_query_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Find photos similar to…", "",
                                              "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff *.heic);;All files (*)")
        if path:
            self.run_query(path)

    def paste_query(self) -> None:
        cb = QGuiApplication.clipboard()
        mime = cb.mimeData()
        if mime is not None and mime.hasUrls():
            self._handle_urls(mime.urls())
            return
        img = cb.image()
        if not img.isNull():
            self.run_query(qimage_to_pil(img), label="pasted image")
            return
        text = (cb.text() or "").strip().strip('"')
        if text.startswith("file://"):
            text = QUrl(text).toLocalFile()
        if text and os.path.isdir(text):
            self.add_folder(text)
        elif text and os.path.exists(text):
            self.run_query(text)
        else:
            self.show_message("The clipboard holds no image and no path of an existing image file.")

    def run_query(self, query: str | Image.Image, label: str | None = None,
                  box: tuple[int, int, int, int] | None = None, box_mode: str = "image") -> None:
        """Search the collection for ``query`` (a path or an image), off the UI thread.

        ``box`` (x1, y1, x2, y2 in upright full-size pixels) restricts the query to a region,
        described by cropping the image or, where the method supports it, its activations.
        """
        col = self.collection
        if col is None:
            self.show_message("Open or create a collection first.")
            return
        if isinstance(query, (str, os.PathLike)):
            query = os.path.abspath(os.fspath(query))
        self.query = query
        self.query_box, self.query_box_mode = box, box_mode
        self.query_label = label or (query if isinstance(query, str) else "pasted image")
        self._set_caption("(searching…)")
        self.explained_result = None
        self.why = None
        self._render_query_overlay()  # the previous query's overlay and legend go now, not when the next explanation is ready
        self.hide_message()
        method = col.active_method
        if not col.catalog.has_descriptor(method):
            self._on_query_error("")
            self.query_view.set_placeholder("Nothing is indexed in this collection yet.")
            self.show_message("No photo of this collection is indexed yet: add a photo folder (Add… under "
                              "Folders) and search once it is indexed." if not self.is_indexing() else
                              "No photo is indexed yet: indexing has just started, try again in a moment.")
            return

        def work():
            if isinstance(query, Image.Image):
                img = query
            elif box is None:
                img = load_image(query, DISPLAY_SIDE)
            else:  # the box is in full-size pixels: decode full size, show the region
                img = load_image(query)
            if box is not None:
                img = crop_box(img, box)
            display = pil_to_qimage(img if max(img.size) <= DISPLAY_SIDE else img.resize(
                (max(1, img.width * DISPLAY_SIDE // max(img.size)), max(1, img.height * DISPLAY_SIDE // max(img.size)))))
            # Every indexed photo (photos indexed while this query runs included), up to the cap.
            n = max(1, min(len(col.search_index(method)), MAX_RESULTS))
            results = col.search(query, method, top=n, box=box, box_mode=box_mode)
            # Ranked by the collection's re-ranking; similarity, threshold and near-duplicates
            # read the method's own score (the re-ranker's is relative to the top result).
            items = [ResultItem(r.path, r.score if r.base_score is None else r.base_score, i + 1, r.date, r.size)
                     for i, r in enumerate(results)]
            return display, items, len(col.search_index(method)), method

        self.tasks.start("query", work, self._on_query_done, self._on_query_error)

    def rerun_query(self) -> None:
        if self.query is not None:
            self.run_query(self.query, self.query_label, self.query_box, self.query_box_mode)

    def _set_caption(self, state: str = "") -> None:
        """The query's name (the full path in the tooltip: long paths were cut off)."""
        label = self.query_label
        name = os.path.basename(label) if os.path.isabs(label) else label
        self.query_caption.setText(f"Query: {name}" + (f" {state}" if state else ""))
        self.query_caption.setToolTip(label)

    def _on_query_done(self, value) -> None:
        display, items, searched, method = value
        self.query_image = display
        self.query_view.set_photo(QPixmap.fromImage(display))
        self._set_caption()
        qpath = self.query if isinstance(self.query, str) else None
        if items:
            self.score_range = (min(it.score for it in items), max(it.score for it in items))
        self.searched_note = self._partial_index_note(searched, method)
        self.model.set_results(items, qpath)
        self.results_view.scrollToTop()  # a new query starts at its best results
        if self.hide_dups.isChecked():
            self._update_near_duplicate_score()
        self._on_threshold_changed(self.threshold_slider.value())
        self._update_count()
        self.right_tabs.setCurrentIndex(0)
        self.query_finished.emit()
        target = self._pending_why_rank
        self._pending_why_rank = None
        if target is not None:
            self.show_why(target)
        else:
            first = next((it for it in items if it.path != qpath), None)
            if first is not None:
                self.explain(first.path, first.score)
            else:
                self.why_panel.clear("No other photo to compare with.")

    def _partial_index_note(self, searched: int, method: str) -> str:
        """What a query searched when that is not the whole collection (indexing runs or
        was stopped before the end), else ""."""
        col = self.collection
        if col is None:
            return ""
        if self.is_indexing():
            total = max(self.index_total, col.catalog.image_count())
            of = f" of the {total} found" if total > searched else ""
            return (f"Indexing is running: this searched the {plural(searched, 'photo')} indexed so far{of}. "
                    "The results are updated when indexing has finished.")
        total = col.catalog.image_count()
        if searched < total:
            return (f"Only {searched} of {plural(total, 'photo')} are indexed with {method}: this searched those. "
                    "Press Index now to index the rest.")
        return ""

    def _on_query_error(self, message: str) -> None:
        self._set_caption("(failed)")
        self.query_view.set_photo(None)
        self.query_view.set_placeholder("This query could not be used.")
        self.model.clear()
        self._update_count()
        where = "" if self.query_label in message else f" {self.query_label}"
        self.show_message(f"Cannot search with this query{where}: {message}")
        self.query = None
        self.query_finished.emit()

    # ================================================================== results view
    def _update_count(self) -> None:
        shown, total = self.model.rowCount(), self.model.total()
        self.count_label.setText(plural(total, "result") if shown == total else f"{shown} of {plural(total, 'result')}")
        notes = [self.searched_note] if self.searched_note else []
        best = self.model.best_score()
        cal = self.calibration
        if cal is not None and best is not None and not cal.is_good_match(best):
            notes.append(f"No good match: the best result is {cal.percent(best):.0f} % similar; below 50 % "
                         "a resemblance is likely coincidence in this collection.")
        self.note_label.setText("\n".join(notes))
        self.note_label.setVisible(bool(notes))
        self.note_label.setToolTip(cal.meaning() if cal is not None else "")

    def slider_threshold(self, value: int) -> float:
        """Score threshold of slider position ``value``: the calibrated similarity in %, or
        without a calibration 0 = lowest score shown, 100 = highest."""
        if value <= 0:
            return -float("inf")
        if self.calibration is not None:
            return self.calibration.score_at(value)
        lo, hi = self.score_range
        return lo + (hi - lo) * value / 100

    def _on_threshold_changed(self, value: int) -> None:
        t = self.slider_threshold(value)
        if value <= 0:
            self.threshold_label.setText("all")
        else:
            self.threshold_label.setText(f"≥ {value} %" if self.calibration is not None else f"≥ {t:.3f}")
        self.model.set_threshold(t)
        self._update_count()

    def set_threshold(self, value: float) -> None:
        """Move the slider to the position nearest to score ``value``."""
        if self.calibration is not None:
            self.threshold_slider.setValue(int(round(self.calibration.percent(value))))
            return
        lo, hi = self.score_range
        self.threshold_slider.setValue(int(round(100 * (value - lo) / (hi - lo))) if hi > lo else 0)

    def _load_calibration(self) -> None:
        """Fit (or read) the active method's score calibration in the background; until it
        is there the grid shows raw scores."""
        col = self.collection
        self._set_calibration(None)
        if col is None or not col.catalog.has_descriptor(col.active_method):
            return
        method = col.active_method
        try:
            stored = stored_calibration(col, method)
        except Exception:  # noqa: BLE001 - unreadable stored state: fit it again below
            stored = None
        if stored is not None:
            self._set_calibration(stored)
            return

        def done(cal) -> None:
            if self.collection is col and col.active_method == method:
                self._set_calibration(cal)

        self.tasks.start("calibration", lambda: score_calibration(col, method), done,
                         lambda message: self.statusBar().showMessage(
                             f"Similarities are shown as the method's raw scores: {message}", 10000))

    def _set_calibration(self, cal) -> None:
        value = self.threshold_slider.value()
        threshold = self.slider_threshold(value)
        self.calibration = cal
        self.model.set_calibration(cal)
        self.threshold_slider.setToolTip(
            "Hide results less similar than this. " + (cal.meaning() if cal is not None else
                                                       "(The slider spans the scores of the current results.)"))
        if value > 0:  # keep the same score threshold on the new scale
            self.set_threshold(threshold)
        self._on_threshold_changed(self.threshold_slider.value())

    def _on_hide_dups(self, on: bool) -> None:
        self.settings.setValue("hide_near_duplicates", on)
        self.model.set_hide_near_duplicates(on)
        self._update_count()
        if on:
            self._update_near_duplicate_score()

    def _update_near_duplicate_score(self) -> None:
        """Near-duplicates of the query score >= 0.95; for a method whose similarities run lower
        (e.g. cluster-MAC), >= the collection's calibrated duplicate threshold (measured once per
        indexing, in a worker: see engine/services/duplicate_threshold.py)."""
        col = self.collection
        if col is None:
            return
        from engine.services.duplicate_threshold import duplicate_threshold

        method = col.active_method

        def done(choice) -> None:
            if self.collection is not col or col.active_method != method:
                return
            score = choice.threshold if choice.calibrated else NEAR_DUPLICATE_SCORE
            self.model.set_near_duplicate_score(score)
            self.hide_dups.setToolTip(f"Hide results scoring {score:.2f} or more with {method}, and the query itself")
            self._update_count()

        self.tasks.start("near-duplicate-score", lambda: duplicate_threshold(col, method), done,
                         lambda message: self.statusBar().showMessage(
                             f"Near-duplicates are results scoring {NEAR_DUPLICATE_SCORE} or more ({message})", 8000))

    def _on_sort_changed(self, _i: int) -> None:
        self.model.set_sort(self.sort_combo.currentData())

    def _on_filter_changed(self, text: str) -> None:
        self.model.set_text_filter(text)
        self._update_count()

    def focus_filter(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.right_tabs.setCurrentIndex(0)
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def escape(self) -> None:
        """Esc clears the path filter where it has the focus or a text. It never stops
        indexing: a stray Esc left a collection half-indexed (the Cancel button does that)."""
        if self.filter_edit.hasFocus() or self.filter_edit.text():
            self.filter_edit.clear()
        elif self._adapt_cancel is not None:
            self._adapt_cancel.set()

    def eventFilter(self, obj, event) -> bool:
        # Esc typed in the filter reaches the line edit first (the window's Esc shortcut
        # does not fire while it has the focus, and not at all in an inactive window).
        if obj is self.filter_edit and event.type() == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Escape:
            self.filter_edit.clear()
            return True
        return super().eventFilter(obj, event)

    def change_thumb_size(self, step: int) -> None:
        i = min(range(len(THUMB_SIZES)), key=lambda k: abs(THUMB_SIZES[k] - self.model.thumb_size))
        self.set_thumb_size(THUMB_SIZES[max(0, min(len(THUMB_SIZES) - 1, i + step))])

    def set_thumb_size(self, size: int) -> None:
        self.model.set_thumb_size(size)
        self._apply_thumb_size()

    def show_preferences(self) -> None:
        from .dialogs import PreferencesDialog

        PreferencesDialog(self, THUMB_SIZES).exec()

    def show_help(self) -> None:
        from .dialogs import HELP_TEXT

        box = QMessageBox(QMessageBox.Icon.NoIcon, "How to use Lookalike", HELP_TEXT, parent=self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.exec()

    def show_about(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from .dialogs import about_text

        try:
            v = version("lookalike")
        except PackageNotFoundError:
            v = "(not installed)"
        QMessageBox.about(self, "About Lookalike", about_text(v))

    def _apply_thumb_size(self) -> None:
        s = self.model.thumb_size
        self.grid_delegate.set_thumb_size(s)
        self.results_view.setIconSize(QSize(s, s))
        self.results_view.setGridSize(grid_cell_size(s, self.results_view.fontMetrics().height(), 2) + QSize(8, 8))

    def _on_double_click(self, index) -> None:
        path = index.data(PathRole)
        if path:
            self.view_result(path)

    def view_result(self, path: str) -> None:
        """The result large, in the app's own viewer (arrows walk the shown results)."""
        from .viewer import ViewerDialog

        dlg = getattr(self, "viewer_dialog", None)
        if dlg is None:
            dlg = ViewerDialog(self)
            dlg.viewer.find_similar.connect(lambda p: (dlg.close(), self.run_query(p)))
            dlg.viewer.find_similar_region.connect(lambda p, box, mode: (dlg.close(), self._find_similar_region(p, box, mode)))
            self.viewer_dialog = dlg
        caps = self.capabilities(self.collection.active_method) if self.collection is not None else None
        dlg.viewer.set_activation_crop(caps is None or "activation_crop" in caps)
        dlg.viewer.set_paths([it.path for it in self.model.items()], path)
        dlg.show()
        dlg.raise_()

    def open_file(self, path: str) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self.show_message(f"No application could open {path}.")

    def reveal_file(self, path: str) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path))):
            self.show_message(f"Could not open the folder of {path}.")

    def _on_context_menu(self, pos: QPoint) -> None:
        index = self.results_view.indexAt(pos)
        path = index.data(PathRole) if index.isValid() else None
        if not path:
            return
        menu = self.result_menu(path)
        menu.exec(self.results_view.viewport().mapToGlobal(pos))

    def result_menu(self, path: str) -> QMenu:
        menu = QMenu(self)
        menu.addAction("View", lambda: self.view_result(path))
        menu.addAction("Open in another application", lambda: self.open_file(path))
        menu.addAction("Reveal in folder", lambda: self.reveal_file(path))
        menu.addAction("Copy path", lambda: QGuiApplication.clipboard().setText(path))
        menu.addAction("Use as query", lambda: self.run_query(path))
        menu.addAction("Why matched?", lambda: self._why_for_path(path))
        return menu

    def _why_for_path(self, path: str) -> None:
        row = self.model.row_of(path)
        if row is not None:
            self.results_view.setCurrentIndex(self.model.index(row))
        self.right_tabs.setCurrentWidget(self.why_panel)

    def _on_current_result(self, current, _previous) -> None:
        if not current.isValid():
            return
        it = self.model.item(current.row())
        if it.path != self.explained_result:
            self.explain(it.path, it.score)

    def show_why(self, rank: int) -> None:
        """Select result number ``rank`` (1-based, in the current view) and show Why matched."""
        if self.tasks.busy("query"):
            self._pending_why_rank = rank
            return
        n = self.model.rowCount()
        if n == 0:
            self.show_message("There is no result to explain.")
            return
        row = max(0, min(n - 1, rank - 1))
        self.results_view.setCurrentIndex(self.model.index(row))
        it = self.model.item(row)
        if it.path != self.explained_result:
            self.explain(it.path, it.score)
        self.right_tabs.setCurrentWidget(self.why_panel)

    # ================================================================== adapt to my photos
    def adapt_to_collection(self, epochs: int = 5) -> bool:
        """Train the active method's head on the collection's own photos, off the UI thread.

        The engine keeps the trained weights only if held-out retrieval improves; the progress
        goes to the status bar and Esc cancels.
        """
        from engine.training.pipeline import is_trainable, train_for_collection

        col = self.collection
        if col is None:
            self.show_message("Open or create a collection first.")
            return False
        if self.is_indexing() or self._adapt_cancel is not None:
            self.show_message("Wait until indexing or the running adaptation has finished.")
            return False
        name = col.active_method
        if not is_trainable(col.method(name)):
            self.show_message(f"Method '{name}' has nothing to adapt; choose an ACTNET or DARAC method first.")
            return False
        if self.confirm and QMessageBox.question(
                self, "Adapt to my photos",
                f"Train '{name}' for {epochs} epochs on augmented copies of up to 300 photos of this "
                "collection? Photos are re-indexed with the new weights only if they find held-out "
                "copies better. Esc cancels.") != QMessageBox.StandardButton.Yes:
            return False
        cancel = threading.Event()
        self._adapt_cancel = cancel
        state = {"text": "Adapting: starting…"}
        timer = QTimer(self)
        timer.timeout.connect(lambda: self.statusBar().showMessage(state["text"]))
        timer.start(250)

        def progress(phase: str, done: int, total: int, msg: str) -> None:
            state["text"] = f"Adapting {name}: {phase} {done}/{total} {msg} (Esc cancels)"

        def work():
            return train_for_collection(col, name, epochs=epochs, progress=progress, cancel=cancel)

        def finish(text: str) -> None:
            timer.stop()
            self._adapt_cancel = None
            self.statusBar().showMessage(text, 20000)
            self.show_message(text, info=True)
            self.refresh_collection_info()
            self.adapt_finished.emit()

        def done(report) -> None:
            if report.cancelled:
                finish("Adaptation cancelled; the method keeps its previous weights.")
            elif report.kept:
                finish(f"Adapted '{name}': held-out mAP {report.val_before:.3f} → {report.val_after:.3f}; "
                       f"{report.reindexed} photos re-indexed.")
            else:
                finish(f"Adaptation did not help (held-out mAP {report.val_before:.3f} → "
                       f"{report.val_after:.3f}); the previous weights are kept.")

        self.tasks.start("adapt", work, done, lambda message: finish(f"Could not adapt '{name}': {message}"))
        return True

    # ================================================================== explanations and overlays
    def explain(self, result_path: str, score: float | None = None) -> None:
        col, query, box = self.collection, self.query, self.query_box
        if col is None or query is None:
            return
        self.explained_result = result_path
        qimage = self.query_image
        cal = self.calibration

        def work():
            from engine.nn.backbones import imagenet_category
            from engine.services.explain import class_activation_map, explain_match

            nonlocal query
            if box is not None:  # a region query is explained on its (image-cropped) region
                query = crop_box(query if isinstance(query, Image.Image) else load_image(query), box)

            e = explain_match(col, query, result_path, search_score=score)
            rimg = load_image(result_path, DISPLAY_SIDE)
            qcam, qcls = class_activation_map(col, query) or (None, None)
            rcam, rcls = class_activation_map(col, result_path) or (None, None)
            try:
                keypoints = col.matched_keypoints(query, result_path)
            except Exception:  # noqa: BLE001 - local features are an extra: the parts still explain
                keypoints = None
            shown = e.search_score if e.search_score is not None else e.score
            return WhyData(e, qimage, pil_to_qimage(rimg), qcam, rcam,
                           None if qcls is None else imagenet_category(qcls),
                           None if rcls is None else imagenet_category(rcls),
                           similarity=f"{cal.percent(shown):.0f} %" if cal is not None else None,
                           keypoints=keypoints)

        if self.why is None:  # nothing shown yet: say that something is coming
            self.legend.set_overlay(_legend_text(f"Working out why {os.path.basename(result_path)} matched…"))
        self.why_panel.header.setText(f"Working out why {os.path.basename(result_path)} matched…")
        self.tasks.start("explain", work, self._on_explained, self._on_explain_error)

    def _on_explained(self, data: WhyData) -> None:
        self.why = data
        method = data.explanation.method
        if self.parts_kind.get(method) != data.explanation.kind:
            self.parts_kind[method] = data.explanation.kind  # now the overlays it has are known
            self._apply_capabilities()
        self.why_panel.set_data(data)
        self._render_query_overlay()
        self.explain_finished.emit()

    def _on_explain_error(self, message: str) -> None:
        self.why = None
        self.why_panel.clear(f"Could not explain this match: {message}")
        self.legend.set_overlay(_legend_text(f"No overlay: {message}"))
        self.explain_finished.emit()

    def overlay_kind(self) -> str:
        return self.overlay_combo.currentData() or "none"

    def set_overlay(self, kind: str) -> None:
        i = self.overlay_combo.findData(kind)
        if i < 0:
            raise ValueError(f"unknown overlay {kind!r}; choose one of {OVERLAY_KINDS}")
        self.overlay_combo.setCurrentIndex(i)

    def _on_overlay_changed(self, _i: int) -> None:
        self.why_panel.set_kind(self.overlay_kind())
        self._render_query_overlay()

    def _on_opacity_changed(self, value: int) -> None:
        self.query_view.set_opacity(value / 100)
        self.why_panel.set_opacity(value / 100)

    def _render_query_overlay(self) -> None:
        kind = self.overlay_kind()
        d = self.why
        if d is None or self.query_image is None:
            self.query_view.set_overlay(_legend_text(""))
            self.legend.set_overlay(_legend_text("" if kind == "none" else "The overlay appears once a result is chosen."))
            return
        if kind == "none":
            ov = _legend_text("")
        else:
            ov = side_overlay(kind, d.explanation.query, d.query_cam, d.query_image, outline_top=False,
                              cam_class=d.query_class)
            if kind == "regions" and d.explanation.kind == "regions":
                ov.legend += f", for result {os.path.basename(d.explanation.result.path)}"
        self.current_overlay = ov
        self.query_view.set_overlay(ov)
        self.legend.set_overlay(ov)

    # ================================================================== drag and drop
    def dragEnterEvent(self, event) -> None:
        mime = event.mimeData()
        if mime.hasUrls() and any(u.isLocalFile() for u in mime.urls()) or mime.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        mime = event.mimeData()
        if mime.hasUrls() and self._handle_urls(mime.urls()):
            event.acceptProposedAction()
            return
        if mime.hasImage():
            img = mime.imageData()
            if isinstance(img, QImage) and not img.isNull():
                self.run_query(qimage_to_pil(img), label="dropped image")
                event.acceptProposedAction()
                return
        event.ignore()

    def _handle_urls(self, urls) -> bool:
        """Folders are added to the collection (and indexed); the first image file becomes the query."""
        files = [u.toLocalFile() for u in urls if u.isLocalFile()]
        folders = [f for f in files if os.path.isdir(f)]
        images = [f for f in files if os.path.isfile(f)]
        for f in folders:
            self.add_folder(f, index=False)
        if folders:
            self.start_index()
        if images:
            if not is_image_path(images[0]):
                self.show_message(f"{os.path.basename(images[0])} is not an image file Lookalike can read.")
            else:
                self.run_query(images[0])
        return bool(folders or images)

    # ================================================================== state for tests / hook
    def busy(self) -> bool:
        """Whether anything runs in the background (indexing, query, explanation, thumbnails)."""
        return self.is_indexing() or self.tasks.busy() or self.thumbnails.pending() > 0

    def visible_rows(self) -> range:
        n = self.model.rowCount()
        if n == 0:
            return range(0)
        vp = self.results_view.viewport().rect()
        first = self.results_view.indexAt(vp.topLeft() + QPoint(4, 4))
        last = self.results_view.indexAt(vp.bottomRight() - QPoint(4, 4))
        lo = first.row() if first.isValid() else 0
        hi = last.row() if last.isValid() else min(n - 1, lo + 200)
        return range(lo, min(n, hi + 1))

    # ================================================================== shutdown
    def closeEvent(self, event) -> None:
        self.save_settings()
        self.folder_watch.stop()
        if self.index_worker is not None:
            self.index_worker.cancel()
        if self.index_thread is not None:
            self.index_thread.wait(30000)
        self.tasks.wait(30000)
        self.thumbnails.clear_pending()
        self.thumbnails.wait_idle(10000)
        self._close_collection()
        super().closeEvent(event)


def _legend_text(text: str) -> Overlay:
    return Overlay(legend=text)


def qimage_to_pil(img: QImage) -> Image.Image:
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    data = bytes(img.constBits())[: bpl * h]
    return Image.frombuffer("RGB", (w, h), data, "raw", "RGB", bpl, 1).copy()
