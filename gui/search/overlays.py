"""Overlays on an image: region contributions, cluster label maps and CAM heat maps.

:class:`OverlayView` is a ``QGraphicsView`` (wheel / +/- zoom, drag to pan) showing a photo,
an optional semi-transparent overlay image stretched over it and optional outlined boxes
(the top contributing parts, numbered). The ``render_*`` functions turn the engine's numpy
maps (:mod:`engine.services.explain`) into overlay images; :func:`build_overlay` picks one per kind.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QLinearGradient, QPainter, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem,
                               QGraphicsView, QHBoxLayout, QLabel, QWidget)

OVERLAY_KINDS = ("none", "regions", "clusters", "cam")
# Explanation kinds whose parts are network layers, each covering the whole photo ("cam": a
# CAM method's layers; its heat map and mask are in the explanation's extras).
LAYER_PART_KINDS = ("layers", "cam")
CAM_THRESHOLD = 0.5  # the CAM mask outline: cells at >= 50 % of the map's peak

# Heat colour map (dark violet -> red -> yellow), alpha rising with the value.
_HEAT_STOPS = np.array([[0.0, 20, 10, 60], [0.35, 120, 20, 130], [0.6, 220, 60, 60],
                        [0.8, 250, 150, 30], [1.0, 255, 240, 120]], np.float32)
# Distinct colours for cluster labels (Tableau-like palette).
PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
                    [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213]],
                   np.uint8)
TOP_COLORS = ["#00e5ff", "#76ff03", "#ffea00", "#ff4081", "#e040fb"]


def heat_rgb(values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 1] -> uint8 RGB through the heat colour map."""
    v = np.clip(values, 0, 1).astype(np.float32)
    out = np.empty(v.shape + (3,), np.float32)
    for c in range(3):
        out[..., c] = np.interp(v, _HEAT_STOPS[:, 0], _HEAT_STOPS[:, c + 1])
    return out.astype(np.uint8)


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    rgba = np.ascontiguousarray(rgba, np.uint8)
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def _upscale(values: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resize a float map to ``size`` = (w, h) (nearest for grids, bilinear for heat maps)."""
    im = Image.fromarray(values.astype(np.float32), mode="F")
    im = im.resize(size, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)
    return np.asarray(im, np.float32)


def render_heat(values: np.ndarray, size: tuple[int, int], nearest: bool = False, outline_at: float | None = None,
                outline_mask: np.ndarray | None = None) -> QImage:
    """Heat overlay of a map in [0, 1] at ``size`` (w, h); optional white outline of ``>= outline_at``,
    or of ``outline_mask`` (a 0/1 map of any grid, scaled with nearest neighbours)."""
    v = np.clip(_upscale(values, size, nearest), 0, 1)
    rgba = np.zeros(v.shape + (4,), np.uint8)
    rgba[..., :3] = heat_rgb(v)
    rgba[..., 3] = (60 + 195 * v).astype(np.uint8)
    if outline_at is not None or outline_mask is not None:
        m = (_upscale(np.asarray(outline_mask, np.float32), size, True) > 0.5 if outline_mask is not None
             else v >= outline_at)
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        edge[0, :] &= m[0, :]
        rgba[edge] = (255, 255, 255, 255)
        # thicken the outline by one pixel so it stays visible once scaled down
        e2 = np.roll(edge, 1, 0) | np.roll(edge, 1, 1)
        rgba[e2] = (255, 255, 255, 255)
    return rgba_to_qimage(rgba)


def render_labels(labels: np.ndarray, size: tuple[int, int], highlight: list[int] | None = None) -> QImage:
    """Colour label map (one palette colour per cluster); ``highlight`` clusters are opaque."""
    lab = _upscale(labels.astype(np.float32), size, nearest=True).astype(np.int64)
    rgba = np.zeros(lab.shape + (4,), np.uint8)
    valid = lab >= 0
    rgba[..., :3][valid] = PALETTE[lab[valid] % len(PALETTE)]
    rgba[..., 3] = np.where(valid, 150, 0)
    if highlight:
        hl = np.isin(lab, highlight)
        rgba[..., 3] = np.where(hl, 235, np.where(valid, 90, 0))
        edge = hl & ~(np.roll(hl, 1, 0) & np.roll(hl, -1, 0) & np.roll(hl, 1, 1) & np.roll(hl, -1, 1))
        rgba[edge] = (255, 255, 255, 255)
    return rgba_to_qimage(rgba)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Bounding box ``(x1, y1, x2, y2)`` of ``mask > 0.5`` as fractions of the grid."""
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)


