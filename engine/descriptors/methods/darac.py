"""DARAC: deep aggregation of regional (average and max) activations (Schall et al., slides).

RAMAC values (slides "Regional Max and Average Pooling"): on the last conv map, for each of
the 21 regions (:func:`engine.descriptors.methods.ramac.ramac_regions`: the R-MAC grid, L = 3, plus the
whole map) the average and the maximum of every channel: :func:`ramac_region_values`.

**Aggregation network (OUR DESIGN; the slides show no equations).** Each region vector is
l2-normalised; a small MLP scores every region from channel-free cues and the image vector is
the weighted sum

    g = l2( l2(sum_r w_avg(r) · l2(avg_r)) + l2(sum_r w_max(r) · l2(max_r)) )
    [w_avg(r), w_max(r)] = softplus(MLP(c_r)),   MLP: 5 -> 16 (tanh) -> 2

with cues ``c_r = [log(|avg_r| / mean_r' |avg_r'|), log(|max_r| / mean |max|), area fraction,
|dy|, |dx|]`` (region energy relative to the image's regions, size, offset of its centre from
the map centre). The last layer starts at zero weights and bias ``log(e - 1)``, so the untrained
network gives every region weight 1: **untrained DARAC is exactly ``ramac-sum``** (the issue-7
RAMAC: l2'd sums of l2'd regional avg and max vectors, added), and training re-weights regions. Being channel-free,
the network has 130 parameters and does not depend on the backbone's width.

Multi-resolution late fusion (slides "Multi Resolution"): ``g`` at longest sides 299, 540 and
1020, each l2'd, summed, l2'd. PCA-whitening fitted on the collection (slides "DARAC + W").
Trained with the NRA loss (:func:`engine.training.losses.nra_loss`) by ``main.py train``;
trained weights are stored per collection (state kind ``"trained"``), checked on load.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from engine.descriptors import pooling
from engine.descriptors.methods.actnet import TrainedHeadMixin, whitening_fit
from engine.descriptors.methods.base import Method, MethodConfig, MethodSpec, State
from engine.descriptors.methods.ramac import ramac_regions

EPS = 1e-6


def ramac_region_values(x: torch.Tensor, levels: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[pooling.Region]]:
    """RAMAC values (Schall et al., slides "RAMAC"): per region the channel average and maximum.

    ``(B,C,H,W) -> (avg (B,R,C), max (B,R,C), regions)``; the 21 regions are those of
    :func:`engine.descriptors.methods.ramac.ramac_regions` (R-MAC grid of L = ``levels`` + the whole map).
    """
    regions = ramac_regions(x.shape[-2], x.shape[-1], levels)
    return pooling.regional_pool(x, regions, "avg"), pooling.regional_pool(x, regions, "max"), regions


def region_geometry(regions: Sequence[pooling.Region], H: int, W: int) -> torch.Tensor:
    """``(R, 3)``: area fraction, |dy|, |dx| of each region's centre from the map centre (fractions)."""
    rows = [[r.h * r.w / (H * W), abs((r.y + r.h / 2) / H - 0.5), abs((r.x + r.w / 2) / W - 0.5)] for r in regions]
    return torch.tensor(rows, dtype=torch.float32)


def ramac_aggregate(avg: torch.Tensor, mx: torch.Tensor, w_avg: torch.Tensor | None = None,
                    w_max: torch.Tensor | None = None) -> torch.Tensor:
    """``l2(l2(A) + l2(M))``, ``A = sum_r w_avg(r) l2(avg_r)``, ``M = sum_r w_max(r) l2(max_r)``.

    With all weights 1 (the default) this is exactly ``ramac-sum`` (:func:`engine.descriptors.methods.ramac.ramac`
    with ``combine="sum"``). ``avg``/``mx``: ``(B,R,C)``; weights ``(B,R)``. Returns ``(B,C)``.
    """
    a, m = pooling.l2n(avg), pooling.l2n(mx)
    if w_avg is not None:
        a = a * w_avg.unsqueeze(-1)
    if w_max is not None:
        m = m * w_max.unsqueeze(-1)
    return pooling.l2n(pooling.l2n(a.sum(1)) + pooling.l2n(m.sum(1)))


