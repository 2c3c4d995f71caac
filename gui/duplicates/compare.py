"""Compare two photos: side by side with one zoom and one position for both, or flickering in place.

The shared view state is in *normalised* image coordinates (the centre as a fraction of the
width and height, and a zoom relative to "fit"), so a full-size photo and its 25 % copy show the
same part at the same size: what differs between them (a stamp, a crop, compression) is what
the eye catches. Flicker (F, or the toggle) shows both in one place, alternating every
``FLICKER_MS``; Space swaps them by hand. Mouse wheel zooms both, dragging pans both, 0 fits.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPixmap
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from engine.api import load_image
from engine.errors import ImageLoadError

from ..keys import claim_view_keys
from ..qimages import pil_to_qimage

VIEW_SIDE = 2048
FLICKER_MS = 450


class SharedView:
    """Zoom (1 = fit) and centre (fractions of the image) shared by the canvases."""

    def __init__(self) -> None:
        self.zoom = 1.0
        self.cx = 0.5
        self.cy = 0.5
        self.canvases: list["CompareCanvas"] = []

    def changed(self) -> None:
        for c in self.canvases:
            c.update()

    def reset(self) -> None:
        self.zoom, self.cx, self.cy = 1.0, 0.5, 0.5
        self.changed()


class CompareCanvas(QWidget):
    """Paints one photo with the shared zoom and centre."""

    def __init__(self, shared: SharedView, parent: QWidget | None = None):
        super().__init__(parent)
        self.shared = shared
        shared.canvases.append(self)
        self.pixmap: QPixmap | None = None
        self.message = ""
        self._drag: QPointF | None = None
        self.setMinimumSize(240, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def set_pixmap(self, pixmap: QPixmap | None, message: str = "") -> None:
        self.pixmap, self.message = pixmap, message
        self.update()

    def _scale(self) -> float:
        if self.pixmap is None or self.pixmap.isNull():
            return 1.0
        fit = min(self.width() / self.pixmap.width(), self.height() / self.pixmap.height())
        return fit * self.shared.zoom

    def image_rect(self) -> QRectF:
        s = self._scale()
        w, h = self.pixmap.width() * s, self.pixmap.height() * s
        return QRectF(self.width() / 2 - self.shared.cx * w, self.height() / 2 - self.shared.cy * h, w, h)

    def paintEvent(self, _e) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(40, 40, 40))
        if self.pixmap is None or self.pixmap.isNull():
            p.setPen(QColor(220, 220, 220))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.message or "no photo")
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.shared.zoom <= 2)
        p.drawPixmap(self.image_rect(), self.pixmap, QRectF(self.pixmap.rect()))

    def wheelEvent(self, e) -> None:
        factor = 1.25 if e.angleDelta().y() > 0 else 0.8
        self.shared.zoom = min(32.0, max(1.0, self.shared.zoom * factor))
        if self.shared.zoom == 1.0:
            self.shared.cx = self.shared.cy = 0.5
        self.shared.changed()

    def mousePressEvent(self, e) -> None:
        self._drag = e.position()

    def mouseMoveEvent(self, e) -> None:
        if self._drag is None or self.pixmap is None:
            return
        r = self.image_rect()
        d = e.position() - self._drag
        self._drag = e.position()
        self.shared.cx = min(1.0, max(0.0, self.shared.cx - d.x() / max(1.0, r.width())))
        self.shared.cy = min(1.0, max(0.0, self.shared.cy - d.y() / max(1.0, r.height())))
        self.shared.changed()

    def mouseReleaseEvent(self, _e) -> None:
        self._drag = None


def load_pixmap(path: str) -> tuple[QPixmap | None, str]:
    try:
        return QPixmap.fromImage(pil_to_qimage(load_image(path, VIEW_SIDE))), ""
    except (ImageLoadError, OSError) as exc:
        return None, str(exc)


class CompareView(QWidget):
    """Two photos side by side (synchronised zoom and position) with a flicker toggle."""

    closed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.shared = SharedView()
        self.left = CompareCanvas(self.shared)
        self.right = CompareCanvas(self.shared)
        self.left_label, self.right_label = QLabel(), QLabel()
        for lab in (self.left_label, self.right_label):
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.paths: tuple[str, str] | None = None
        self.pixmaps: list[QPixmap | None] = [None, None]
        self.labels = ["", ""]
        self.showing = 0  # in flicker mode: which photo the left canvas shows
        self.timer = QTimer(self)
        self.timer.setInterval(FLICKER_MS)
        self.timer.timeout.connect(self.swap)

        self.back_btn = QPushButton("← Back to the groups")
        self.back_btn.setToolTip("Esc")
        self.back_btn.clicked.connect(self.close_compare)
        self.flicker = QCheckBox("Flicker (F)")
        self.flicker.setToolTip("Show both photos in one place, alternating; Space swaps them by hand")
        self.flicker.toggled.connect(self.set_flicker)
        self.fit_btn = QPushButton("Fit (0)")
        self.fit_btn.clicked.connect(self.shared.reset)
        self.hint = QLabel("Wheel: zoom both · drag: pan both")
        top = QHBoxLayout()
        top.addWidget(self.back_btn)
        top.addWidget(self.flicker)
        top.addWidget(self.fit_btn)
        top.addStretch(1)
        top.addWidget(self.hint)
        panes = QHBoxLayout()
        boxes = []
        for canvas, label in ((self.left, self.left_label), (self.right, self.right_label)):
            box = QWidget()
            col = QVBoxLayout(box)
            col.setContentsMargins(0, 0, 0, 0)
            col.addWidget(canvas, 1)
            col.addWidget(label)
            panes.addWidget(box, 1)
            boxes.append(box)
        self.right_box = boxes[1]  # hidden while flickering: the left pane takes the whole width
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(panes, 1)

    def set_photos(self, a: str, b: str, label_a: str = "", label_b: str = "") -> None:
        self.paths = (a, b)
        self.flicker.setChecked(False)
        self.shared.reset()
        for k, p in enumerate((a, b)):
            pix, err = load_pixmap(p)
            self.pixmaps[k] = pix
            size = f"{pix.width()} × {pix.height()} shown" if pix is not None else err
            self.labels[k] = f"<b>{os.path.basename(p)}</b> {label_a if k == 0 else label_b}<br>" \
                             f"{os.path.dirname(p)}<br><span style='color:gray'>{size}</span>"
        self.showing = 0
        self._refresh()

    def _refresh(self) -> None:
        flick = self.flicker.isChecked()
        shown = self.showing if flick else 0
        self.left.set_pixmap(self.pixmaps[shown], "" if self.pixmaps[shown] is not None else "could not be read")
        self.left_label.setText(("<b>[" + "AB"[shown] + "]</b> " if flick else "") + self.labels[shown])
        self.right_box.setVisible(not flick)
        if not flick:
            self.right.set_pixmap(self.pixmaps[1], "" if self.pixmaps[1] is not None else "could not be read")
            self.right_label.setText(self.labels[1])

    def set_flicker(self, on: bool) -> None:
        if on:
            self.timer.start()
        else:
            self.timer.stop()
            self.showing = 0
        self._refresh()

    def swap(self) -> None:
        self.showing = 1 - self.showing
        self._refresh()

    def close_compare(self) -> None:
        self.flicker.setChecked(False)
        self.closed.emit()

    def event(self, e) -> bool:
        return claim_view_keys(e) or super().event(e)

    def keyPressEvent(self, e) -> None:
        k = e.key()
        if k == Qt.Key.Key_Escape:
            self.close_compare()
        elif k == Qt.Key.Key_F:
            self.flicker.toggle()
        elif k == Qt.Key.Key_Space and self.flicker.isChecked():
            self.timer.stop()  # by hand from now on
            self.swap()
        elif k == Qt.Key.Key_0:
            self.shared.reset()
        elif k in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.shared.zoom = min(32.0, self.shared.zoom * 1.25)
            self.shared.changed()
        elif k == Qt.Key.Key_Minus:
            self.shared.zoom = max(1.0, self.shared.zoom * 0.8)
            self.shared.changed()
        else:
            super().keyPressEvent(e)
