"""Seddati et al.: Algorithm 1 pooling, early/late fusion, CAM mask, variants, PFA and min-L1 search."""
import math

import numpy as np
import pytest
import torch

from engine.api import get_extractor
from engine.descriptors.methods import METHODS, create_method
from engine.descriptors.methods.seddati import cam_mask, early_fusion, late_fusion, square_sum_rmac
from tests.conftest import make_photo

TINY = {"resolutions": (96, 128, 160), "image_side": 160}


def test_square_sum_rmac_matches_hand_computed_algorithm_1():
    ramp = torch.arange(16, dtype=torch.float32).view(4, 4)
    x = torch.stack([ramp, torch.ones(4, 4)]).unsqueeze(0)  # (1, 2, 4, 4)
    # l=1: k_w=ceil(8/2)=4, k_s=floor(1.6)=1 -> one window: max 15 -> sqrt(15^2)
    # l=2: k_w=ceil(8/3)=3, k_s=1 -> 2x2 windows: maxes 10, 11, 14, 15
    # l=3: k_w=2, k_s=max(1, floor(0.8))=1 -> 3x3 windows: maxes 5,6,7,9,10,11,13,14,15
    c0 = 15 + math.sqrt(10 ** 2 + 11 ** 2 + 14 ** 2 + 15 ** 2) + math.sqrt(
        sum(v * v for v in (5, 6, 7, 9, 10, 11, 13, 14, 15)))
    c1 = 1 + math.sqrt(4) + math.sqrt(9)  # constant map: number of windows per level 1, 4, 9
    expect = np.array([c0, c1]) / math.hypot(c0, c1)
    np.testing.assert_allclose(square_sum_rmac(x)[0].numpy(), expect, rtol=1e-5)


def test_square_sum_rmac_stride_gives_60_percent_overlap_on_a_wide_map():
    # 10x20 map, one hot cell: its channel gets sqrt(#windows containing it) per level; count the
    # windows of kernel k_w and stride floor(0.4 k_w) (60 % overlap) by brute force.
    x = torch.zeros(1, 1, 10, 20)
    x[0, 0, 3, 9] = 1.0
    total = 0.0
    for level in (1, 2, 3):
        kw = max(1, math.ceil(2 * 10 / (level + 1)))
        ks = max(1, math.floor(0.4 * kw))
        n = sum(1 for y in range(0, 10 - kw + 1, ks) for xx in range(0, 20 - kw + 1, ks)
                if y <= 3 < y + kw and xx <= 9 < xx + kw)
        total += math.sqrt(n)
    y = torch.cat([x, torch.zeros_like(x)], 1)
    y[0, 1, 0, 0] = 1.0  # corner cell: in exactly one window per level
    v = square_sum_rmac(y)[0]
    assert (v[0] / v[1]).item() == pytest.approx(total / 3.0, rel=1e-5)


def test_early_fusion_resizes_to_the_largest_map_and_sums():
    maps = [torch.full((1, 3, 4, 6), 1.0), torch.full((1, 3, 6, 8), 2.0), torch.full((1, 3, 8, 11), 3.0)]
    fused = early_fusion(maps)
    assert fused.shape == (1, 3, 8, 11)
    torch.testing.assert_close(fused, torch.full((1, 3, 8, 11), 6.0))
    assert early_fusion(maps, (5, 7)).shape == (1, 3, 5, 7)


def test_late_fusion_is_l2_of_the_sum_of_l2_vectors():
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])
    expect = torch.tensor([[0.6, 1.8]]) / math.hypot(0.6, 1.8)
    torch.testing.assert_close(late_fusion([a, b]), expect, rtol=1e-5, atol=1e-6)


def test_cam_mask_keeps_cells_above_0_9_of_the_mean():
    heat = torch.tensor([[0.0, 1.0], [2.0, 5.0]])  # mean 2 -> threshold 1.8
    np.testing.assert_array_equal(cam_mask(heat).numpy(), [[0, 0], [1, 1]])


def test_ablation_variants_are_registered_with_the_paper_settings():
    cfg = {n: METHODS[n].config for n in ("seddati-sr800", "seddati-mr-late", "seddati-mr", "seddati-mr2", "seddati",
                                          "seddati-cam")}
    assert cfg["seddati-sr800"].resolutions == (800,) and cfg["seddati-sr800"].num_layers == 1
    assert cfg["seddati-mr-late"].fusion == "late" and cfg["seddati-mr"].fusion == "early"
    assert cfg["seddati-mr"].resolutions == (550, 800, 1050) and cfg["seddati-mr"].num_layers == 1
    assert cfg["seddati-mr2"].num_layers == 2 and not cfg["seddati-mr2"].pfa
    assert cfg["seddati"].pfa and not cfg["seddati"].cam
    assert cfg["seddati-cam"].pfa and cfg["seddati-cam"].cam and cfg["seddati-cam"].cam_ratio == 0.9
    assert create_method("seddati").layers() == ("stage7", "head")
    assert create_method("seddati").decode_side() == 1050
    assert create_method("seddati").pfa_target(320 + 1280) == 400