@dataclass
class Overlay:
    """What an :class:`OverlayView` draws over the photo, and its legend."""

    image: QImage | None = None
    boxes: list[tuple[tuple[float, float, float, float], str, str]] = field(default_factory=list)  # (box, colour, label)
    marks: list[tuple[tuple[float, float], str, str]] = field(default_factory=list)  # (centre, colour, label)
    legend: str = ""
    gradient: bool = False
    lines: list[tuple[tuple[float, float], tuple[float, float], str]] = field(default_factory=list)  # (from, to, colour)


def part_shares(side) -> np.ndarray:
    """Each part's share (%) of what speaks for the match: its contribution over the sum of
    the positive contributions. Shares of the score itself ran to "222.7 %" when negative
    parts and the whitening offset cancelled most of a small score; these stay in 0-100 and
    sum to 100 over the parts that help (a part working against the match is negative)."""
    c = np.asarray(side.contributions, np.float64)
    pos = float(c[c > 0].sum())
    return 100 * c / pos if pos > 0 else np.zeros_like(c)


def cluster_maps(parts) -> list[tuple[str, np.ndarray, int]]:
    """The clusterings of a clusters explanation: ``[(name, (h, w) labels, index of its first part)]``.

    Label maps come from ``extras['labels']`` / ``extras['labels <name>']`` (in part order: map
    j's cluster k is part ``offset_j + k``); without them, one map from the argmax of the masks.
    """
    extras = parts.extras or {}
    found, offset = [], 0
    for key, lab in extras.items():
        if key == "labels" or key.startswith("labels "):
            lab = np.asarray(lab).astype(np.int64)
            found.append((key[7:] or "clusters", lab, offset))
            offset += int(lab.max()) + 1
    if found and offset == len(parts.labels):
        return found
    masks = parts.masks
    lab = masks.argmax(0).astype(np.int64)
    lab[masks.max(0) <= 0] = -1
    return [("clusters", lab, 0)]


def cam_legend(cam_class: str | None = None, result_class: str | None = None) -> str:
    """The CAM overlay's legend, naming the class the map is of (both sides' in why-matched)."""
    if cam_class and result_class:
        what = (f"CAM of “{cam_class}” (query) and “{result_class}” (result) "
                "(each photo's most likely ImageNet class)")
    elif cam_class:
        what = f"CAM of “{cam_class}” (the photo's most likely ImageNet class)"
    else:
        what = "CAM heat map"
    return f"{what}, low → high; white outline: mask at ≥ {int(CAM_THRESHOLD * 100)} % of the peak"


