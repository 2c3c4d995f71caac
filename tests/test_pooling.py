"""R-MAC region geometry and the pooling functions against hand-computed values."""
import numpy as np
import pytest
import torch

from engine.descriptors.pooling import gem, l2n, mac, regional_max_pool, rmac, rmac_regions, spoc

# Regions of a 3x4 (H x W) map worked out by hand from Tolias et al.'s rule:
# w = min = 3; one extra region along the long side (overlap 0.67 is nearest 0.4 for 2 steps).
# l=1: side 3 at x=0,1; l=2: side 2 at x=0,1,2 and y=0,1; l=3: side 1 everywhere (12).
HAND_REGIONS_3x4 = (
    [(0, 0, 3), (0, 1, 3)]
    + [(y, x, 2) for y in (0, 1) for x in (0, 1, 2)]
    + [(y, x, 1) for y in (0, 1, 2) for x in (0, 1, 2, 3)]
)


def test_rmac_regions_of_a_4_by_3_map_match_hand_computed_grid():
    regions = rmac_regions(3, 4, L=3)
    assert [(r.y, r.x, r.h) for r in regions] == HAND_REGIONS_3x4
    assert all(r.h == r.w for r in regions)


def test_rmac_region_counts_follow_the_standard_grid():
    assert len(rmac_regions(30, 40)) == 20  # 4:3 maps give the 20 regions RAMAC extends to 21
    assert len(rmac_regions(32, 32)) == 14  # square: 1 + 4 + 9
    for r in rmac_regions(17, 29):
        assert 0 <= r.y and r.y + r.h <= 17 and 0 <= r.x and r.x + r.w <= 29


def test_rmac_region_side_is_two_min_over_l_plus_one():
    regions = rmac_regions(24, 36)
    for r in regions:
        assert r.h == int(np.floor(2 * 24 / (r.level + 1)))


def test_tiny_map_falls_back_to_one_global_region():
    regions = rmac_regions(1, 1)
    assert len(regions) >= 1 and all(r.h == 1 for r in regions)


def test_rmac_equals_hand_computed_sum_of_normalised_region_maxima():
    rng = np.random.default_rng(0)
    x = rng.random((1, 2, 3, 4)).astype(np.float32)
    expected = np.zeros(2)
    for y0, x0, s in HAND_REGIONS_3x4:
        v = x[0, :, y0:y0 + s, x0:x0 + s].reshape(2, -1).max(axis=1)
        expected += v / (np.linalg.norm(v) + 1e-6)
    expected /= np.linalg.norm(expected)
    got = rmac(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_mac_spoc_gem_on_a_known_map():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert mac(x).item() == 4.0
    assert spoc(x).item() == 2.5
    assert gem(x, p=1.0).item() == pytest.approx(2.5, rel=1e-5)
    assert gem(x, p=3.0).item() == pytest.approx(((1 + 8 + 27 + 64) / 4) ** (1 / 3), rel=1e-5)
    assert gem(x, p=50.0).item() == pytest.approx(4.0, rel=0.05)  # p -> inf tends to MAC


def test_regional_max_pool_shape_and_values():
    x = torch.arange(24, dtype=torch.float32).view(1, 2, 3, 4)
    regions = rmac_regions(3, 4)
    out = regional_max_pool(x, regions)
    assert out.shape == (1, 20, 2)
    assert out[0, 0, 0].item() == x[0, 0, :3, :3].max().item()


def test_l2n_gives_unit_vectors():
    v = l2n(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(v, torch.tensor([[0.6, 0.8]]), atol=1e-5)
