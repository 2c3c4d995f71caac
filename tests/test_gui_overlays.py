"""Overlay rendering from explanations (no network, no model: hand-made ExplainParts)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from engine.services.explain import SideExplanation  # noqa: E402
from engine.descriptors.methods.base import ExplainParts  # noqa: E402


def side_of(parts: ExplainParts, contributions) -> SideExplanation:
    return SideExplanation("x.jpg", (80, 60), parts, np.asarray(contributions, np.float64), 0.0)


def regions_side() -> SideExplanation:
    masks = np.zeros((3, 6, 8), np.float32)
    masks[0, :, :4] = 1  # left half
    masks[1, :, 4:] = 1  # right half
    masks[2, 2:4, 2:6] = 1  # centre
    parts = ExplainParts("regions", ["left", "right", "centre"], masks, np.eye(3, 4, dtype=np.float32),
                         np.zeros(4, np.float32))
    return side_of(parts, [0.1, 0.5, 0.2])


def test_regions_overlay_outlines_the_top_parts_with_their_share(qtbot):
    from gui.search.overlays import build_overlay

    ov = build_overlay("regions", regions_side(), None, (80, 60), top_k=2)
    assert ov.image is not None and (ov.image.width(), ov.image.height()) == (80, 60)
    assert [label for _b, _c, label in ov.boxes] == ["1: 62%", "2: 25%"]
    assert ov.boxes[0][0] == pytest.approx((0.5, 0.0, 1.0, 1.0))  # "right" is the top part
    # the most contributing region is the brightest (most opaque) part of the tint
    alpha = np.frombuffer(ov.image.constBits(), np.uint8).reshape(60, 80, 4)[..., 3]
    assert alpha[30, 70] > alpha[5, 10]


def test_contribution_map_averages_overlapping_parts():
    cmap = regions_side().contribution_map()
    assert cmap[0, 0] == pytest.approx(0.1) and cmap[0, 7] == pytest.approx(0.5)
    assert cmap[2, 2] == pytest.approx((0.1 + 0.2) / 2)


def test_clusters_overlay_shows_the_clustering_holding_the_top_cluster(qtbot):
    from gui.search.overlays import build_overlay, cluster_maps

    a = np.zeros((4, 4), np.int32)
    a[:, 2:] = 1  # clustering "coarse": 2 clusters
    b = np.arange(16, dtype=np.int32).reshape(4, 4) // 4  # clustering "rows": 4 clusters
    masks = np.stack([(a == k) for k in range(2)] + [(b == k) for k in range(4)]).astype(np.float32)
    parts = ExplainParts("clusters", [f"p{i}" for i in range(6)], masks, np.zeros((6, 3), np.float32),
                         np.zeros(3, np.float32), {"labels coarse": a, "labels rows": b})
    maps = cluster_maps(parts)
    assert [(n, o) for n, _l, o in maps] == [("coarse", 0), ("rows", 2)]
    ov = build_overlay("clusters", side_of(parts, [0.1, 0.0, 0.0, 0.6, 0.2, 0.1]), None, (40, 40))
    assert ov.image is not None and "4 areas" in ov.legend  # the "rows" clustering: it holds the top part
    assert ov.marks[0][2] == "1: 60%" and ov.marks[0][0][1] == pytest.approx(0.375)  # row 2's centre


def test_cam_overlay_needs_a_map_and_regions_overlay_refuses_clusters(qtbot):
    from gui.search.overlays import build_overlay

    assert build_overlay("cam", None, None, (10, 10)).image is None
    cam = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    ov = build_overlay("cam", None, cam, (40, 30))
    assert ov.image is not None and ov.gradient and "CAM" in ov.legend
    assert "“church”" in build_overlay("cam", None, cam, (40, 30), cam_class="church").legend
    parts = ExplainParts("clusters", ["c"], np.ones((1, 2, 2), np.float32), np.ones((1, 2), np.float32),
                         np.zeros(2, np.float32))
    assert build_overlay("regions", side_of(parts, [1.0]), None, (10, 10)).image is None


def cam_method_side() -> SideExplanation:
    """A seddati-cam explanation: two layer parts covering the whole photo, kind "cam", with the
    method's heat map and the mask of its local descriptor (the left half) in ``extras``."""
    masks = np.ones((2, 1, 1), np.float32)
    mask = np.zeros((6, 8), np.float32)
    mask[:, :4] = 1
    extras = {"heat": np.linspace(0, 5, 48, dtype=np.float32).reshape(6, 8), "mask": mask}
    parts = ExplainParts("cam", ["layer stage7", "layer head"], masks, np.eye(2, 3, dtype=np.float32),
                         np.zeros(3, np.float32), extras)
    return side_of(parts, [0.3, 0.1])


def test_why_matched_for_a_cam_method_shows_its_heat_map_and_names_its_layers(qtbot):
    from PySide6.QtGui import QImage

    from gui.search.why_panel import WhyPanel, side_overlay

    img = QImage(80, 60, QImage.Format.Format_RGB32)
    cam = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    ov = side_overlay("none", cam_method_side(), cam, img)
    assert ov.image is not None and ov.gradient and not ov.boxes  # the heat map, no box around everything
    assert "not regions" not in (ov.legend or "") and "0.9" in ov.legend
    # the outline is the method's own mask (left half), not a threshold of the GUI's CAM
    rgba = np.frombuffer(ov.image.constBits(), np.uint8).reshape(60, 80, 4)
    white = np.all(rgba == 255, axis=-1)
    assert white[:, 38:42].any() and not white[10:50, 60:78].any()
    panel = WhyPanel()
    qtbot.addWidget(panel)
    panel._fill_parts(panel.query_parts, cam_method_side())
    rows = [panel.query_parts.topLevelItem(i).text(1) for i in range(panel.query_parts.topLevelItemCount())]
    assert rows == ["layer stage7", "layer head"]  # not "the whole photo" twice
