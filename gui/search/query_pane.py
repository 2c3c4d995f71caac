"""The query side of the Search tab: the query picture with its overlay, the overlay choice,
its opacity and its legend."""
from __future__ import annotations

import os
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from .overlays import OVERLAY_KINDS, LegendLabel, Overlay, OverlayView
from .why_panel import WhyData, side_overlay

PLACEHOLDER = "Drop a photo here, paste one (Ctrl+V)\nor open one (Ctrl+O) to find similar photos."


def overlay_availability(caps: set[str] | None, stated: bool, learned_kind: str | None) -> Callable[[str], bool]:
    """Which overlays a method can show: ``caps`` are its capabilities (None: unknown, all
    offered); the parts it explains with are ``stated`` by the registry, else learned from its
    first explanation (``learned_kind``), else unknown (regions and clusters both offered)."""
    if stated:
        parts = {"regions" if {"regions", "layers"} & caps else "", "clusters" if "clusters" in caps else ""}
    elif learned_kind is not None:
        parts = {"regions" if learned_kind in ("regions", "layers") else "",
                 "clusters" if learned_kind == "clusters" else ""}
    else:
        parts = {"regions", "clusters"}

    def overlay_ok(kind: str) -> bool:
        if kind == "none" or caps is None:
            return True
        if kind == "cam":
            return "cam" in caps
        return kind in parts

    return overlay_ok


class QueryPane(QWidget):
    """Caption, query picture (zoomable, with the chosen overlay), overlay controls, legend."""

    overlay_changed = Signal(str)
    opacity_changed = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = OverlayView()
        self.view.set_placeholder(PLACEHOLDER)
        self.caption = QLabel("No query yet")
        self.caption.setWordWrap(True)
        self.overlay_combo = QComboBox()
        for k in OVERLAY_KINDS:
            self.overlay_combo.addItem(k.capitalize() if k != "cam" else "CAM", k)
        self.overlay_combo.setToolTip("Overlay on the query (and in Why matched): R-MAC regions, clusters or CAM")
        self.overlay_combo.currentIndexChanged.connect(lambda _i: self.overlay_changed.emit(self.overlay_kind()))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.opacity_slider.setToolTip("Overlay opacity")
        self.opacity_slider.setMinimumWidth(80)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self.legend = LegendLabel()
        self.current_overlay = Overlay()
        row = QHBoxLayout()
        row.addWidget(QLabel("Overlay"))
        row.addWidget(self.overlay_combo)
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity_slider, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.caption)
        lay.addWidget(self.view, 1)
        lay.addLayout(row)
        lay.addWidget(self.legend)

    def _on_opacity(self, value: int) -> None:
        self.view.set_opacity(value / 100)
        self.opacity_changed.emit(value / 100)

    # -- overlay choice ---------------------------------------------------------------------
    def overlay_kind(self) -> str:
        return self.overlay_combo.currentData() or "none"

    def set_overlay(self, kind: str) -> None:
        i = self.overlay_combo.findData(kind)
        if i < 0:
            raise ValueError(f"unknown overlay {kind!r}; choose one of {OVERLAY_KINDS}")
        self.overlay_combo.setCurrentIndex(i)

    def restore(self, kind: str, opacity: int) -> None:
        """The saved overlay and opacity (an overlay this version does not know: the first)."""
        self.opacity_slider.setValue(opacity)
        self.overlay_combo.setCurrentIndex(max(0, self.overlay_combo.findData(kind)))

    def offer_overlays(self, overlay_ok: Callable[[str], bool], method: str | None) -> None:
        """Enable the overlays the method can show; switch away from one it cannot."""
        model = self.overlay_combo.model()
        for i in range(self.overlay_combo.count()):
            k = self.overlay_combo.itemData(i)
            ok = overlay_ok(k)
            model.item(i).setEnabled(ok)
            model.item(i).setToolTip("" if ok else f"{method} has no {k} to show")
        if not overlay_ok(self.overlay_kind()):
            self.set_overlay(next(k for k in ("regions", "clusters", "none") if overlay_ok(k)))

    # -- content ----------------------------------------------------------------------------
    def set_caption(self, label: str, state: str = "") -> None:
        """The query's name (the full path in the tooltip: long paths were cut off)."""
        name = os.path.basename(label) if os.path.isabs(label) else label
        self.caption.setText(f"Query: {name}" + (f" {state}" if state else ""))
        self.caption.setToolTip(label)

    def reset(self) -> None:
        """No query: the caption, the picture and its placeholder as at start-up."""
        self.caption.setText("No query yet")
        self.caption.setToolTip("")
        self.view.set_photo(None)
        self.view.set_placeholder(PLACEHOLDER)

    def show_failed(self, placeholder: str) -> None:
        self.view.set_photo(None)
        self.view.set_placeholder(placeholder)

    def show_photo(self, image: QImage) -> None:
        self.view.set_photo(QPixmap.fromImage(image))

    def say(self, text: str) -> None:
        """A legend line while there is no overlay (an explanation on its way, or why none)."""
        self.legend.set_overlay(Overlay(legend=text))

    def render(self, why: WhyData | None, query_image: QImage | None) -> None:
        """The chosen overlay of the current explanation on the query (or the reason for none)."""
        kind = self.overlay_kind()
        if why is None or query_image is None:
            self.view.set_overlay(Overlay())
            self.say("" if kind == "none" else "The overlay appears once a result is chosen.")
            return
        if kind == "none":
            ov = Overlay()
        else:
            ov = side_overlay(kind, why.explanation.query, why.query_cam, why.query_image, outline_top=False,
                              cam_class=why.query_class)
            if kind == "regions" and why.explanation.kind == "regions":
                ov.legend += f", for result {os.path.basename(why.explanation.result.path)}"
        self.current_overlay = ov
        self.view.set_overlay(ov)
        self.legend.set_overlay(ov)
