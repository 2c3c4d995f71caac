"""Backbones: the embedded EfficientNet-Lite0 loads and classifies; taps; missing weights."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.nn.backbones import BACKBONES, get_backbone
from engine.errors import WeightsMissingError
from engine.nn.features import FeatureExtractor, image_to_tensor


@pytest.fixture(scope="module")
def lite0():
    return get_backbone("efficientnet-lite0")


def test_efficientnet_lite0_taps_have_documented_channels_and_are_non_negative(lite0):
    x = torch.rand(1, 3, 224, 224)
    taps = lite0.forward_taps(lite0.normalize(x), list(lite0.tap_names))
    assert {k: v.shape[1] for k, v in taps.items()} == lite0.tap_channels
    assert taps["head"].shape[-2:] == (7, 7)
    assert all((v >= 0).all() for v in taps.values())


def _top_classes(model, img, k=5):
    x = image_to_tensor(img.resize((224, 224)))[None]
    with torch.no_grad():
        return model.classify(model.normalize(x)).softmax(1)[0].topk(k).indices.tolist()


def test_efficientnet_lite0_recognises_a_real_photo(lite0):
    from tests.conftest import shared_dataset

    root = shared_dataset("oxford_dev")
    img = Image.open(root / "images" / "worcester_000064.jpg").convert("RGB")  # a pair of sandals
    from torchvision.models import ResNet50_Weights

    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    top = [names[i] for i in _top_classes(lite0, img, 1)]
    assert top == ["sandal"]


def test_efficientnet_lite0_calls_a_drawn_checkerboard_a_crossword_or_grid(lite0):
    # No dataset needed: with the ImageNet weights loaded correctly a black-and-white
    # checkerboard is a grid-like class; wrong padding or normalisation breaks this.
    img = Image.new("RGB", (224, 224), "white")
    d = ImageDraw.Draw(img)
    for i in range(0, 224, 28):
        for j in range(0, 224, 28):
            if (i // 28 + j // 28) % 2:
                d.rectangle([i, j, i + 27, j + 27], fill="black")
    from torchvision.models import ResNet50_Weights

    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    top = [names[i] for i in _top_classes(lite0, img, 3)]
    assert top[0] == "crossword puzzle"
    assert {"shoji", "window screen"} & set(top)


def test_class_activation_map_has_map_shape(lite0):
    ext = FeatureExtractor("efficientnet-lite0", "cpu")
    img = Image.fromarray((np.random.default_rng(0).random((200, 300, 3)) * 255).astype(np.uint8))
    maps = ext.feature_maps([img], 320, ["head"])[0]
    cam, cls = ext.class_activation_map(maps["head"])
    assert cam.shape == maps["head"].shape[-2:] and 0 <= cls < 1000


def test_feature_maps_keep_aspect_and_batch_mixed_sizes():
    ext = FeatureExtractor("efficientnet-lite0", "cpu", batch_size=2)
    imgs = [Image.new("RGB", (640, 480), c) for c in ("red", "blue", "green")] + [Image.new("RGB", (480, 640))]
    out = ext.feature_maps(imgs, 320, ["head", "stage5"])
    assert [tuple(o["head"].shape[-2:]) for o in out] == [(8, 10)] * 3 + [(10, 8)]
    assert out[0]["stage5"].shape[0] == 112


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "mobilenet_v2"])
def test_torchvision_backbone_without_weights_says_where_to_put_them(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsMissingError, match="checkpoints"):
        BACKBONES[name].builder(name, None)


def test_torchvision_backbone_loads_a_user_weights_file(tmp_path):
    import torchvision.models as tvm

    path = tmp_path / "mnv2.pth"
    torch.save(tvm.mobilenet_v2(weights=None).state_dict(), path)
    model = BACKBONES["mobilenet_v2"].builder("mobilenet_v2", path)
    taps = model.forward_taps(torch.rand(1, 3, 96, 96), ["block13", "head"])
    assert taps["head"].shape[1] == 1280 and taps["block13"].shape[1] == 96


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, path)
    with pytest.raises(WeightsMissingError, match="not a vgg16 checkpoint"):
        BACKBONES["vgg16"].builder("vgg16", path)


def test_imagenet_category_names_the_classifier_outputs():
    from engine.nn.backbones import imagenet_category

    assert imagenet_category(497) == "church" and imagenet_category(0) == "tench"
    assert imagenet_category(5000) == "class 5000"


def test_sympad_backbone_pads_symmetrically_and_keeps_the_map_sizes():
    """The default '-sympad' Lite0 has the same weights and output sizes as the TF-'same' one;
    only the stride-2 padding differs (so its maps differ, slightly), and it is the default."""
    import torch

    from engine.nn.backbones import DEFAULT_BACKBONE
    from engine.nn.backbones.efficientnet_lite import SameConv2d

    same, sym = get_backbone("efficientnet-lite0"), get_backbone("efficientnet-lite0-sympad")
    assert DEFAULT_BACKBONE == "efficientnet-lite0-sympad" and sym.name == DEFAULT_BACKBONE
    assert all(not m.symmetric for m in same.modules() if isinstance(m, SameConv2d))
    assert all(m.symmetric for m in sym.modules() if isinstance(m, SameConv2d))
    for (k1, v1), (k2, v2) in zip(same.state_dict().items(), sym.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.rand(1, 3, 100, 130)
    with torch.inference_mode():
        a = same.forward_taps(same.normalize(x), ["head"])["head"]
        b = sym.forward_taps(sym.normalize(x), ["head"])["head"]
    assert a.shape == b.shape == (1, 1280, 4, 5)
    assert not torch.allclose(a, b, atol=1e-3)
    # stride-1 convolutions pad the same either way: an odd 3x3 kernel gets 1 on each side
    conv = SameConv2d(2, 2, 3, bias=False)
    y = torch.rand(1, 2, 9, 9)
    tf_same = conv(y)
    conv.symmetric = True
    assert torch.allclose(tf_same, conv(y))
