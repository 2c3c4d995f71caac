"""The Search tab: the query (left), its results and "Why matched" (right).

Queries and explanations run as tasks of the window's :class:`gui.workers.TaskRunner` (the
newest of each wins: a query finishing after a newer one started is dropped); the panel only
shows what they return. Engine errors become a message in the window's banner.
"""
from __future__ import annotations

import logging
import os

from PIL import Image
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QSplitter, QTabWidget

from engine.api import crop_box, imagenet_category, load_image
from engine.errors import LookalikeError
from engine.services.explain import class_activation_map, explain_match
from engine.services.formatting import plural

from ..qimages import pil_to_qimage
from .query_pane import QueryPane, overlay_availability
from .results_model import ResultItem
from .results_pane import ResultsPane
from .viewer import ViewerDialog
from .why_panel import WhyData, WhyPanel

log = logging.getLogger(__name__)
MAX_RESULTS = 10000
DISPLAY_SIDE = 1024  # longest side of the query / result pictures shown in the overlay views


def _display_image(query, box) -> QImage:
    """The query as shown: the picture (or the box of it), at most ``DISPLAY_SIDE`` px."""
    if isinstance(query, Image.Image):
        img = query
    elif box is None:
        img = load_image(query, DISPLAY_SIDE)
    else:  # the box is in full-size pixels: decode full size, show the region
        img = load_image(query)
    if box is not None:
        img = crop_box(img, box)
    longest = max(img.size)
    if longest > DISPLAY_SIDE:
        img = img.resize((max(1, img.width * DISPLAY_SIDE // longest), max(1, img.height * DISPLAY_SIDE // longest)))
    return pil_to_qimage(img)


def search_task(col, query, method: str, box, box_mode: str, report=None):
    """In a task: the query's picture, every result (up to ``MAX_RESULTS``), how many photos
    were searched and with which method. ``report`` gets the same four for the ranking before
    the re-ranking (a preview shown while the photos are verified)."""
    display = _display_image(query, box)
    # Every indexed photo (photos indexed while this query runs included), up to the cap.
    n = max(1, min(len(col.search_index(method)), MAX_RESULTS))
    # An archive's paths were recorded on other hosts: say which this machine cannot read.
    reachable = (lambda path: col.unreachable_reason(path) or "") if col.read_only else (lambda path: "")

    def shown(results):
        # Ranked by the collection's re-ranking; similarity, threshold and near-duplicates
        # read the method's own score (the re-ranker's is relative to the top result).
        items = [ResultItem(r.path, r.score if r.base_score is None else r.base_score, i + 1, r.date, r.size,
                            reachable(r.path)) for i, r in enumerate(results)]
        return display, items, len(col.search_index(method)), method

    preview = None if report is None else (lambda results: report(shown(results)))
    return shown(col.search(query, method, top=n, box=box, box_mode=box_mode, preview=preview))


def explain_task(col, query, box, result_path: str, score: float | None, query_image: QImage, cal) -> WhyData:
    """In a task: why ``result_path`` matched the query, with both CAMs and the matched points."""
    unreachable = col.unreachable_reason(result_path) if col.read_only else None
    if unreachable:  # the match is explained from the photo's own feature maps
        raise LookalikeError(unreachable)
    if box is not None:  # a region query is explained on its (image-cropped) region
        query = crop_box(query if isinstance(query, Image.Image) else load_image(query), box)
    e = explain_match(col, query, result_path, search_score=score)
    rimg = load_image(result_path, DISPLAY_SIDE)
    qcam, qcls = class_activation_map(col, query) or (None, None)
    rcam, rcls = class_activation_map(col, result_path) or (None, None)
    try:
        keypoints = col.matched_keypoints(query, result_path)
    except Exception:  # local features are an extra: the parts still explain the match
        log.warning("no matched points for %s", result_path, exc_info=True)
        keypoints = None
    shown = e.search_score if e.search_score is not None else e.score
    return WhyData(e, query_image, pil_to_qimage(rimg), qcam, rcam,
                   None if qcls is None else imagenet_category(qcls),
                   None if rcls is None else imagenet_category(rcls),
                   similarity=f"{cal.percent(shown):.0f} %" if cal is not None else None, keypoints=keypoints)


class SearchPanel(QSplitter):
    """Query pane | Results and Why matched. ``indexing_found()`` is the number of photos a
    running indexing found, or None when none runs (a query then says it searched part)."""

    query_finished = Signal()  # results (or an error) are shown
    query_previewed = Signal()  # the ranking before re-ranking is shown (the final one follows)
    explain_finished = Signal()
    parts_learned = Signal()  # an explanation told which parts the active method has

    def __init__(self, tasks, thumbnails, settings, collection_getter, banner, indexing_found, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.tasks = tasks
        self.collection_getter = collection_getter
        self.banner = banner
        self.indexing_found = indexing_found
        self.query: str | Image.Image | None = None
        self.query_label = ""
        self.query_image: QImage | None = None
        self.query_box: tuple[int, int, int, int] | None = None
        self.query_box_mode = "image"
        self.explained_result: str | None = None
        self.why: WhyData | None = None
        self.pending_why_rank: int | None = None  # show_why asked while the query still ran
        self.parts_kind: dict[str, str] = {}  # method -> "regions" / "clusters" / ..., learned from explanations
        self.activation_crop = True  # whether the active method can crop its feature maps
        self.viewer_dialog = None
        self.query_pane = QueryPane()
        self.query_pane.overlay_changed.connect(self._on_overlay_changed)
        self.results = ResultsPane(thumbnails, tasks, collection_getter, settings)
        self.results.view_requested.connect(self.view_result)
        self.results.query_requested.connect(lambda p: self.run_query(p))
        self.results.why_requested.connect(self._why_for_path)
        self.results.current_changed.connect(self._on_current_result)
        self.results.failed.connect(banner.show_message)
        self.why_panel = WhyPanel()
        self.query_pane.opacity_changed.connect(self.why_panel.set_opacity)
        self.right_tabs = QTabWidget()
        self.right_tabs.addTab(self.results, "Results")
        self.right_tabs.addTab(self.why_panel, "Why matched")
        self.addWidget(self.query_pane)
        self.addWidget(self.right_tabs)
        self.setStretchFactor(0, 2)
        self.setStretchFactor(1, 3)
        self.setSizes([380, 620])
        self.setChildrenCollapsible(False)

    # -- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the previous collection's query, results, explanation and overlay."""
        self.query = None
        self.query_label = ""
        self.query_image = None
        self.query_box = None
        self.explained_result = None
        self.why = None
        self.pending_why_rank = None
        self.query_pane.reset()
        self.results.clear()
        self.why_panel.clear()
        self.query_pane.render(None, None)

    def apply_capabilities(self, method: str | None, caps: set[str] | None, stated: bool) -> None:
        """Offer only the overlays and box modes the active method supports."""
        self.query_pane.offer_overlays(overlay_availability(caps, stated, self.parts_kind.get(method or "")), method)
        self.activation_crop = caps is None or "activation_crop" in caps

    # -- queries ------------------------------------------------------------------------------
    def run_query(self, query: str | Image.Image, label: str | None = None,
                  box: tuple[int, int, int, int] | None = None, box_mode: str = "image") -> None:
        """Search the collection for ``query`` (a path or an image) in a task.

        ``box`` (x1, y1, x2, y2 in upright full-size pixels) restricts the query to a region,
        described by cropping the image or, where the method supports it, its activations.
        """
        col = self.collection_getter()
        if col is None:
            self.banner.show_message("Open or create a collection first.")
            return
        if isinstance(query, (str, os.PathLike)):
            query = os.path.abspath(os.fspath(query))
        self.query = query
        self.query_box, self.query_box_mode = box, box_mode
        self.query_label = label or (query if isinstance(query, str) else "pasted image")
        self.query_pane.set_caption(self.query_label, "(searching…)")
        self.explained_result = None
        self.why = None
        self.query_pane.render(None, None)  # the previous query's overlay and legend go now
        self.banner.hide_message()
        method = col.active_method
        if not col.has_descriptors(method):
            self._on_query_error("")
            self.query_pane.show_failed("Nothing is indexed in this collection yet.")
            self.banner.show_message(
                "No photo is indexed yet: indexing has just started, try again in a moment."
                if self.indexing_found() is not None else "No photo of this collection is indexed yet: add a "
                "photo folder (Add… under Folders) and search once it is indexed.")
            return
        self.tasks.start("query", lambda task: search_task(col, query, method, box, box_mode, task.report),
                         self._on_query_done, self._on_query_error, on_progress=self._on_query_preview)

    def rerun_query(self) -> None:
        if self.query is not None:
            self.run_query(self.query, self.query_label, self.query_box, self.query_box_mode)

    def _on_query_preview(self, value) -> None:
        """The global ranking, shown while the re-ranking verifies the best matches' details."""
        self._show_ranking(value, "Refining the order: the best matches are being checked detail by detail, "
                                  "so a few may still move…", "(refining…)")
        self.query_previewed.emit()

    def _show_ranking(self, value, note: str = "", caption_note: str = "") -> str | None:
        """Show a ranking (a search task's value); returns the query's path (None: an image)."""
        display, items, searched, method = value
        self.query_image = display
        self.query_pane.show_photo(display)
        self.query_pane.set_caption(self.query_label, caption_note)
        qpath = self.query if isinstance(self.query, str) else None
        notes = [n for n in (self._partial_index_note(searched, method), note) if n]
        self.results.show_results(items, qpath, " ".join(notes))
        return qpath

    def _on_query_done(self, value) -> None:
        qpath, items = self._show_ranking(value), value[1]
        self.right_tabs.setCurrentIndex(0)
        self.query_finished.emit()
        target, self.pending_why_rank = self.pending_why_rank, None
        if target is not None:
            self.show_why(target)
            return
        first = next((it for it in items if it.path != qpath and not it.unreachable), None)
        if first is not None:
            self.explain(first.path, first.score)
        else:
            self.why_panel.clear("No other photo to compare with.")

    def _partial_index_note(self, searched: int, method: str) -> str:
        """What a query searched when that is not the whole collection (indexing runs or
        was stopped before the end), else ""."""
        col = self.collection_getter()
        if col is None:
            return ""
        damaged = col.unsearchable_count(method)
        if damaged:
            return (f"{plural(damaged, 'photo')} could not be searched: their stored descriptors are damaged. "
                    "Press Index now to describe them again.")
        found = self.indexing_found()
        if found is not None:
            total = max(found, col.image_count())
            of = f" of the {total} found" if total > searched else ""
            return (f"Indexing is running: this searched the {plural(searched, 'photo')} indexed so far{of}. "
                    "The results are updated when indexing has finished.")
        total = col.image_count()
        if searched < total:
            return (f"Only {searched} of {plural(total, 'photo')} are indexed with {method}: this searched those. "
                    "Press Index now to index the rest.")
        return ""

    def _on_query_error(self, message: str) -> None:
        self.query_pane.set_caption(self.query_label, "(failed)")
        self.query_pane.show_failed("This query could not be used.")
        self.results.clear()
        where = "" if self.query_label in message else f" {self.query_label}"
        self.banner.show_message(f"Cannot search with this query{where}: {message}")
        self.query = None
        self.query_finished.emit()

    # -- explanations -------------------------------------------------------------------------
    def explain(self, result_path: str, score: float | None = None) -> None:
        col, query, box = self.collection_getter(), self.query, self.query_box
        if col is None or query is None:
            return
        self.explained_result = result_path
        qimage, cal = self.query_image, self.results.calibration
        working = f"Working out why {os.path.basename(result_path)} matched…"
        if self.why is None:  # nothing shown yet: say that something is coming
            self.query_pane.say(working)
        self.why_panel.header.setText(working)
        self.tasks.start("explain", lambda _task: explain_task(col, query, box, result_path, score, qimage, cal),
                         self._on_explained, self._on_explain_error)

    def _on_explained(self, data: WhyData) -> None:
        self.why = data
        method = data.explanation.method
        if self.parts_kind.get(method) != data.explanation.kind:
            self.parts_kind[method] = data.explanation.kind  # now the overlays it has are known
            self.parts_learned.emit()
        self.why_panel.set_data(data)
        self.query_pane.render(data, self.query_image)
        self.explain_finished.emit()

    def _on_explain_error(self, message: str) -> None:
        self.why = None
        self.why_panel.clear(f"Could not explain this match: {message}")
        self.query_pane.say(f"No overlay: {message}")
        self.explain_finished.emit()

    def _on_overlay_changed(self, kind: str) -> None:
        self.why_panel.set_kind(kind)
        self.query_pane.render(self.why, self.query_image)

    def _on_current_result(self, path: str, score: float) -> None:
        if path != self.explained_result:
            self.explain(path, score)

    def _why_for_path(self, path: str) -> None:
        row = self.results.model.row_of(path)
        if row is not None:
            self.results.select_row(row)
        self.right_tabs.setCurrentWidget(self.why_panel)

    def show_why(self, rank: int) -> None:
        """Select result number ``rank`` (1-based, in the current view) and show Why matched."""
        if self.tasks.busy("query"):
            self.pending_why_rank = rank
            return
        model = self.results.model
        n = model.rowCount()
        if n == 0:
            self.banner.show_message("There is no result to explain.")
            return
        row = max(0, min(n - 1, rank - 1))
        self.results.select_row(row)
        it = model.item(row)
        if it.path != self.explained_result:
            self.explain(it.path, it.score)
        self.right_tabs.setCurrentWidget(self.why_panel)

    # -- viewer -------------------------------------------------------------------------------
    def view_result(self, path: str) -> None:
        """The result large, in the app's own viewer (arrows walk the shown results)."""
        dlg = self.viewer_dialog
        if dlg is None:
            dlg = self.viewer_dialog = ViewerDialog(self)
            dlg.viewer.find_similar.connect(lambda p: (dlg.close(), self.run_query(p)))
            dlg.viewer.find_similar_region.connect(lambda p, box, mode: (dlg.close(), self.query_region(p, box, mode)))
        dlg.viewer.set_activation_crop(self.activation_crop)
        dlg.viewer.set_paths([it.path for it in self.results.model.items()], path)
        dlg.show()
        dlg.raise_()

    def query_region(self, path: str, box: tuple, box_mode: str) -> None:
        """A box dragged in a viewer: query with that region (crop the image or the activations)."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        how = "activations" if box_mode == "activations" else "image"
        self.run_query(path, f"{os.path.basename(path)} [{x1},{y1},{x2},{y2}] ({how} crop)",
                       box=(x1, y1, x2, y2), box_mode=box_mode)