@pytest.fixture(scope="module")
def described():
    ex = get_extractor(device="cpu")
    imgs = [make_photo(i, (200, 150)) for i in range(4)]
    m = create_method("seddati-cam", {**TINY, "pfa_dims": 3})
    return ex, imgs, m, m.describe(imgs, ex)


def test_describe_concatenates_two_l2_layers_then_the_local_descriptor(described):
    ex, _imgs, m, raw = described
    d = ex.backbone.tap_channels["stage7"] + ex.backbone.tap_channels["head"]
    assert raw.shape == (4, 2 * d)
    for half in (raw[:, :d], raw[:, d:]):
        np.testing.assert_allclose(np.linalg.norm(half[:, :320], axis=1), 1, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(half[:, 320:], axis=1), 1, atol=1e-4)
    assert not np.allclose(raw[:, :d], raw[:, d:])  # the CAM mask changed the local descriptor


def test_pfa_is_learned_in_fit_and_applied_to_search_vectors(described):
    _ex, _imgs, m, raw = described
    state = m.fit(raw)
    idx = state["pfa_index"]
    assert len(idx) == 3 and len(set(idx)) == 3
    sv = m.search_vectors(raw, state)
    d = raw.shape[1] // 2
    g = raw[:, :d][:, idx]
    np.testing.assert_allclose(sv, g / np.linalg.norm(g, axis=1, keepdims=True), atol=1e-4)  # l2n_np has an eps
    assert m.search_vectors(raw[0], state).shape == (1, 3)


def test_image_side_scales_the_papers_resolutions_and_1050_keeps_them():
    assert create_method("seddati-cam").sides() == (550, 800, 1050)
    small = create_method("seddati-cam", {"image_side": 160})
    assert small.sides() == (84, 122, 160) and small.decode_side() == 160
    assert create_method("seddati-sr800").sides() == (800,)


def test_pfa_fits_on_at_most_pfa_fit_rows_evenly_spaced_descriptors(monkeypatch):
    from engine.descriptors.methods import seddati

    seen = []
    monkeypatch.setattr(seddati, "PFA_FIT_ROWS", 5)
    monkeypatch.setattr(seddati, "principal_feature_analysis", lambda g, p: seen.append(g.copy()) or np.arange(p))
    m = create_method("seddati", {"pfa_dims": 2})
    raw = np.arange(11 * 4, dtype=np.float32).reshape(11, 4)  # row i starts with 4 i
    m.fit(raw)
    (g,) = seen
    assert g.shape[0] == 5 and list(g[:, 0] // 4) == [0, 2, 5, 8, 10]  # first and last kept
    seen.clear()
    m.fit(raw[:5])
    assert seen[0].shape[0] == 5  # a small collection: every descriptor


def test_cam_rescore_is_minus_min_of_global_and_local_l1(described):
    _ex, _imgs, m, raw = described
    state = m.fit(raw)
    g, l = m.search_vectors(raw, state), m.local_vectors(raw, state)
    expect = -np.minimum(np.abs(g - g[0]).sum(1), np.abs(l - l[0]).sum(1))
    np.testing.assert_allclose(m.rescore(raw[0], raw, state), expect, rtol=1e-6)
    assert create_method("seddati").rescore(raw[0, :1600], raw[:, :1600], None) is None


def test_cam_explain_parts_keep_heat_map_and_mask_and_sum_to_search_vector(described):
    ex, imgs, m, raw = described
    state = m.fit(raw)
    parts = m.explain_parts(imgs[0], ex, state)
    assert parts.kind == "cam" and len(parts.labels) == 2
    np.testing.assert_allclose(parts.vectors.sum(0) + parts.bias, m.search_vectors(raw[:1], state)[0], atol=1e-5)
    heat, mask = parts.extras["heat"], parts.extras["mask"]
    assert heat.shape == mask.shape and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask, (heat > 0.9 * heat.mean()).astype(np.float32))


def test_early_and_late_fusion_variants_give_different_single_layer_descriptors():
    ex = get_extractor(device="cpu")
    img = [make_photo(7, (200, 150))]
    early = create_method("seddati-mr", TINY).describe(img, ex)
    late = create_method("seddati-mr-late", TINY).describe(img, ex)
    assert early.shape == late.shape == (1, 1280)
    np.testing.assert_allclose(np.linalg.norm(early), 1, atol=1e-4)
    assert not np.allclose(early, late)
