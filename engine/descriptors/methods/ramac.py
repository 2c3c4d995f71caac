"""RAMAC (Schall et al., "Deep aggregation of regional convolutional activations", slides).

21 regions = the 20 R-MAC regions of L = 3 (:func:`engine.descriptors.pooling.rmac_regions`, 4:3 map)
plus the whole map; per region both the average and the max of every channel; aggregated
as R-MAC: per-region l2, sum over regions, l2. The avg part and the max part are then
combined — ``ramac``: concatenated (2C dims), ``ramac-sum``: summed (C dims).

**Our design (the slides give no equations):** each part is l2-normalised before the
combination, so the average and max halves weigh the same; optional PCA-whitening
(``whiten=True``) is learned in ``fit`` on the aggregated vectors, as for ``rmac`` here
(per-region whitening would need every photo's 42 region vectors stored).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from engine.descriptors.pooling import Region, l2n, regional_pool, rmac_regions_with_whole
from engine.descriptors.postprocess import EPS as NP_EPS
from engine.descriptors.methods.base import ExplainParts, Method, MethodConfig, MethodSpec, State

EPS = 1e-6


@dataclass(frozen=True)
class RamacConfig(MethodConfig):
    """``tap``: feature tap (None = deepest). ``levels``: R-MAC L. ``combine``: "concat" or "sum"
    of the l2'd average and max parts."""

    tap: str | None = None
    levels: int = 3
    combine: str = "concat"


def ramac_regions(H: int, W: int, L: int = 3) -> list[Region]:
    """The R-MAC regions of :func:`rmac_regions` plus the whole map (21 for a 4:3 map, L = 3)."""
    return rmac_regions_with_whole(H, W, L, whole_map=True)


def ramac_region_parts(x: torch.Tensor, regions: list[Region], combine: str = "concat") -> torch.Tensor:
    """Per-region shares of the RAMAC vector: ``(B,C,H,W) -> (B,R,D)``; their sum over R is RAMAC.

    Schall et al. (slides "RAMAC", no equation numbers): ``a_r = l2(avg_r(x))``,
    ``m_r = l2(max_r(x))``; ``A = sum_r a_r``, ``M = sum_r m_r``; concat:
    ``l2([A/|A|, M/|M|])`` (D = 2C); sum: ``l2(A/|A| + M/|M|)`` (D = C). Share of region r:
    the same expression with ``a_r, m_r`` in place of ``A, M`` (normalisers of the totals).
    """
    a = l2n(regional_pool(x, regions, "avg"))
    m = l2n(regional_pool(x, regions, "max"))
    na = torch.linalg.vector_norm(a.sum(1), dim=-1)[:, None, None] + EPS
    nm = torch.linalg.vector_norm(m.sum(1), dim=-1)[:, None, None] + EPS
    if combine == "concat":
        parts = torch.cat([a / na, m / nm], dim=-1)
    elif combine == "sum":
        parts = a / na + m / nm
    else:
        raise ValueError(f"unknown RAMAC combination {combine!r} (concat or sum)")
    total = torch.linalg.vector_norm(parts.sum(1), dim=-1)[:, None, None] + EPS
    return parts / total


def ramac(x: torch.Tensor, L: int = 3, combine: str = "concat") -> torch.Tensor:
    """RAMAC vector ``(B,C,H,W) -> (B,D)`` (see :func:`ramac_region_parts`)."""
    return ramac_region_parts(x, ramac_regions(x.shape[-2], x.shape[-1], L), combine).sum(1)


class RamacMethod(Method):
    """Regional average + max pooling over 21 regions, R-MAC aggregation."""
    explain_kind: ClassVar[str] = "regions"

    config_type: ClassVar[type[MethodConfig]] = RamacConfig

    def tap(self, extractor) -> str:
        return self.config.tap or extractor.backbone.tap_names[-1]

    def _maps(self, images: Sequence[Image.Image], extractor) -> list[torch.Tensor]:
        tap = self.tap(extractor)
        return [m[tap] for m in extractor.feature_maps(images, self.config.image_side, [tap])]

    def describe(self, images: Sequence[Image.Image], extractor) -> np.ndarray:
        vecs = [ramac(x.unsqueeze(0), self.config.levels, self.config.combine)[0] for x in self._maps(images, extractor)]
        return torch.stack(vecs).numpy().astype(np.float32)

    def explain_parts(self, image: Image.Image, extractor, fit_state: State | None) -> ExplainParts:
        """One part per region (20 R-MAC regions + whole map); masks are the regions' cells."""
        x = self._maps([image], extractor)[0]
        h, w = x.shape[-2:]
        regions = ramac_regions(h, w, self.config.levels)
        parts = ramac_region_parts(x.unsqueeze(0), regions, self.config.combine)[0].numpy().astype(np.float64)
        raw = parts.sum(0)
        if fit_state is not None and "proj" in fit_state:
            proj = fit_state["proj"].astype(np.float64)
            y = (raw - fit_state["mean"]) @ proj.T
            n = np.linalg.norm(y) + NP_EPS
            vectors, bias = parts @ proj.T / n, -(fit_state["mean"].astype(np.float64) @ proj.T) / n
        else:
            n = np.linalg.norm(raw) + NP_EPS
            vectors, bias = parts / n, np.zeros(parts.shape[1])
        masks = np.zeros((len(regions), h, w), np.float32)
        for i, r in enumerate(regions):
            masks[i, r.y:r.y + r.h, r.x:r.x + r.w] = 1.0
        labels = [("whole map" if r.level == 0 else f"level {r.level} region at ({r.x},{r.y})") for r in regions]
        return ExplainParts("regions", labels, masks, vectors.astype(np.float32), bias.astype(np.float32))


SPECS = (
    MethodSpec("ramac", RamacMethod, RamacConfig(combine="concat"),
               "RAMAC: average and max of 21 regions (R-MAC grid + whole map), R-MAC aggregation, "
               "avg and max parts concatenated (Schall et al.)", "fast"),
    MethodSpec("ramac-sum", RamacMethod, RamacConfig(combine="sum"),
               "RAMAC with the avg and max parts summed instead of concatenated (Schall et al.)", "fast"),
)