def unit_range(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] (min to max); a flat map is all ones."""
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.ones_like(values)


def method_cam(side) -> tuple[np.ndarray, np.ndarray] | None:
    """A CAM method's own heat map (scaled to [0, 1]) and binary mask from its explanation
    (``seddati-cam``: ``extras["heat"]``, ``extras["mask"]``), or None for other methods."""
    if side is None or side.parts.kind != "cam":
        return None
    extras = side.parts.extras or {}
    if "heat" not in extras or "mask" not in extras:
        return None
    return unit_range(np.asarray(extras["heat"], np.float32)), np.asarray(extras["mask"], np.float32)


def method_cam_legend(cam_class: str | None = None) -> str:
    what = f"CAM of “{cam_class}” (the photo's most likely ImageNet class)" if cam_class else "CAM heat map"
    return (f"{what}, low → high; white outline: the part of the photo the method describes a second time "
            "on its own (heat above 0.9 × its mean; the distance is the smaller of the two)")


def build_overlay(kind: str, side, cam: np.ndarray | None, size: tuple[int, int], top_k: int = 5,
                  cam_class: str | None = None) -> Overlay:
    """The overlay of ``kind`` for one side of an explanation (``engine.services.explain.SideExplanation``).

    ``cam``: the image's class activation map in [0, 1] (or None) and ``cam_class`` the name of
    the class it maps (the photo's top class). ``size``: overlay pixels (w, h).
    """
    if kind == "none" or side is None and kind != "cam":
        return Overlay()
    if kind == "cam":
        own = method_cam(side)
        if own is not None:  # the method's own CAM and the mask its local descriptor keeps
            heat, mask = own
            return Overlay(render_heat(heat, size, outline_mask=mask), gradient=True, legend=method_cam_legend(cam_class))
        if cam is None:
            return Overlay(legend="This backbone has no classifier, so no class activation map (CAM).")
        return Overlay(render_heat(cam, size, outline_at=CAM_THRESHOLD), gradient=True, legend=cam_legend(cam_class))
    parts = side.parts
    top = side.top_parts(top_k)
    shares = part_shares(side)
    if kind == "regions":
        if parts.kind not in ("regions", "layers", "image") or parts.kind == "clusters":
            return Overlay(legend=f"Method shows {parts.kind}, not regions.")
        cmap = side.contribution_map()
        overlay = Overlay(render_heat(unit_range(cmap), size, nearest=True), gradient=True)
        if parts.kind == "image":
            overlay.legend = "This method has one global part (the whole image); choose R-MAC for regions."
            return overlay
        for rank, (i, label, c) in enumerate(top):
            box = mask_box(parts.masks[i])
            if box is not None:
                overlay.boxes.append((box, TOP_COLORS[rank % len(TOP_COLORS)], f"{rank + 1}: {shares[i]:.0f}%"))
        carried = float(sum(shares[i] for i, _l, _c in top[:len(overlay.boxes)]))
        overlay.legend = (f"{len(parts.labels)} regions tinted by how much each speaks for the match (low → high); "
                          f"the {len(overlay.boxes)} outlined carry {carried:.0f} % of it")
        return overlay
    if kind == "clusters":
        if parts.kind != "clusters":
            return Overlay(legend="This method has no clusters: choose a cluster method (cluster-MAC).")
        maps = cluster_maps(parts)
        best = top[0][0] if top else 0
        # Show the clustering that holds the most contributing cluster.
        name, labels, offset = next(((n, lab, o) for n, lab, o in reversed(maps) if o <= best), maps[0])
        k = int(labels.max()) + 1
        # Numbered: the areas of this clustering that speak for the match (one working against
        # it, "-3 %", read as a contradiction on the picture).
        local = [(i - offset, shares[i], rank) for rank, (i, _l, _c) in enumerate(side.top_parts(len(parts.labels)))
                 if offset <= i < offset + k and shares[i] > 0][:top_k]
        overlay = Overlay(render_labels(labels, size, [j for j, _c, _r in local]))
        h, w = labels.shape
        for n_shown, (j, share, rank) in enumerate(local):
            ys, xs = np.nonzero(labels == j)
            if len(xs):
                overlay.marks.append((((xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h),
                                      TOP_COLORS[n_shown % len(TOP_COLORS)], f"{rank + 1}: {share:.0f}%"))
        more = f" (of {len(maps)} ways of splitting the photo, the one with the top area)" if len(maps) > 1 else ""
        overlay.legend = (f"The photo split into {k} areas of similar content{more}, one colour each; "
                          f"outlined and numbered: the {len(overlay.marks)} that speak most for the match "
                          "(rank: share)")
        return overlay
    return Overlay()


class OverlayView(QGraphicsView):
    """A zoomable, pannable photo with an overlay image and numbered boxes."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setAcceptDrops(False)  # drops go to the main window (new query)
        self.setMinimumSize(200, 150)
        self._photo = QGraphicsPixmapItem()
        self._photo.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay = QGraphicsPixmapItem()
        self._overlay.setZValue(1)
        self.scene().addItem(self._photo)
        self.scene().addItem(self._overlay)
        self._decor: list = []
        self._opacity = 0.6
        self._fitted = True
        self.placeholder = QGraphicsSimpleTextItem("")
        self.scene().addItem(self.placeholder)

    def has_photo(self) -> bool:
        return not self._photo.pixmap().isNull()

    def set_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)
        self.placeholder.setBrush(QBrush(self.palette().text().color()))

    def set_photo(self, pixmap: QPixmap | None) -> None:
        self.placeholder.setText("")
        self._photo.setPixmap(pixmap or QPixmap())
        self.set_overlay(Overlay())
        if pixmap is not None:
            self.scene().setSceneRect(QRectF(pixmap.rect()))
        self.fit()

    def set_opacity(self, value: float) -> None:
        self._opacity = value
        self._overlay.setOpacity(value)

    def set_overlay(self, overlay: Overlay) -> None:
        for item in self._decor:
            self.scene().removeItem(item)
        self._decor = []
        pix = self._photo.pixmap()
        if overlay.image is None or pix.isNull():
            self._overlay.setPixmap(QPixmap())
        else:
            ov = QPixmap.fromImage(overlay.image)
            self._overlay.setPixmap(ov)
            self._overlay.setTransform(QTransform.fromScale(pix.width() / ov.width(), pix.height() / ov.height()))
            self._overlay.setOpacity(self._opacity)
        if pix.isNull():
            return
        W, H = pix.width(), pix.height()
        pen_w = max(2.0, min(W, H) / 150)
        font = QFont()
        font.setPixelSize(max(12, int(min(W, H) / 22)))
        font.setBold(True)
        placed: list[QRectF] = []  # labels already drawn: the next one moves down past them
        for (x1, y1, x2, y2), color, label in overlay.boxes:
            rect = QGraphicsRectItem(QRectF(x1 * W, y1 * H, (x2 - x1) * W, (y2 - y1) * H))
            rect.setPen(QPen(QColor(color), pen_w))
            rect.setZValue(2)
            self.scene().addItem(rect)
            self._decor.append(rect)
            self._decor.append(self._text(label, color, x1 * W + pen_w, y1 * H + pen_w, font, placed=placed))
        for (cx, cy), color, label in overlay.marks:
            self._decor.append(self._text(label, color, cx * W, cy * H, font, centre=True, placed=placed))
        for (ax, ay), (bx, by), color in overlay.lines:
            line = self.scene().addLine(ax * W, ay * H, bx * W, by * H, QPen(QColor(color), max(1.0, pen_w / 2)))
            line.setZValue(2)
            self._decor.append(line)

    def _text(self, label: str, color: str, x: float, y: float, font: QFont, centre: bool = False,
              placed: list[QRectF] | None = None):
        t = QGraphicsSimpleTextItem(label)
        t.setFont(font)
        t.setBrush(QBrush(QColor(color)))
        t.setPen(QPen(QColor(0, 0, 0), 1))
        t.setZValue(3)
        r = t.boundingRect()
        pos = QRectF(x - r.width() / 2 if centre else x, y - r.height() / 2 if centre else y, r.width(), r.height())
        if placed is not None:
            # Overlapping regions put their labels on one spot: shift each down until it is free.
            for _ in range(len(placed) + 1):
                hit = next((p for p in placed if p.intersects(pos)), None)
                if hit is None:
                    break
                pos.moveTop(hit.bottom() + 1)
            placed.append(pos)
        t.setPos(pos.topLeft())
        self.scene().addItem(t)
        return t

    # -- zoom and pan ---------------------------------------------------------------------
    def fit(self) -> None:
        self._fitted = True
        if self.has_photo():
            self.fitInView(self._photo, Qt.AspectRatioMode.KeepAspectRatio)

    def zoom(self, factor: float) -> None:
        self._fitted = False
        self.scale(factor, factor)

    def wheelEvent(self, event) -> None:
        self.zoom(1.25 if event.angleDelta().y() > 0 else 0.8)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif event.key() == Qt.Key.Key_Minus:
            self.zoom(0.8)
        elif event.key() == Qt.Key.Key_0:
            self.fit()
        else:
            super().keyPressEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:
        self.fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()


class LegendLabel(QWidget):
    """The legend of the current overlay: a colour bar (for heat maps) and a sentence."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.bar = QLabel()
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        lay.addWidget(self.bar)
        lay.addWidget(self.text, 1)
        bar = QPixmap(90, 12)
        p = QPainter(bar)
        g = QLinearGradient(0, 0, 90, 0)
        for stop in _HEAT_STOPS:
            g.setColorAt(float(stop[0]), QColor(int(stop[1]), int(stop[2]), int(stop[3])))
        p.fillRect(bar.rect(), g)
        p.end()
        self.bar.setPixmap(bar)
        self.bar.hide()

    def set_overlay(self, overlay: Overlay) -> None:
        self.text.setText(overlay.legend)
        self.bar.setVisible(overlay.gradient)
