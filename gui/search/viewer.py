"""Photo viewer pane: fit / zoom, previous / next, EXIF summary, drag a box to query a region.

The box the user drags is reported in the pixel coordinates of the *upright full-size* photo
(EXIF orientation applied), which is what ``Collection.search(path, box=...)`` expects.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton,
                               QVBoxLayout, QWidget)

from engine.api import load_image
from engine.errors import ImageLoadError
from engine.services.browse import photo_details

from ..keys import claim_view_keys
from ..qimages import pil_to_qimage

VIEW_SIDE = 2048  # longest side decoded for display


class ImageCanvas(QWidget):
    """Paints one photo fitted (or zoomed) and lets the user drag a selection box."""

    box_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(200, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.pixmap: QPixmap | None = None
        self.full_size: tuple[int, int] = (0, 0)  # upright full-resolution size of the photo
        self.zoom: float | None = None  # None = fit to the pane
        self._drag_start: QPointF | None = None
        self._box_widget: QRectF | None = None  # in widget coordinates while dragging
        self.box: tuple[float, float, float, float] | None = None  # full-resolution pixels
        self.message = ""

    def set_image(self, pixmap: QPixmap | None, full_size: tuple[int, int], message: str = "") -> None:
        self.pixmap, self.full_size, self.message = pixmap, full_size, message
        self.box = None
        self._box_widget = None
        self.update()

    def scale(self) -> float:
        """Widget pixels per displayed-pixmap pixel."""
        if self.pixmap is None or self.pixmap.isNull():
            return 1.0
        if self.zoom is not None:
            return self.zoom
        return min(self.width() / self.pixmap.width(), self.height() / self.pixmap.height())

    def image_rect(self) -> QRectF:
        """Where the photo is painted, in widget coordinates (centred)."""
        if self.pixmap is None:
            return QRectF()
        s = self.scale()
        w, h = self.pixmap.width() * s, self.pixmap.height() * s
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def widget_to_image(self, p: QPointF) -> tuple[float, float]:
        """Widget point -> full-resolution photo pixel (clamped to the photo)."""
        r = self.image_rect()
        if r.width() <= 0 or r.height() <= 0:
            return (0.0, 0.0)
        fx = min(max((p.x() - r.left()) / r.width(), 0.0), 1.0)
        fy = min(max((p.y() - r.top()) / r.height(), 0.0), 1.0)
        return (fx * self.full_size[0], fy * self.full_size[1])

    def image_to_widget(self, x: float, y: float) -> QPointF:
        r = self.image_rect()
        return QPointF(r.left() + x / max(1, self.full_size[0]) * r.width(),
                       r.top() + y / max(1, self.full_size[1]) * r.height())

    def clear_box(self) -> None:
        self.box = None
        self._box_widget = None
        self.update()
        self.box_changed.emit()

    # -- events -----------------------------------------------------------------------------
    def mousePressEvent(self, e) -> None:
        if e.button() == Qt.MouseButton.LeftButton and self.pixmap is not None:
            self._drag_start = e.position()
            self._box_widget = QRectF(e.position(), e.position())
            self.update()

    def mouseMoveEvent(self, e) -> None:
        if self._drag_start is not None:
            self._box_widget = QRectF(self._drag_start, e.position()).normalized()
            self.update()

    def mouseReleaseEvent(self, e) -> None:
        if self._drag_start is None or e.button() != Qt.MouseButton.LeftButton:
            return
        x1, y1 = self.widget_to_image(self._drag_start)
        x2, y2 = self.widget_to_image(e.position())
        self._drag_start = None
        self._box_widget = None
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        # A click (or a sliver) is not a box: at least 2 % of the photo's shorter side.
        min_side = 0.02 * min(self.full_size) if min(self.full_size) else 1
        self.box = (x1, y1, x2, y2) if (x2 - x1 >= min_side and y2 - y1 >= min_side) else None
        self.update()
        self.box_changed.emit()

    def paintEvent(self, _e) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().window())
        if self.pixmap is None or self.pixmap.isNull():
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.message or "No photo")
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawPixmap(self.image_rect(), self.pixmap, QRectF(self.pixmap.rect()))
        rect = self._box_widget
        if rect is None and self.box is not None:
            rect = QRectF(self.image_to_widget(*self.box[:2]), self.image_to_widget(*self.box[2:]))
        if rect is not None:
            p.setPen(QPen(QColor(255, 200, 0), 2, Qt.PenStyle.DashLine))
            p.fillRect(rect, QColor(255, 200, 0, 40))
            p.drawRect(rect)
        p.end()

    def sizeHint(self) -> QSize:
        return QSize(640, 480)


def _format_details(d: dict) -> str:
    parts = []
    if d.get("camera"):
        parts.append(d["camera"])
    if d.get("date"):
        parts.append(d["date"])
    if d.get("width"):
        parts.append(f"{d['width']} × {d['height']} px")
    if d.get("size") is not None:
        parts.append(f"{d['size'] / 1e6:.1f} MB" if d["size"] >= 1e5 else f"{d['size'] / 1e3:.0f} KB")
    if d.get("exposure"):
        parts.append(d["exposure"])
    return "  ·  ".join(parts)


class PhotoViewer(QWidget):
    """Viewer pane over a list of paths (the grid's current listing)."""

    find_similar = Signal(str)
    find_similar_region = Signal(str, tuple, str)  # path, (x1, y1, x2, y2), box_mode
    closed = Signal()
    current_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.paths: list[str] = []
        self.index = -1
        self.canvas = ImageCanvas(self)
        self.canvas.box_changed.connect(self._update_buttons)
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QLabel()
        self.details.setObjectName("exifSummary")
        self.details.setWordWrap(True)  # a long EXIF line must not widen the window
        self.title.setWordWrap(True)
        self.back_btn = QPushButton("◀ Grid")
        self.back_btn.setToolTip("Back to the grid (Esc)")
        self.back_btn.clicked.connect(self.closed)
        self.prev_btn = QToolButton(text="‹")
        self.prev_btn.setToolTip("Previous photo (Left arrow)")
        self.prev_btn.clicked.connect(self.previous)
        self.next_btn = QToolButton(text="›")
        self.next_btn.setToolTip("Next photo (Right arrow)")
        self.next_btn.clicked.connect(self.next)
        self.fit_btn = QToolButton(text="Fit")
        self.fit_btn.clicked.connect(self.fit)
        self.zoom_in_btn = QToolButton(text="+")
        self.zoom_in_btn.clicked.connect(lambda: self.zoom_by(1.25))
        self.zoom_out_btn = QToolButton(text="−")
        self.zoom_out_btn.clicked.connect(lambda: self.zoom_by(0.8))
        # One button: the whole photo, or the box dragged on it (two "Find similar" buttons
        # side by side left people guessing which one did what).
        self.similar_btn = QPushButton("Find similar")
        self.similar_btn.clicked.connect(self._emit_similar_or_region)
        self.clear_box_btn = QPushButton("Clear box")
        self.clear_box_btn.setToolTip("Forget the box: Find similar uses the whole photo again")
        self.clear_box_btn.clicked.connect(lambda: self.canvas.clear_box())
        self.box_mode = QComboBox()
        self.box_mode.addItem("crop the image", "image")
        self.box_mode.addItem("crop the activations", "activations")
        self.box_mode.setToolTip("How the box is described: crop the photo, or crop the CNN feature maps")
        bar = QHBoxLayout()
        for w in (self.back_btn, self.prev_btn, self.next_btn, self.fit_btn, self.zoom_out_btn, self.zoom_in_btn):
            bar.addWidget(w)
        bar.addStretch(1)
        for w in (self.box_mode, self.clear_box_btn, self.similar_btn):
            bar.addWidget(w)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.title)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.details)
        self._update_buttons()

    def event(self, e) -> bool:
        return claim_view_keys(e) or super().event(e)

    def keyPressEvent(self, e) -> None:
        # Key handling here rather than QShortcuts: the canvas has the focus and passes keys up.
        mods = e.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        actions = {Qt.Key.Key_Left: self.previous, Qt.Key.Key_Right: self.next,
                   Qt.Key.Key_Escape: self.closed.emit, Qt.Key.Key_S: self._emit_similar,
                   Qt.Key.Key_Plus: lambda: self.zoom_by(1.25), Qt.Key.Key_Equal: lambda: self.zoom_by(1.25),
                   Qt.Key.Key_Minus: lambda: self.zoom_by(0.8), Qt.Key.Key_0: self.fit}
        slot = actions.get(e.key()) if mods in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ShiftModifier) else None
        if slot is None:
            super().keyPressEvent(e)
            return
        slot()
        e.accept()

    # -- navigation -----------------------------------------------------------------------
    def set_paths(self, paths: list[str], current: str | None = None) -> None:
        self.paths = list(paths)
        if current is not None and current in self.paths:
            self.show_index(self.paths.index(current))
        elif self.paths:
            self.show_index(0)
        else:
            self.index = -1
            self.canvas.set_image(None, (0, 0), "No photo")

    def current_path(self) -> str | None:
        return self.paths[self.index] if 0 <= self.index < len(self.paths) else None

    def show_index(self, i: int) -> None:
        if not self.paths:
            return
        self.index = max(0, min(i, len(self.paths) - 1))
        path = self.paths[self.index]
        self.canvas.zoom = None
        try:
            img = load_image(path, VIEW_SIDE)
            info = photo_details(path)
            full = (info.get("width") or img.width, info.get("height") or img.height)
            self.canvas.set_image(QPixmap.fromImage(pil_to_qimage(img)), full)
            self.details.setText(_format_details(info))
        except (ImageLoadError, OSError) as exc:
            self.canvas.set_image(None, (0, 0), f"Cannot show this photo: {getattr(exc, 'reason', exc)}")
            self.details.setText("")
        self.title.setText(f"{os.path.basename(path)}   ({self.index + 1} of {len(self.paths)})")
        self._update_buttons()
        self.current_changed.emit(path)

    def next(self) -> None:
        if self.index + 1 < len(self.paths):
            self.show_index(self.index + 1)

    def previous(self) -> None:
        if self.index > 0:
            self.show_index(self.index - 1)

    # -- zoom -----------------------------------------------------------------------------
    def fit(self) -> None:
        self.canvas.zoom = None
        self.canvas.update()

    def zoom_by(self, factor: float) -> None:
        self.canvas.zoom = max(0.05, min(16.0, self.canvas.scale() * factor))
        self.canvas.update()

    # -- queries --------------------------------------------------------------------------
    def _emit_similar(self) -> None:
        p = self.current_path()
        if p:
            self.find_similar.emit(p)

    def set_activation_crop(self, supported: bool) -> None:
        """Offer "crop the activations" only for a method that can (others failed with an error)."""
        item = self.box_mode.model().item(1)
        item.setEnabled(supported)
        item.setToolTip("" if supported else "The current method cannot crop its feature maps")
        if not supported:
            self.box_mode.setCurrentIndex(0)

    def _emit_similar_or_region(self) -> None:
        if self.canvas.box is not None:
            self._emit_region()
        else:
            self._emit_similar()

    def _emit_region(self) -> None:
        p = self.current_path()
        if p and self.canvas.box is not None:
            box = tuple(round(v, 1) for v in self.canvas.box)
            self.find_similar_region.emit(p, box, self.box_mode.currentData())

    def _update_buttons(self) -> None:
        self.prev_btn.setEnabled(self.index > 0)
        self.next_btn.setEnabled(0 <= self.index < len(self.paths) - 1)
        has_box = self.canvas.box is not None
        self.similar_btn.setEnabled(self.current_path() is not None)
        self.similar_btn.setText("Find similar to the box" if has_box else "Find similar")
        self.similar_btn.setToolTip("Find photos similar to the box dragged on the photo" if has_box else
                                    "Find photos similar to this one (S); drag a box on it to search for a part")
        self.clear_box_btn.setVisible(has_box)
        self.box_mode.setVisible(has_box)


class ViewerDialog(QDialog):
    """A result shown large inside the app (double-click in the results grid); Esc closes."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Lookalike – photo")
        self.viewer = PhotoViewer(self)
        self.viewer.back_btn.setText("Close")
        self.viewer.back_btn.setToolTip("Close the viewer (Esc)")
        self.viewer.closed.connect(self.close)
        self.viewer.current_changed.connect(lambda p: self.setWindowTitle(f"Lookalike – {os.path.basename(p)}"))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.viewer)
        self.resize(1000, 760)
