"""The "Why matched" panel: query and result side by side with what carries their similarity.

Everything shown comes from the engine (computed in a worker): the calibrated similarity
(``engine.api.score_calibration``), the parts of both photos that speak most for the match
(:func:`engine.services.explain.explain_match`: regions or areas, described by where they are in the
photo, never by channel numbers) and, where the photos share local features, the matched
points that agree on one geometry (:meth:`engine.api.Collection.matched_keypoints`), drawn as
lines between the two photos.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QGraphicsScene, QGraphicsView, QHBoxLayout, QHeaderView, QLabel, QSplitter,
                               QTabWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from .overlays import (LAYER_PART_KINDS, PALETTE, TOP_COLORS, LegendLabel, Overlay, OverlayView, build_overlay,
                       cam_legend, method_cam, part_shares)

TOP_K = 5
TABLE_ROWS = 8  # parts listed per photo; the rest are summed in one line
MAX_LINES = 80  # matched point pairs drawn (all of them hide the photos)


@dataclass
class WhyData:
    """A computed explanation with the two images, their CAMs and the classes those map
    (None when the backbone has no classifier)."""

    explanation: object  # engine.services.explain.Explanation
    query_image: QImage
    result_image: QImage
    query_cam: np.ndarray | None
    result_cam: np.ndarray | None
    query_class: str | None = None
    result_class: str | None = None
    similarity: str | None = None  # calibrated, e.g. "87 %" (None: no calibration yet)
    keypoints: object | None = None  # engine.api.KeypointMatches, or None when not computed


def overlay_size(img: QImage, longest: int = 640) -> tuple[int, int]:
    s = min(1.0, longest / max(1, img.width(), img.height()))
    return max(1, round(img.width() * s)), max(1, round(img.height() * s))


def where_in_photo(mask: np.ndarray) -> str:
    """Plain words for where a part lies and how much of the photo it covers:
    "upper left, a quarter of the photo"."""
    m = np.asarray(mask) > 0.5
    if not m.any():
        return "nowhere"
    h, w = m.shape
    ys, xs = np.nonzero(m)
    cover = m.mean()
    if cover > 0.85:
        return "the whole photo"
    cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
    col = "left" if cx < 0.38 else "right" if cx > 0.62 else ""
    row = "upper" if cy < 0.38 else "lower" if cy > 0.62 else ""
    where = f"{row} {col}".strip() or "centre"
    if row and not col:
        where = {"upper": "top", "lower": "bottom"}[row]
    size = ("most of the photo" if cover > 0.5 else "a third of it" if cover > 0.28 else
            "a quarter of it" if cover > 0.18 else "a small part" if cover > 0.06 else "a detail")
    return f"{where}, {size}"


def side_overlay(kind: str, side, cam, img: QImage, outline_top: bool = True, cam_class: str | None = None) -> Overlay:
    """Overlay of ``kind`` on one side; with ``outline_top`` the top parts stay outlined
    whatever the kind (the why-matched view), else a CAM overlay shows the heat map alone."""
    size = overlay_size(img)
    parts_kind = side.parts.kind if side is not None else "image"
    if kind == "none":
        # What the method itself looked at: a CAM method's local descriptor is the CAM-masked
        # photo, so its heat map (and mask outline) is the picture of "why".
        kind = {"clusters": "clusters", "cam": "cam"}.get(parts_kind, "regions")
    ov = build_overlay(kind, side, cam, size, TOP_K, cam_class=cam_class)
    # Layer parts cover the whole photo: a box around all of it would say nothing.
    if outline_top and kind == "cam" and side is not None and parts_kind not in ("clusters", *LAYER_PART_KINDS):
        ov.boxes = build_overlay("regions", side, None, size, TOP_K).boxes
    return ov


class MatchView(QGraphicsView):
    """Query and result side by side at one height, with lines between matched points."""

    HEIGHT = 600.0

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setMinimumSize(200, 150)
        self.lines = 0

    def set_pair(self, query: QImage | None, result: QImage | None, matches) -> None:
        sc = self.scene()
        sc.clear()
        self.lines = 0
        if query is None or result is None:
            return
        qs, rs = self.HEIGHT / max(1, query.height()), self.HEIGHT / max(1, result.height())
        qw = query.width() * qs
        gap = 24.0
        sc.addPixmap(QPixmap.fromImage(query)).setScale(qs)
        item = sc.addPixmap(QPixmap.fromImage(result))
        item.setScale(rs)
        item.setPos(qw + gap, 0)
        if matches is not None and len(matches.query_xy):
            qx = query.width() / max(1, matches.query_size[0]) * qs
            qy = query.height() / max(1, matches.query_size[1]) * qs
            rx = result.width() / max(1, matches.result_size[0]) * rs
            ry = result.height() / max(1, matches.result_size[1]) * rs
            step = max(1, len(matches.query_xy) // MAX_LINES)
            for k in range(0, len(matches.query_xy), step):
                (ax, ay), (bx, by) = matches.query_xy[k], matches.result_xy[k]
                c = PALETTE[(k // step) % len(PALETTE)]
                sc.addLine(ax * qx, ay * qy, qw + gap + bx * rx, by * ry, QPen(QColor(int(c[0]), int(c[1]), int(c[2])), 1.5))
                self.lines += 1
        sc.setSceneRect(QRectF(0, 0, qw + gap + result.width() * rs, self.HEIGHT))
        self.fitInView(sc.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)


class WhyPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.data: WhyData | None = None
        self.kind = "regions"
        self.header = QLabel("Select a result to see why it matched.")
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.query_view = OverlayView()
        self.result_view = OverlayView()
        self.query_caption = QLabel("Query")
        self.result_caption = QLabel("Result")
        for c in (self.query_caption, self.result_caption):
            c.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            c.setWordWrap(True)
        self.legend = LegendLabel()
        self.query_parts = self._tree(["#", "where in the query", "share"])
        self.result_parts = self._tree(["#", "where in the result", "share"])
        self.match_view = MatchView()

        pics = QSplitter(Qt.Orientation.Horizontal)
        for caption, view in ((self.query_caption, self.query_view), (self.result_caption, self.result_view)):
            box = QWidget()
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(caption)
            lay.addWidget(view, 1)
            pics.addWidget(box)
        self.views = QTabWidget()
        self.views.addTab(pics, "Parts")
        self.views.addTab(self.match_view, "Matched points")
        lists = QWidget()
        ll = QHBoxLayout(lists)
        ll.setContentsMargins(0, 0, 0, 0)
        for t in (self.query_parts, self.result_parts):
            ll.addWidget(t)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.views)
        split.addWidget(lists)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.header)
        lay.addWidget(self.legend)
        lay.addWidget(split, 1)

    @staticmethod
    def _tree(headers: list[str]) -> QTreeWidget:
        t = QTreeWidget()
        t.setHeaderLabels(headers)
        t.setRootIsDecorated(False)
        t.setAlternatingRowColors(True)
        h = t.header()
        h.setStretchLastSection(False)  # the share column must not be cut ("0.0490 (5.")
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        t.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        return t

    def clear(self, message: str = "Select a result to see why it matched.") -> None:
        self.data = None
        self.header.setText(message)
        self.legend.set_overlay(Overlay())
        for v in (self.query_view, self.result_view):
            v.set_photo(None)
        self.match_view.set_pair(None, None, None)
        for t in (self.query_parts, self.result_parts):
            t.clear()

    def set_kind(self, kind: str) -> None:
        self.kind = kind
        self._render()

    def set_opacity(self, value: float) -> None:
        self.query_view.set_opacity(value)
        self.result_view.set_opacity(value)

    def set_data(self, data: WhyData) -> None:
        self.data = data
        e = data.explanation
        self.query_view.set_photo(QPixmap.fromImage(data.query_image))
        self.result_view.set_photo(QPixmap.fromImage(data.result_image))
        self.query_caption.setText(f"Query: {os.path.basename(e.query.path) or '(pasted image)'}")
        self.result_caption.setText(f"Result: {os.path.basename(e.result.path)}")
        self.query_caption.setToolTip(e.query.path)
        self.result_caption.setToolTip(e.result.path)
        self.header.setText(self.summary(data))
        self._fill_parts(self.query_parts, e.query)
        self._fill_parts(self.result_parts, e.result)
        self.match_view.set_pair(data.query_image, data.result_image, data.keypoints)
        kp = data.keypoints
        self.views.setTabText(1, f"Matched points ({len(kp.query_xy)})" if kp is not None else "Matched points")
        self.views.setTabEnabled(1, kp is not None and len(kp.query_xy) > 0)
        self._render()

    @staticmethod
    def summary(data: WhyData) -> str:
        """The header: how similar, and what carries it, in plain words."""
        e = data.explanation
        sim = f"{data.similarity} similar" if data.similarity else "Similar"
        shown = e.search_score if e.search_score is not None else e.score
        text = f"{sim} (score {shown:.3f} with {e.method})."
        side = e.query
        n = len(side.parts.labels)
        if n > 1:
            shares = part_shares(side)
            top = np.sort(shares)[::-1][:3]
            what = ("network layers" if side.parts.kind in LAYER_PART_KINDS
                    else "areas" if side.parts.kind == "clusters" else "regions")
            k = int((top > 0).sum())
            carried, even = float(top[:k].sum()), 100 * k / n
            if k and carried < 1.5 * even:
                text += (f" The match is spread over the whole photo: no part stands out (the {k} {what} "
                         f"that count most carry {carried:.0f} % of it, about their even share of {even:.0f} %).")
            elif k:
                text += (f" Most of it comes from a few parts: the {k} {what} outlined first carry {carried:.0f} % "
                         f"of what speaks for the match ({n} {what}; an even spread would give them {even:.0f} %).")
        kp = data.keypoints
        if kp is not None and kp.verified:
            text += (f" {len(kp.query_xy)} local details of the two photos match and agree on one geometry: "
                     "very likely the same object or place (see Matched points).")
        elif kp is not None:
            text += " Few local details match geometrically: the photos look alike rather than show the same thing."
        return text

    def _fill_parts(self, tree: QTreeWidget, side) -> None:
        tree.clear()
        shares = part_shares(side)
        order = np.argsort(-side.contributions, kind="stable")
        layers = side.parts.kind in LAYER_PART_KINDS
        what = "layer" if layers else "area" if side.parts.kind == "clusters" else "region"
        for rank, i in enumerate(order[:TABLE_ROWS]):
            where = where_in_photo(side.parts.masks[i])
            if layers:  # a layer covers the whole photo: its name says which
                where = side.parts.labels[i]
            item = QTreeWidgetItem([str(rank + 1), where, f"{shares[i]:.0f} %"])
            item.setToolTip(1, f"{what} '{side.parts.labels[i]}'")
            if rank < TOP_K:
                item.setForeground(0, QBrush(QColor(TOP_COLORS[rank % len(TOP_COLORS)])))
            tree.addTopLevelItem(item)
        rest = order[TABLE_ROWS:]
        if len(rest):
            tree.addTopLevelItem(QTreeWidgetItem(["", f"{len(rest)} other {what}s", f"{shares[rest].sum():.0f} %"]))

    def _render(self) -> None:
        d = self.data
        if d is None:
            return
        e = d.explanation
        qov = side_overlay(self.kind, e.query, d.query_cam, d.query_image, cam_class=d.query_class)
        rov = side_overlay(self.kind, e.result, d.result_cam, d.result_image, cam_class=d.result_class)
        self.query_view.set_overlay(qov)
        self.result_view.set_overlay(rov)
        if self.kind == "cam" and qov.image is not None and method_cam(e.query) is None:
            qov = dataclasses.replace(qov, legend=cam_legend(d.query_class, d.result_class))
        self.legend.set_overlay(qov)
