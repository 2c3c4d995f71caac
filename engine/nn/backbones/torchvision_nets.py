"""torchvision backbones (ResNet50/101, VGG16, MobileNetV2) with feature taps.

Weights are never downloaded: they come from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, where torchvision itself stores them) or from a file the
user gives with ``--weights``. Absent weights raise one sentence naming where to put them.
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm

from engine.errors import WeightsMissingError
from engine.nn.backbones.base import Backbone


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _find_weights(name: str, weight_enums, user_file: str | Path | None) -> Path:
    if user_file:
        p = Path(user_file).expanduser()
        if not p.is_file():
            raise WeightsMissingError(f"Weights file for {name} not found: {p}")
        return p
    names = [Path(w.url).name for w in weight_enums]
    for n in names:
        p = hub_checkpoint_dir() / n
        if p.is_file():
            return p
    raise WeightsMissingError(
        f"No ImageNet weights for {name} on this machine: put {names[0]} in {hub_checkpoint_dir()} "
        f"or pass --weights FILE (Lookalike never downloads weights)."
    )


def _load(model: nn.Module, path: Path, name: str) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsMissingError(f"{path} is not a {name} checkpoint: {str(exc).splitlines()[0]}") from None


class ResNetBackbone(Backbone):
    """ResNet with taps ``layer1`` .. ``layer4`` (block outputs, already post-ReLU)."""

    cam_tap = "layer4"

    def __init__(self, name: str, net: tvm.ResNet):
        super().__init__()
        self.name = name
        self.net = net
        self.tap_names = ("layer1", "layer2", "layer3", "layer4")
        self.tap_channels = {f"layer{i}": getattr(net, f"layer{i}")[-1].conv3.out_channels for i in range(1, 5)}

    def tap_modules(self):  # noqa: D102
        return {t: (getattr(self.net, t), _identity) for t in self.tap_names}

    def run_trunk(self, x, last_tap):  # noqa: D102
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        for t in self.tap_names:
            x = getattr(n, t)(x)
            if t == last_tap:
                return

    def classifier(self):  # noqa: D102
        return self.net.fc.weight, self.net.fc.bias


class VGG16Backbone(Backbone):
    """VGG16 with taps ``conv3``, ``conv4``, ``conv5``: the ReLU after conv3_3/conv4_3/conv5_3.

    VGG's classifier is three FC layers, not a linear map of pooled features, so CAM is not
    available on VGG16 (``cam_tap`` is None).
    """

    cam_tap = None
    # indices of the ReLU after convN_3 in torchvision's vgg16.features
    _RELU_INDEX = MappingProxyType({"conv3": 15, "conv4": 22, "conv5": 29})  # read-only: shared by instances

    def __init__(self, name: str, net: tvm.VGG):
        super().__init__()
        self.name = name
        self.net = net
        self.tap_names = ("conv3", "conv4", "conv5")
        self.tap_channels = {"conv3": 256, "conv4": 512, "conv5": 512}

    def tap_modules(self):  # noqa: D102
        return {t: (self.net.features[i], _identity) for t, i in self._RELU_INDEX.items()}

    def run_trunk(self, x, last_tap):  # noqa: D102
        stop = self._RELU_INDEX[last_tap]
        for i, layer in enumerate(self.net.features):
            x = layer(x)
            if i == stop:
                return


class MobileNetV2Backbone(Backbone):
    """MobileNetV2 with taps ``block6`` (32 ch), ``block13`` (96), ``block17`` (320), ``head`` (1280).

    Block outputs are linear bottlenecks, so their taps apply ReLU; ``head`` is the last
    1x1 conv + BN with a plain ReLU (the network's ReLU6 is reproduced for the classifier).
    """

    cam_tap = "head"
    _INDEX = MappingProxyType({"block6": 6, "block13": 13, "block17": 17})  # read-only: shared by instances

    def __init__(self, name: str, net: tvm.MobileNetV2):
        super().__init__()
        self.name = name
        self.net = net
        self.tap_names = ("block6", "block13", "block17", "head")
        self.tap_channels = {"block6": 32, "block13": 96, "block17": 320, "head": 1280}

    def tap_modules(self):  # noqa: D102
        taps: dict[str, tuple[nn.Module, Callable]] = {
            t: (self.net.features[i], F.relu) for t, i in self._INDEX.items()}
        taps["head"] = (self.net.features[18][1], F.relu)  # the BN of the last ConvBNReLU6
        return taps

    def run_trunk(self, x, last_tap):  # noqa: D102
        stop = self._INDEX.get(last_tap, 18)
        for i, layer in enumerate(self.net.features):
            x = layer(x)
            if i == stop:
                return

    def classifier(self):  # noqa: D102
        return self.net.classifier[1].weight, self.net.classifier[1].bias

    def cam_input(self, tap_features):  # noqa: D102
        return tap_features.clamp(max=6.0)


def build_resnet(name: str, weights=None) -> Backbone:
    ctor, enum = {"resnet50": (tvm.resnet50, tvm.ResNet50_Weights), "resnet101": (tvm.resnet101, tvm.ResNet101_Weights)}[name]
    path = _find_weights(name, list(enum), weights)
    net = ctor(weights=None)
    _load(net, path, name)
    return ResNetBackbone(name, net).eval()


def build_vgg16(name: str = "vgg16", weights=None) -> Backbone:
    path = _find_weights(name, list(tvm.VGG16_Weights), weights)
    net = tvm.vgg16(weights=None)
    _load(net, path, name)
    return VGG16Backbone(name, net).eval()


def build_mobilenet_v2(name: str = "mobilenet_v2", weights=None) -> Backbone:
    path = _find_weights(name, list(tvm.MobileNet_V2_Weights), weights)
    net = tvm.mobilenet_v2(weights=None)
    _load(net, path, name)
    return MobileNetV2Backbone(name, net).eval()
