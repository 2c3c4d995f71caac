"""Multi-scale global descriptors, the activation cap, the whole-map region and crop scaling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_photo
from engine.descriptors import pooling
from engine.api import get_extractor
from engine.descriptors.methods import create_method


def test_multiscale_mean_averages_l2_normalised_vectors_then_normalises():
    a = pooling.l2n(torch.tensor([[3.0, 4.0, 0.0]]))
    b = pooling.l2n(torch.tensor([[0.0, 0.0, 2.0]]))
    got = pooling.multiscale_mean(torch.stack([a, b]))
    want = pooling.l2n((a + b) / 2)
    assert torch.allclose(got, want)
    # one scale is the vector itself; p = 3 is the generalised mean of the two
    assert torch.allclose(pooling.multiscale_mean(a[None]), a)
    gm = pooling.multiscale_mean(torch.stack([a, b]), p=3.0)
    assert torch.allclose(gm, pooling.l2n(((a ** 3 + b ** 3) / 2) ** (1 / 3)))


def test_rmac_whole_map_adds_the_global_max_as_one_more_region():
    x = torch.rand(1, 4, 6, 8)
    regions = pooling.rmac_regions_with_whole(6, 8, 3, whole_map=True)
    assert len(regions) == len(pooling.rmac_regions(6, 8, 3)) + 1
    assert (regions[-1].h, regions[-1].w) == (6, 8)
    plain = pooling.l2n(pooling.l2n(pooling.regional_max_pool(x, pooling.rmac_regions(6, 8, 3))).sum(1))
    with_whole = pooling.l2n(pooling.l2n(pooling.regional_max_pool(x, pooling.rmac_regions(6, 8, 3))).sum(1)
                             + pooling.l2n(pooling.mac(x)))
    assert torch.allclose(pooling.rmac(x, 3), plain)
    assert torch.allclose(pooling.rmac(x, 3, whole_map=True), with_whole)


class RecordingExtractor:
    """Wraps the real extractor and records the input sides it was asked for."""

    def __init__(self, inner):
        self.inner, self.sides = inner, []
        self.backbone = inner.backbone

    def feature_maps(self, images, side, taps):
        self.sides.append(side)
        return self.inner.feature_maps(images, side, taps)


@pytest.fixture(scope="module")
def extractor():
    return get_extractor()


def test_multiscale_rmac_describes_each_scale_and_averages(extractor):
    img = make_photo(3, (320, 240))
    ms = create_method("rmac", {"image_side": 128, "scales": (1.0, 0.5)})
    rec = RecordingExtractor(extractor)
    got = ms.describe([img], rec)[0]
    assert rec.sides == [128, 64]
    singles = [create_method("rmac", {"image_side": s}).describe([img], extractor)[0] for s in (128, 64)]
    want = pooling.multiscale_mean(torch.from_numpy(np.stack(singles))[:, None])[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert ms.decode_side() == 128
    assert create_method("rmac", {"image_side": 100, "scales": (1.5, 1.0)}).decode_side() == 150


def test_activation_cap_clamps_the_map_before_pooling(extractor):
    img = make_photo(4, (320, 240))
    capped = create_method("mac", {"image_side": 128, "activation_cap": 0.5}).describe([img], extractor)[0]
    tap = extractor.backbone.tap_names[-1]
    x = extractor.feature_maps([img], 128, [tap])[0][tap]
    want = pooling.l2n(x.clamp(max=0.5).amax(dim=(-2, -1)))
    np.testing.assert_allclose(capped, want.numpy(), atol=1e-6)
    assert float(x.max()) > 0.5  # the cap really changed something


def test_explain_parts_sum_to_the_search_vector_for_multiscale_whole_map_and_cap(extractor):
    m = create_method("rmac", {"image_side": 128, "scales": (1.0, 0.7071), "whole_map": True, "activation_cap": 6.0})
    img = make_photo(5, (320, 240))
    parts = m.explain_parts(img, extractor, None)
    target = m.search_vectors(m.describe([img], extractor), None)[0]
    np.testing.assert_allclose(parts.vectors.sum(0) + parts.bias, target, atol=1e-5)
    n_regions = len(pooling.rmac_regions_with_whole(*extractor.feature_maps([img], 128, ["head"])[0]["head"].shape[-2:], 3, True))
    assert len(parts.labels) == parts.masks.shape[0] == len(parts.vectors) > n_regions  # both scales' regions
    assert any("whole picture" in label for label in parts.labels)
    assert "channel" not in " ".join(parts.labels)


def test_crop_at_photo_scale_keeps_the_box_at_the_photo_s_scale(extractor):
    photo = make_photo(6, (400, 300))
    box = (100, 50, 300, 200)  # 200 x 150 of a 400 px photo
    rec = RecordingExtractor(extractor)
    native = create_method("rmac", {"image_side": 200, "crop_at_photo_scale": True})
    native.describe_query(photo, rec, box=box)
    assert rec.sides == [100]  # the photo is halved to 200 px, so is the box
    rec.sides.clear()
    enlarged = create_method("rmac", {"image_side": 200})
    enlarged.describe_query(photo, rec, box=box)
    assert rec.sides == [200]
