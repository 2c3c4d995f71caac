"""ACTNET and DARAC methods: formulas on hand-made maps, trained-state storage, the train CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.descriptors.activations import stream_scale
from engine.descriptors.methods import METHODS, create_method
from engine.descriptors.methods.actnet import ActnetHead, whitening_layer
from engine.descriptors.methods.darac import DaracHead, ramac_aggregate, ramac_region_values
from engine.descriptors.methods.ramac import ramac
from engine.descriptors.postprocess import apply_pca_whitening, fit_pca_whitening
from engine.training.pipeline import TRAINED_KIND, decode_meta, encode_meta
from tests.conftest import make_photo


def _maps(seed, C=(6, 10), hw=(4, 5)):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.rand(C[0], *hw, generator=g) * 3, "b": torch.rand(C[1], *hw, generator=g)}


def test_actnet_variants_are_registered():
    for name in ("actnet-direct", "actnet-sinh", "actnet-exp", "actnet-weibull", "darac"):
        assert name in METHODS
    assert create_method("actnet-direct").config.activation == "identity"


def test_direct_aggregation_stream_is_power_normalised_average_of_scaled_maps():
    head = ActnetHead(("a", "b"), "identity")
    m = _maps(0)
    raw = head.raw([m])[0]
    expected = []
    for t in ("a", "b"):
        x = m[t].unsqueeze(0)
        expected.append(((x / stream_scale(x)).mean(dim=(-2, -1))[0] + 1e-6) ** 0.5)
    assert torch.allclose(raw, torch.cat(expected), atol=1e-6)
    assert raw.shape == (16,)


def test_weibull_stream_differs_from_direct_and_is_finite_on_huge_activations():
    m = _maps(1)
    m["a"][0, 0, 0] = 1e6  # one absurd activation: clamped, no inf/nan
    for kind in ("sinh", "exp", "weibull"):
        raw = ActnetHead(("a", "b"), kind).raw([m])
        assert torch.isfinite(raw).all()
    assert not torch.allclose(ActnetHead(("a", "b"), "weibull").raw([m]), ActnetHead(("a", "b"), "identity").raw([m]))


def test_initial_rate_sets_the_rate_and_a_stored_config_without_it_keeps_the_old_one():
    from engine.descriptors.methods.actnet import ActnetConfig

    assert float(create_method("actnet-sinh", {"initial_rate": 0.25}).head.acts[0].alpha) == pytest.approx(0.25)
    # A collection indexed before the setting existed stored no initial_rate: its photos were
    # described with alpha 1.5, and a config read back from it must describe new ones the same way.
    stored = {k: v for k, v in create_method("actnet-exp").config.to_dict().items() if k != "initial_rate"}
    old = ActnetConfig.from_dict(stored)
    assert old.initial_rate is None and old.to_dict() == stored  # the catalog's config check still passes
    assert create_method("actnet-exp").config.to_dict()["initial_rate"] == 0.25
    head = ActnetHead(("a", "b"), "exp", old.initial_rate)
    assert float(head.acts[0].alpha) == pytest.approx(1.5)
    m = _maps(2)
    assert not torch.allclose(ActnetHead(("a", "b"), "exp", 0.25).raw([m]), head.raw([m]))
    with pytest.raises(ValueError, match="sinh and exp"):
        ActnetHead(("a",), "weibull", 0.5)


def test_whitening_layer_equals_pca_whitening():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(30, 8)).astype(np.float32)
    st = fit_pca_whitening(raw)
    fc = whitening_layer(st)
    with torch.no_grad():
        y = fc(torch.from_numpy(raw)).numpy()
    assert np.allclose(y, apply_pca_whitening(raw, st, normalize=False), atol=1e-4)
    m = create_method("actnet-weibull")
    v = m.search_vectors(raw, st)
    assert np.allclose(v, apply_pca_whitening(raw, st), atol=1e-5)


def test_ramac_region_values_cover_21_regions_of_a_4_by_3_map():
    x = torch.rand(1, 5, 12, 16)
    avg, mx, regions = ramac_region_values(x)
    assert avg.shape == mx.shape == (1, 21, 5) and regions[-1].h == 12 and regions[-1].w == 16
    r = regions[3]
    patch = x[0, :, r.y:r.y + r.h, r.x:r.x + r.w]
    assert torch.allclose(avg[0, 3], patch.mean(dim=(-2, -1))) and torch.allclose(mx[0, 3], patch.amax(dim=(-2, -1)))


def test_untrained_darac_equals_ramac_sum_aggregation():
    x = torch.rand(1, 7, 12, 16)
    m = create_method("darac", {"sides": (64,)})
    got = m.head([m.encode_maps({64: x[0]}, torch.float32)])[0]
    expected = ramac(x, 3, "sum")[0]
    assert torch.allclose(got, expected, atol=1e-6)
    cached = m.head([m.encode_maps({64: x[0]})])[0]  # training caches hold float16 values
    assert torch.allclose(cached, expected, atol=2e-3)


def test_darac_weights_change_the_aggregate_and_get_gradients():
    x = torch.rand(7, 12, 16) * 0.1
    x[0, :, :5] += 3.0  # regions differ: channel 0 lives on the left, channel 1 bottom right
    x[1, 8:, 10:] += 5.0
    m = create_method("darac", {"sides": (64,)})
    item = m.encode_maps({64: x})
    head = DaracHead((64,))
    with torch.no_grad():
        head.scorer.fc2.weight.normal_()
    out = head([item])
    assert not torch.allclose(out, m.head([item]), atol=1e-3)
    out.sum().backward()
    assert head.scorer.fc1.weight.grad is not None and torch.isfinite(head.scorer.fc1.weight.grad).all()
    avg, mx = item["64:avg"].float()[None], item["64:max"].float()[None]
    assert torch.allclose(ramac_aggregate(avg, mx), m.head([item]))


def test_darac_multi_resolution_is_late_fusion_of_per_side_vectors():
    head = DaracHead((32, 64))
    m = create_method("darac", {"sides": (32, 64)})
    item = m.encode_maps({32: torch.rand(5, 6, 8), 64: torch.rand(5, 12, 16)})
    a = DaracHead((32,))([{k: v for k, v in item.items() if k.startswith("32:")}])[0]
    b = DaracHead((64,))([{k: v for k, v in item.items() if k.startswith("64:")}])[0]
    fused = (a + b) / (a + b).norm()
    assert torch.allclose(head([item])[0], fused, atol=1e-5)


def test_trained_state_loads_only_for_matching_method_and_backbone():
    src = create_method("actnet-sinh")
    with torch.no_grad():
        src.head.acts[0].alpha.fill_(2.5)
    backbone = src.config.backbone  # the default backbone the head was trained on
    arrays = {**src.head_arrays(), "meta": encode_meta({"method": "actnet-sinh", "backbone": backbone})}
    ok = create_method("actnet-sinh")
    ok.set_stored_state(TRAINED_KIND, arrays)
    assert float(ok.head.acts[0].alpha.detach()) == pytest.approx(2.5) and ok.trained_meta["method"] == "actnet-sinh"
    wrong_backbone = {**arrays, "meta": encode_meta({"method": "actnet-sinh", "backbone": "resnet50"})}
    other = create_method("actnet-sinh")
    other.set_stored_state(TRAINED_KIND, wrong_backbone)
    initial = float(create_method("actnet-sinh").head.acts[0].alpha.detach())  # untrained, not 2.5
    assert float(other.head.acts[0].alpha.detach()) == pytest.approx(initial) and other.trained_meta is None
    wrong_method = create_method("actnet-exp")
    wrong_method.set_stored_state(TRAINED_KIND, arrays)
    assert float(wrong_method.head.acts[0].alpha.detach()) == pytest.approx(initial)
    assert decode_meta(arrays)["backbone"] == backbone
    # the same network with the other padding is another backbone: its heads are not loaded
    other_padding = create_method("actnet-sinh", {"backbone": "efficientnet-lite0"})
    other_padding.set_stored_state(TRAINED_KIND, arrays)
    assert other_padding.trained_meta is None


def test_describe_on_real_backbone_gives_two_streams():
    from engine.api import get_extractor

    m = create_method("actnet-weibull", {"image_side": 96})
    raw = m.describe([make_photo(0, (128, 96)), make_photo(1, (128, 96))], get_extractor("efficientnet-lite0", "cpu"))
    assert raw.shape == (2, 320 + 1280) and np.isfinite(raw).all() and (raw > 0).all()


def test_train_cli_self_supervised_stores_weights_and_reindexes(tmp_path, photo_folder):
    from engine.api import Collection
    from engine.cli import main as cli_main

    cat = tmp_path / "cat"
    col = Collection.open(cat, device="cpu")
    col.add_folder(photo_folder)
    col.index("actnet-weibull", overrides={"image_side": 96})
    col.close()
    rc = cli_main(["train", "--collection", str(cat), "--method", "actnet-weibull", "--epochs", "2",
                   "--self-supervised", "--views", "1", "--force", "--device", "cpu", "--lr", "0.01"])
    assert rc == 0
    col = Collection.open(cat, device="cpu")
    state = col.catalog.load_state("actnet-weibull", TRAINED_KIND)
    assert state is not None
    meta = decode_meta(state[0])
    assert meta["mode"] == "self-supervised" and meta["epochs_done"] == 2 and len(meta["data_hash"]) == 32
    assert col.method("actnet-weibull").config.image_side == 96  # the collection's settings survive
    assert col.method("actnet-weibull").trained_meta is not None
    assert dict((n, c) for n, c, _g in col.catalog.methods())["actnet-weibull"] == 12
    assert len(col.search(next(photo_folder.glob("*.jpg")), "actnet-weibull", top=3)) == 3


def test_whitening_is_fitted_only_on_collections_with_enough_photos():
    rng = np.random.default_rng(1)
    small = rng.random((20, 48)).astype(np.float32)
    assert create_method("actnet-weibull").fit(small) is None  # fewer photos than dims
    st = create_method("actnet-weibull", {"whiten_min_images": 10}).fit(small)
    assert st is not None and st["proj"].shape[1] == 48
    assert create_method("actnet-weibull").fit(np.vstack([small, small + 0.5, small * 2])) is not None
    assert create_method("darac", {"whiten_min_images": 10}).fit(small) is not None
    assert create_method("actnet-weibull", {"whiten": False, "whiten_min_images": 10}).fit(small) is None


def test_train_cli_on_labelled_folder_groups_reports_held_out_map(tmp_path, capsys):
    import json

    from engine.api import Collection
    from engine.cli import main as cli_main

    groups = tmp_path / "groups"
    for g in range(8):
        (groups / f"g{g}").mkdir(parents=True)
        base = make_photo(100 + g, (128, 96))
        base.save(groups / f"g{g}" / "a.jpg")
        base.crop((6, 4, 122, 92)).resize((128, 96)).save(groups / f"g{g}" / "b.jpg", quality=70)
    cat = tmp_path / "cat"
    col = Collection.open(cat, device="cpu")
    col.catalog.ensure_method("actnet-direct", create_method("actnet-direct", {"image_side": 96}).config.to_dict())
    col.close()
    rc = cli_main(["train", str(groups), "--collection", str(cat), "--method", "actnet-direct", "--epochs", "2",
                   "--json", "--no-reindex", "--device", "cpu"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "labelled" and report["images"] == 16 and report["epochs_done"] == 2
    assert 0.0 < report["val_before"] <= 1.0 and 0.0 < report["val_after"] <= 1.0
    stored = Collection.open(cat, device="cpu").catalog.load_state("actnet-direct", TRAINED_KIND)
    assert (stored is not None) == report["kept"]
