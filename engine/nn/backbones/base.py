"""Backbone interface: a CNN trunk with named feature taps collected by forward hooks.

A backbone exposes ``tap_names`` (shallow to deep) and, for CAM, its classifier head.
Taps are non-negative: where the network's own tensor there is a linear bottleneck or a
capped ReLU6, the tap applies a plain ReLU (documented per backbone), because MAC-style
pooling assumes non-negative activations and a cap at 6 would tie the strongest ones.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Base class. Subclasses set the attributes below and build ``self.trunk`` modules."""

    name: str = ""
    tap_names: tuple[str, ...] = ()
    tap_channels: dict[str, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    cam_tap: str | None = None  # tap whose features the classifier pools (None: no CAM)

    # -- taps ---------------------------------------------------------------------------
    def tap_modules(self) -> dict[str, tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]:
        """``tap name -> (module whose output is captured, transform to non-negative)``."""
        raise NotImplementedError

    def run_trunk(self, x: torch.Tensor, last_tap: str) -> None:
        """Run the network far enough for ``last_tap`` to have fired."""
        raise NotImplementedError

    def forward_taps(self, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Normalised image batch ``(B,3,H,W)`` -> ``{tap: (B,C,h,w)}`` for the requested taps."""
        unknown = [t for t in taps if t not in self.tap_names]
        if unknown:
            raise KeyError(f"{self.name} has no feature tap {unknown}; it has {list(self.tap_names)}")
        modules = self.tap_modules()
        captured: dict[str, torch.Tensor] = {}
        handles = []
        for tap in taps:
            module, transform = modules[tap]

            def hook(_m, _inp, out, tap=tap, transform=transform):
                captured[tap] = transform(out)

            handles.append(module.register_forward_hook(hook))
        try:
            deepest = max(taps, key=self.tap_names.index)
            self.run_trunk(x, deepest)
        finally:
            for h in handles:
                h.remove()
        return {t: captured[t] for t in taps}

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in [0,1], ``(B,3,H,W)`` -> network input."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    # -- classifier / CAM ---------------------------------------------------------------
    def classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (K, C_cam), bias (K,))`` of the linear classifier over pooled ``cam_tap``."""
        raise NotImplementedError(f"{self.name} has no linear classifier, so CAM is unavailable")

    def cam_input(self, tap_features: torch.Tensor) -> torch.Tensor:
        """Map the ``cam_tap`` tap to the features the classifier actually sees (default: same)."""
        return tap_features

    def classify_features(self, tap_features: torch.Tensor) -> torch.Tensor:
        """Logits from ``cam_tap`` features: global average pool, then the linear classifier."""
        weight, bias = self.classifier()
        return F.linear(self.cam_input(tap_features).mean(dim=(-2, -1)), weight, bias)

    def class_activation_map(self, tap_features: torch.Tensor, class_index: torch.Tensor | None = None):
        """CAM (Zhou et al. 2016): ``M(x,y) = Σ_k w_k^c f_k(x,y)`` for the top class ``c``.

        Returns ``(maps (B,h,w), class_index (B,))``.
        """
        weight, _bias = self.classifier()
        feats = self.cam_input(tap_features)
        if class_index is None:
            class_index = self.classify_features(tap_features).argmax(dim=1)
        w = weight[class_index]  # (B, C)
        return torch.einsum("bc,bchw->bhw", w, feats), class_index

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a normalised batch (used to sanity-check loaded weights)."""
        if self.cam_tap is None:
            raise NotImplementedError(f"{self.name} has no linear classifier")
        return self.classify_features(self.forward_taps(x, [self.cam_tap])[self.cam_tap])
