"""Single-layer global descriptors: MAC, SPoC, GeM and R-MAC on the backbone's last tap."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from engine.descriptors import pooling
from engine.descriptors.postprocess import apply_pca_whitening
from engine.descriptors.methods.base import ExplainParts, Method, MethodConfig, MethodSpec, State


@dataclass(frozen=True)
class GlobalPoolConfig(MethodConfig):
    """``tap``: feature tap to pool (None = the backbone's deepest). ``p``: GeM power.
    ``levels``: R-MAC L. ``whole_map``: R-MAC also pools the whole map as one region.

    ``scales``: multi-scale extraction, the input's longest side at ``image_side · s`` for each
    ``s``, the per-scale vectors averaged (:func:`pooling.multiscale_mean`).
    ``activation_cap``: clamp the feature map at this value before pooling (6.0 is the
    network's own ReLU6 on EfficientNet-Lite's head, which the tap otherwise leaves uncapped).
    ``crop_at_photo_scale``: a query box is described at the scale the whole photo is
    described at (the box of a 1024 px photo at ``image_side`` 1024 stays its own size),
    instead of being enlarged to ``image_side``, so the object appears as large as in the
    database photos.
    """

    tap: str | None = None
    p: float = 3.0
    levels: int = 3
    whole_map: bool = False
    scales: tuple[float, ...] = (1.0,)
    activation_cap: float | None = None
    crop_at_photo_scale: bool = False


class GlobalPoolMethod(Method):
    """Pool the last conv feature map into one vector, then l2 (search vectors are l2'd)."""

    config_type: ClassVar[type[MethodConfig]] = GlobalPoolConfig
    pool_kind: ClassVar[str] = "mac"

    def tap(self, extractor) -> str:
        return self.config.tap or extractor.backbone.tap_names[-1]

    def decode_side(self) -> int:  # noqa: D102  (the largest scale's input)
        return round(self.config.image_side * max(self.config.scales))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        kinds: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "mac": pooling.mac,
            "spoc": pooling.spoc,
            "gem": lambda t: pooling.gem(t, self.config.p),
            "rmac": lambda t: pooling.rmac(t, self.config.levels, self.config.whole_map),
        }
        return kinds[self.pool_kind](x)

    def feature_map(self, maps: dict[str, torch.Tensor], tap: str) -> torch.Tensor:
        """The tap's map ``(1,C,h,w)`` as pooled: capped at ``activation_cap`` when set."""
        x = maps[tap].unsqueeze(0)
        return x if self.config.activation_cap is None else x.clamp(max=self.config.activation_cap)

    def scale_maps(self, images: Sequence[Image.Image], extractor, side: int):
        """``(scale, [(1,C,h,w) map per image])`` for each of ``scales``, the longest side at
        ``side · scale``, capped as pooled (:meth:`feature_map`)."""
        tap = self.tap(extractor)
        for s in self.config.scales:
            maps = extractor.feature_maps(images, max(1, round(side * s)), [tap])
            yield s, [self.feature_map(m, tap) for m in maps]

    def describe_at(self, images: Sequence[Image.Image], extractor, side: int) -> np.ndarray:
        """Descriptors with the longest side at ``side`` for scale 1 (see ``scales``)."""
        per_scale = [torch.stack([pooling.l2n(self.pool(x))[0] for x in maps])
                     for _s, maps in self.scale_maps(images, extractor, side)]
        p = self.config.p if self.pool_kind == "gem" else 1.0
        return pooling.multiscale_mean(torch.stack(per_scale), p).numpy().astype(np.float32)

    def describe(self, images: Sequence[Image.Image], extractor) -> np.ndarray:
        return self.describe_at(images, extractor, self.config.image_side)

    def describe_crop(self, crop: Image.Image, photo_size: tuple[int, int], extractor) -> np.ndarray:  # noqa: D102
        if not self.config.crop_at_photo_scale:
            return super().describe_crop(crop, photo_size, extractor)
        side = max(1, round(max(crop.size) * self.config.image_side / max(photo_size)))
        return self.describe_at([crop], extractor, side)[0]


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
        """One part per R-MAC region and input scale (:func:`pooling.rmac_regions_with_whole`).

        Per scale, ``r_s = l2(t_s)`` with ``t_s = Σ_R l2(f_R)`` (eq. 3); the raw vector is
        ``l2(Σ_s r_s)`` (:func:`pooling.multiscale_mean`, p = 1), so part (s, R) of it is
        ``l2(f_R) / ||t_s|| / ||Σ_s r_s||``; the search transform (l2, or PCA-whitening + l2) is
        affine up to one positive scale, so its linear part maps each part and its constant
        part (whitening's mean shift) becomes ``bias``. Masks are the regions on the feature
        grid of the largest scale (regions of other scales cover the same fractions).
        """
        parts, labels, masks = [], [], []
        grid: tuple[int, int] | None = None
        for s, (x,) in self.scale_maps([image], extractor, self.config.image_side):
            H, W = x.shape[-2:]
            grid = grid or (H, W)
            regions = pooling.rmac_regions_with_whole(H, W, self.config.levels, self.config.whole_map)
            region_vecs = pooling.l2n(pooling.regional_max_pool(x, regions))[0].double().numpy()  # (R, C)
            parts.append(region_vecs / (np.linalg.norm(region_vecs.sum(0)) + pooling.EPS))
            masks += [region_mask(r, (H, W), grid) for r in regions]
            labels += [region_label(r, s, len(self.config.scales) > 1) for r in regions]
        parts_raw = np.concatenate(parts)
        parts_raw = parts_raw / (np.linalg.norm(parts_raw.sum(0)) + pooling.EPS)
        return split_search_vector(self, parts_raw, fit_state, "regions", labels, np.stack(masks))


def region_mask(region: pooling.Region, map_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Float32 mask on a ``grid`` (h, w) that is 1 where ``region`` of a ``map_size`` map lies
    (the same fraction of the picture; at least one cell)."""
    x1, y1, x2, y2 = region.as_fraction(map_size[0], map_size[1])
    (gh, gw), m = grid, np.zeros(grid, np.float32)
    r0, c0 = int(round(y1 * gh)), int(round(x1 * gw))
    m[r0:max(r0 + 1, int(round(y2 * gh))), c0:max(c0 + 1, int(round(x2 * gw)))] = 1.0
    return m


_REGION_SIZES = {0: "whole picture", 1: "large region", 2: "medium region", 3: "small region"}


def region_label(region: pooling.Region, scale: float, multiscale: bool) -> str:
    """Words for an R-MAC region: its size class (level), and the input scale when several."""
    size = _REGION_SIZES.get(region.level, f"region of level {region.level}")
    return f"{size} at {scale:.0%} size" if multiscale else size


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
    MethodSpec("rmac", RmacMethod, GlobalPoolConfig(), "R-MAC: sum of l2-normalised regional MACs over a 3-scale grid (Tolias et al. 2016)", "fast",
               summary="Classic R-MAC at one size (512 px): fast; finds the same place or object from other angles",
               recommended=True),
    # The default. Input side and scales chosen on paris_dev (every positive as a query: 0.940
    # vs 0.935 for 512 px alone and 0.911 for 1024 px) and reported on oxford_dev (docs/RESULTS.md).
    # It costs 0.875 of one 1024 px forward (724² + 512² + 362² pixels).
    MethodSpec("rmac-ms", RmacMethod, GlobalPoolConfig(image_side=724, scales=(1.0, 0.7071, 0.5)),
               "Multi-scale R-MAC: R-MAC at 724, 512 and 362 px, averaged (Tolias et al. 2016; multi-scale as "
               "Radenović et al. 2018)", "fast",
               summary="Finds buildings, objects and scenes from other angles and distances; "
                       "about as fast as one 1024 px pass (the default until 2026-12-02)",
               recommended=True),
)
