"""Single-layer global descriptors: MAC, SPoC, GeM and R-MAC on the backbone's last tap."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from .. import pooling
from ..postprocess import apply_pca_whitening
from .base import ExplainParts, Method, MethodConfig, MethodSpec, State


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
    explain_kind: ClassVar[str] = "regions"
    pool_kind = "rmac"

    def explain_parts(self, image: Image.Image, extractor, fit_state: State | None) -> ExplainParts:
        """One part per R-MAC region (:func:`pooling.rmac_regions` on the deepest tap).

        raw = l2(s) with ``s = Σ_R l2(f_R)`` (eq. 3), so part R of the raw vector is
        ``l2(f_R) / (||s|| + eps)``; the search transform (l2, or PCA-whitening + l2) is affine
        up to one positive scale, so its linear part maps each part and its constant part
        (whitening's mean shift) becomes ``bias``. Masks are the regions on the feature grid.
        """
        tap = self.tap(extractor)
        x = extractor.feature_maps([image], self.config.image_side, [tap])[0][tap].unsqueeze(0)
        regions = pooling.rmac_regions(x.shape[-2], x.shape[-1], self.config.levels)
        region_vecs = pooling.l2n(pooling.regional_max_pool(x, regions))[0].double().numpy()  # (R, C)
        s = region_vecs.sum(0)
        parts_raw = region_vecs / (np.linalg.norm(s) + pooling.EPS)
        return split_search_vector(self, parts_raw, fit_state, "regions",
                                   [f"scale {r.level} · region {i + 1}" for i, r in enumerate(regions)],
                                   region_masks(regions, x.shape[-2], x.shape[-1]))


def region_masks(regions: Sequence[pooling.Region], H: int, W: int) -> np.ndarray:
    """``(R, H, W)`` float32 masks (1 inside region R) on an ``H x W`` feature grid."""
    masks = np.zeros((len(regions), H, W), np.float32)
    for i, r in enumerate(regions):
        masks[i, r.y:r.y + r.h, r.x:r.x + r.w] = 1.0
    return masks


def split_search_vector(method: Method, parts_raw: np.ndarray, fit_state: State | None, kind: str,
                        labels: list[str], masks: np.ndarray,
                        extras: dict[str, np.ndarray] | None = None) -> ExplainParts:
    """ExplainParts from raw-space parts ``(P, D)`` whose sum is the raw descriptor.

    For the default :meth:`Method.search_vectors` (l2, or PCA-whitening then l2): the search
    vector is ``c · (A·raw + b)`` with one positive scale ``c`` (the final l2), so part p maps
    to ``c·A·part_p`` and ``c·b`` is the bias; ``vectors.sum(0) + bias`` equals the search vector.
    """
    parts_raw = np.asarray(parts_raw, np.float64)
    raw = parts_raw.sum(0)
    target = method.search_vectors(raw[None, :].astype(np.float32), fit_state)[0].astype(np.float64)
    if fit_state is not None and "proj" in fit_state:
        proj = fit_state["proj"].astype(np.float64)
        mean = fit_state["mean"].astype(np.float64)
        lin = parts_raw @ proj.T
        bias = -(mean @ proj.T)
        unscaled = apply_pca_whitening(raw[None, :], fit_state, normalize=False)[0].astype(np.float64)
    else:
        lin = parts_raw
        bias = np.zeros(raw.shape[0])
        unscaled = raw
    c = float(np.linalg.norm(target) / (np.linalg.norm(unscaled) + 1e-30))
    return ExplainParts(kind, labels, masks.astype(np.float32), (lin * c).astype(np.float32),
                        (bias * c).astype(np.float32), extras or {})


SPECS = (
    MethodSpec("mac", MacMethod, GlobalPoolConfig(), "MAC: max of each channel of the last conv map (Tolias et al. 2016)", "fast"),
    MethodSpec("spoc", SpocMethod, GlobalPoolConfig(), "SPoC: mean of each channel of the last conv map (Babenko & Lempitsky 2015)", "fast"),
    MethodSpec("gem", GemMethod, GlobalPoolConfig(), "GeM: generalised mean (p=3) of each channel (Radenović et al. 2018)", "fast"),
    MethodSpec("rmac", RmacMethod, GlobalPoolConfig(), "R-MAC: sum of l2-normalised regional MACs over a 3-scale grid (Tolias et al. 2016)", "fast"),
)
