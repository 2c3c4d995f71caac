"""RAMAC (Schall et al.): 21 regions, avg+max parts, concat/sum variants, region explanation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.descriptors.methods import METHODS, create_method
from engine.descriptors.methods.ramac import ramac, ramac_regions
from engine.descriptors.postprocess import fit_pca_whitening
from tests.conftest import make_photo
from tests.test_cluster_mac import FakeExtractor


def test_region_count_is_21_for_a_4_by_3_map_with_the_whole_map_last():
    regions = ramac_regions(12, 16, 3)
    assert len(regions) == 21
    last = regions[-1]
    assert (last.y, last.x, last.h, last.w) == (0, 0, 12, 16)
    assert len(ramac_regions(16, 12, 3)) == 21


def test_ramac_matches_a_hand_computation_on_a_tiny_map():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 6, 8)
    regions = ramac_regions(6, 8, 3)

    def l2(v):
        return v / (np.linalg.norm(v) + 1e-6)

    xn = x[0].numpy()
    A = sum(l2(xn[:, r.y:r.y + r.h, r.x:r.x + r.w].mean(axis=(1, 2))) for r in regions)
    M = sum(l2(xn[:, r.y:r.y + r.h, r.x:r.x + r.w].max(axis=(1, 2))) for r in regions)
    np.testing.assert_allclose(ramac(x, 3, "concat")[0].numpy(), l2(np.r_[l2(A), l2(M)]), atol=1e-5)
    np.testing.assert_allclose(ramac(x, 3, "sum")[0].numpy(), l2(l2(A) + l2(M)), atol=1e-5)


def test_concat_variant_has_twice_the_channels_and_sum_variant_the_channels():
    ex = FakeExtractor()
    imgs = [make_photo(i) for i in range(3)]
    cat = create_method("ramac").describe(imgs, ex)
    summed = create_method("ramac-sum").describe(imgs, ex)
    assert cat.shape == (3, 48) and summed.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(cat, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(summed, axis=1), 1.0, atol=1e-5)


def test_unknown_combination_is_rejected():
    with pytest.raises(ValueError, match="combination"):
        ramac(torch.rand(1, 2, 4, 4), 3, "product")


def test_both_variants_are_registered():
    assert METHODS["ramac"].config.combine == "concat"
    assert METHODS["ramac-sum"].config.combine == "sum"


@pytest.mark.parametrize("whiten", [False, True])
def test_explain_parts_are_21_regions_summing_to_the_search_vector(whiten):
    ex = FakeExtractor()
    imgs = [make_photo(i) for i in range(8)]
    m = create_method("ramac")
    raw = m.describe(imgs, ex)
    fit = fit_pca_whitening(raw) if whiten else None
    parts = m.explain_parts(imgs[0], ex, fit)
    sv = m.search_vectors(raw[:1], fit)[0]
    assert parts.kind == "regions" and len(parts.labels) == 21 and parts.masks.shape == (21, 12, 16)
    np.testing.assert_allclose(parts.vectors.sum(0) + parts.bias, sv, atol=1e-4)
    assert parts.masks[-1].min() == 1.0  # the whole map