class RegionScorer(nn.Module):
    """The DARAC aggregation network (ours): region cues -> (w_avg, w_max), init all ones."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(5, hidden)
        self.fc2 = nn.Linear(hidden, 2)
        g = torch.Generator().manual_seed(0)  # fixed init: reproducible regardless of global seed
        with torch.no_grad():
            self.fc1.weight.copy_(torch.randn(hidden, 5, generator=g) * 0.5)
            self.fc1.bias.zero_()
            self.fc2.weight.zero_()
            self.fc2.bias.fill_(math.log(math.e - 1.0))  # softplus(.) = 1

    @staticmethod
    def cues(avg: torch.Tensor, mx: torch.Tensor, geo: torch.Tensor) -> torch.Tensor:
        """``(B,R,5)`` cues of regions with values ``(B,R,C)`` and geometry ``(R,3)``."""
        na, nm = avg.norm(dim=-1), mx.norm(dim=-1)
        ra = torch.log((na + EPS) / (na.mean(1, keepdim=True) + EPS))
        rm = torch.log((nm + EPS) / (nm.mean(1, keepdim=True) + EPS))
        return torch.cat([ra.unsqueeze(-1), rm.unsqueeze(-1), geo.expand(avg.shape[0], -1, -1)], dim=-1)

    def forward(self, avg: torch.Tensor, mx: torch.Tensor, geo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = nn.functional.softplus(self.fc2(torch.tanh(self.fc1(self.cues(avg, mx, geo)))))
        return w[..., 0], w[..., 1]


class DaracHead(nn.Module):
    """Aggregates per-side RAMAC values of one image into its (multi-resolution) descriptor."""

    def __init__(self, sides: Sequence[int]):
        super().__init__()
        self.sides = tuple(int(s) for s in sides)
        self.scorer = RegionScorer()

    def one(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for s in self.sides:
            avg, mx = item[f"{s}:avg"].float().unsqueeze(0), item[f"{s}:max"].float().unsqueeze(0)
            wa, wm = self.scorer(avg, mx, item[f"{s}:geo"].float())
            g = ramac_aggregate(avg, mx, wa, wm)[0]
            total = g if total is None else total + g
        return pooling.l2n(total)

    def forward(self, items: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        return torch.stack([self.one(it) for it in items])


@dataclass(frozen=True)
class DaracConfig(MethodConfig):
    """``sides``: input longest sides fused late (slides: 299, 540, 1020). ``tap``: conv map
    (None = deepest). ``levels``: the R-MAC grid's L. ``whiten``: PCA-whitening, used only from
    ``whiten_min_images`` photos on (None: the descriptor dimension; see actnet.whitening_fit)."""

    sides: tuple[int, ...] = (299, 540, 1020)
    tap: str | None = None
    levels: int = 3
    whiten: bool = True
    whiten_min_images: int | None = None


class DaracMethod(TrainedHeadMixin, Method):
    config_type: ClassVar[type[MethodConfig]] = DaracConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = DaracHead(self.config.sides)
        self.head.eval()
        self.trained_meta: dict[str, Any] | None = None

    def decode_side(self) -> int:
        return max(self.config.sides)

    def tap(self, extractor) -> str:
        return self.config.tap or extractor.backbone.tap_names[-1]

    def encode_maps(self, maps_by_side: dict[int, torch.Tensor], dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """Head input of one image from its ``{side: (C,h,w)}`` maps: RAMAC values + geometry
        (values in ``dtype``: float16 for training caches, float32 when describing)."""
        item = {}
        for s, x in maps_by_side.items():
            avg, mx, regions = ramac_region_values(x.float().unsqueeze(0), self.config.levels)
            item[f"{s}:avg"], item[f"{s}:max"] = avg[0].to(dtype), mx[0].to(dtype)
            item[f"{s}:geo"] = region_geometry(regions, x.shape[-2], x.shape[-1])
        return item

    def training_encode(self, images: Sequence[Image.Image], extractor,
                        dtype: torch.dtype = torch.float16) -> list[dict[str, torch.Tensor]]:
        tap = self.tap(extractor)
        per_side = {s: extractor.feature_maps(images, s, [tap]) for s in self.config.sides}
        return [self.encode_maps({s: per_side[s][i][tap] for s in self.config.sides}, dtype) for i in range(len(images))]

    @torch.no_grad()
    def describe(self, images: Sequence[Image.Image], extractor) -> np.ndarray:
        return self.head(self.training_encode(images, extractor, torch.float32)).numpy().astype(np.float32)

    def fit(self, raw: np.ndarray) -> State | None:
        return whitening_fit(self.config, raw)


SPECS = (
    MethodSpec("darac", DaracMethod, DaracConfig(),
               "DARAC: regional average+max values (21 regions) aggregated by a small learned region-weighting "
               "network (our design; untrained = RAMAC), 299/540/1020 late fusion, PCA-whitening, NRA loss "
               "(Schall et al.)", "slow"),
)
