"""The "Why matched" panel: query and result side by side with their top contributing parts.

Everything shown comes from :func:`engine.explain.explain_match` (computed in a worker):
per-part contributions of both images (they sum to the score, which the header checks
and states) and the channels with the largest ``q_c · r_c``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPixmap
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
                               QWidget)

from .overlays import TOP_COLORS, LegendLabel, Overlay, OverlayView, build_overlay, cam_legend

TOP_K = 5


@dataclass
class WhyData:
    """A computed explanation with the two images, their CAMs and the classes those map
    (None when the backbone has no classifier)."""

    explanation: object  # engine.explain.Explanation
    query_image: QImage
    result_image: QImage
    query_cam: np.ndarray | None
    result_cam: np.ndarray | None
    query_class: str | None = None
    result_class: str | None = None


def overlay_size(img: QImage, longest: int = 640) -> tuple[int, int]:
    s = min(1.0, longest / max(1, img.width(), img.height()))
    return max(1, round(img.width() * s)), max(1, round(img.height() * s))


def side_overlay(kind: str, side, cam, img: QImage, outline_top: bool = True, cam_class: str | None = None) -> Overlay:
    """Overlay of ``kind`` on one side; with ``outline_top`` the top parts stay outlined
    whatever the kind (the why-matched view), else a CAM overlay shows the heat map alone."""
    size = overlay_size(img)
    parts_kind = side.parts.kind if side is not None else "image"
    if kind == "none":
        kind = "clusters" if parts_kind == "clusters" else "regions"
    ov = build_overlay(kind, side, cam, size, TOP_K, cam_class=cam_class)
    if outline_top and kind == "cam" and side is not None and parts_kind != "clusters":
        ov.boxes = build_overlay("regions", side, None, size, TOP_K).boxes
    return ov


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
        self.query_parts = self._tree(["#", "query part", "share"])
        self.result_parts = self._tree(["#", "result part", "share"])
        self.channels = self._tree(["channel", "q·r", "share"])

        pics = QSplitter(Qt.Orientation.Horizontal)
        for caption, view in ((self.query_caption, self.query_view), (self.result_caption, self.result_view)):
            box = QWidget()
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(caption)
            lay.addWidget(view, 1)
            pics.addWidget(box)
        lists = QWidget()
        ll = QHBoxLayout(lists)
        ll.setContentsMargins(0, 0, 0, 0)
        for t in (self.query_parts, self.result_parts, self.channels):
            ll.addWidget(t)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(pics)
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
        t.setColumnWidth(0, 34 if headers[0] == "#" else 60)
        t.setColumnWidth(1, 130 if headers[0] == "#" else 60)
        t.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        return t

    def clear(self, message: str = "Select a result to see why it matched.") -> None:
        self.data = None
        self.header.setText(message)
        for v in (self.query_view, self.result_view):
            v.set_photo(None)
        for t in (self.query_parts, self.result_parts, self.channels):
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
        self.query_caption.setText(f"Query: {e.query.path or '(pasted image)'}")
        self.result_caption.setText(f"Result: {e.result.path}")
        qsum = float(e.query.contributions.sum() + e.query.bias_contribution)
        text = (f"Method {e.method}: score {e.score:.4f} = sum of the {len(e.query.parts.labels)} "
                f"{e.kind if e.kind != 'image' else 'part'} shares below ({qsum:.4f}")
        if abs(e.query.bias_contribution) > 1e-6:
            text += f", including {e.query.bias_contribution:+.4f} from the whitening offset"
        text += ")."
        if e.search_score is not None and abs(e.search_score - e.score) > 1e-3:
            text += (f" The result list shows {e.search_score:.4f}: this method re-scores exactly; "
                     f"the explained score is its inner-product proxy.")
        self.header.setText(text)
        self._fill_parts(self.query_parts, e.query, e.score)
        self._fill_parts(self.result_parts, e.result, e.score)
        self.channels.clear()
        for c, v in e.top_channels:
            self.channels.addTopLevelItem(QTreeWidgetItem([str(c), f"{v:.4f}", self._pct(v, e.score)]))
        self._render()

    @staticmethod
    def _pct(v: float, total: float) -> str:
        return f"{100 * v / total:.1f}%" if total else "-"

    def _fill_parts(self, tree: QTreeWidget, side, score: float) -> None:
        tree.clear()
        order = np.argsort(-side.contributions, kind="stable")
        for rank, i in enumerate(order):
            v = float(side.contributions[i])
            item = QTreeWidgetItem([str(rank + 1), side.parts.labels[i], f"{v:.4f} ({self._pct(v, score)})"])
            if rank < TOP_K:
                item.setForeground(0, QBrush(QColor(TOP_COLORS[rank % len(TOP_COLORS)])))
            tree.addTopLevelItem(item)
        if abs(side.bias_contribution) > 1e-6:
            tree.addTopLevelItem(QTreeWidgetItem(["", "whitening offset", f"{side.bias_contribution:.4f}"]))

    def _render(self) -> None:
        d = self.data
        if d is None:
            return
        e = d.explanation
        qov = side_overlay(self.kind, e.query, d.query_cam, d.query_image, cam_class=d.query_class)
        rov = side_overlay(self.kind, e.result, d.result_cam, d.result_image, cam_class=d.result_class)
        self.query_view.set_overlay(qov)
        self.result_view.set_overlay(rov)
        if self.kind == "cam" and qov.image is not None:
            qov = dataclasses.replace(qov, legend=cam_legend(d.query_class, d.result_class))
        self.legend.set_overlay(qov)

