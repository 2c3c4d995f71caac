"""Single-layer global descriptors: MAC, SPoC, GeM and R-MAC on the backbone's last tap."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from .. import pooling
from .base import Method, MethodConfig, MethodSpec


@dataclass(frozen=True)
class GlobalPoolConfig(MethodConfig):
    """``tap``: feature tap to pool (None = the backbone's deepest). ``p``: GeM power. ``levels``: R-MAC L."""

    tap: str | None = None
    p: float = 3.0
    levels: int = 3


class GlobalPoolMethod(Method):
    """Pool the last conv feature map into one vector, then l2 (search vectors are l2'd)."""

    config_type: ClassVar[type[MethodConfig]] = GlobalPoolConfig
    pool_kind: ClassVar[str] = "mac"

    def tap(self, extractor) -> str:
        return self.config.tap or extractor.backbone.tap_names[-1]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        kinds: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "mac": pooling.mac,
            "spoc": pooling.spoc,
            "gem": lambda t: pooling.gem(t, self.config.p),
            "rmac": lambda t: pooling.rmac(t, self.config.levels),
        }
        return kinds[self.pool_kind](x)

    def describe(self, images: Sequence[Image.Image], extractor) -> np.ndarray:
        tap = self.tap(extractor)
        maps = extractor.feature_maps(images, self.config.image_side, [tap])
        vecs = [pooling.l2n(self.pool(m[tap].unsqueeze(0)))[0] for m in maps]
        return torch.stack(vecs).numpy().astype(np.float32)


class MacMethod(GlobalPoolMethod):
    pool_kind = "mac"


class SpocMethod(GlobalPoolMethod):
    pool_kind = "spoc"


class GemMethod(GlobalPoolMethod):
    pool_kind = "gem"


class RmacMethod(GlobalPoolMethod):
    pool_kind = "rmac"


SPECS = (
    MethodSpec("mac", MacMethod, GlobalPoolConfig(), "MAC: max of each channel of the last conv map (Tolias et al. 2016)", "fast"),
    MethodSpec("spoc", SpocMethod, GlobalPoolConfig(), "SPoC: mean of each channel of the last conv map (Babenko & Lempitsky 2015)", "fast"),
    MethodSpec("gem", GemMethod, GlobalPoolConfig(), "GeM: generalised mean (p=3) of each channel (Radenović et al. 2018)", "fast"),
    MethodSpec("rmac", RmacMethod, GlobalPoolConfig(), "R-MAC: sum of l2-normalised regional MACs over a 3-scale grid (Tolias et al. 2016)", "fast"),
)
