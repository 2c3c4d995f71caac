"""Feature extraction: PIL images -> named feature maps of a backbone, batched on a device.

Images are resized so their longest side equals the requested side, grouped by the
resulting shape and sent through the network in batches; a failing or out-of-memory
accelerator falls back to smaller batches and then the CPU (never a crash).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .backbones import DEFAULT_BACKBONE, Backbone, get_backbone
from .device import run_batched_with_fallback, select_device
from .images import resize_longest_side

log = logging.getLogger(__name__)
MIN_SIDE = 32  # smallest input side: below this the deepest taps would be empty


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float tensor ``(3,H,W)`` in [0,1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class FeatureExtractor:
    """A backbone on a device, turning images into feature maps of selected taps."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE, device: str | torch.device = "auto",
                 weights: str | Path | None = None, batch_size: int = 8):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.backbone_name = backbone
        self.weights = weights
        self.batch_size = batch_size
        self.backbone: Backbone = get_backbone(backbone, weights, self.device)
        self._cpu_backbone: Backbone | None = None
        self._lock = threading.Lock()

    def _model_on(self, device: torch.device) -> Backbone:
        if device == self.device:
            return self.backbone
        if self._cpu_backbone is None:
            self._cpu_backbone = get_backbone(self.backbone_name, self.weights, device)
        return self._cpu_backbone

    def prepare(self, img: Image.Image, side: int | None) -> torch.Tensor:
        """Resize (longest side = ``side``, shorter side >= 32) and convert to ``(3,H,W)``."""
        if side:
            img = resize_longest_side(img, side, min_side=MIN_SIDE)
        elif min(img.size) < MIN_SIDE:
            s = MIN_SIDE / min(img.size)
            img = img.resize((max(MIN_SIDE, round(img.width * s)), max(MIN_SIDE, round(img.height * s))))
        return image_to_tensor(img)

    @torch.inference_mode()
    def feature_maps(self, images: Sequence[Image.Image | torch.Tensor], side: int | None,
                     taps: Sequence[str]) -> list[dict[str, torch.Tensor]]:
        """For each image, ``{tap: (C,h,w) float32 CPU tensor}`` at input longest side ``side``.

        Images may also be given as prepared ``(3,H,W)`` tensors in [0,1].
        """
        tensors = [im if isinstance(im, torch.Tensor) else self.prepare(im, side) for im in images]
        out: list[dict[str, torch.Tensor] | None] = [None] * len(tensors)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault(tuple(t.shape[-2:]), []).append(i)

        def run(chunk: Sequence[int], device: torch.device) -> list[dict[str, torch.Tensor]]:
            model = self._model_on(device)
            x = torch.stack([tensors[i] for i in chunk]).to(device, non_blocking=True)
            feats = model.forward_taps(model.normalize(x), list(taps))
            cpu = {k: v.float().cpu() for k, v in feats.items()}
            return [{k: v[j] for k, v in cpu.items()} for j in range(len(chunk))]

        with self._lock:
            for idx in groups.values():
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s:s + self.batch_size]
                    for i, res in zip(chunk, run_batched_with_fallback(chunk, run, self.device)):
                        out[i] = res
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def class_activation_map(self, cam_tap_features: torch.Tensor) -> tuple[torch.Tensor, int]:
        """CAM of one image's ``cam_tap`` features ``(C,h,w)`` -> ``((h,w) map, top class)``."""
        model = self.backbone
        feats = cam_tap_features.unsqueeze(0).to(next(model.parameters()).device)
        maps, cls = model.class_activation_map(feats)
        return maps[0].float().cpu(), int(cls[0])
