"""Pure pooling functions on ``(B, C, H, W)`` feature maps.

Each function takes non-negative (post-ReLU) activations and returns ``(B, C)`` (or a
documented shape). Thin ``nn.Module`` wrappers, where a method needs them, live beside the
method; these stay pure so they can be unit-tested against hand-computed arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

EPS = 1e-6


def l2n(x: torch.Tensor, dim: int = -1, eps: float = EPS) -> torch.Tensor:
    """l2-normalise along ``dim``: ``x / (||x||_2 + eps)``."""
    return x / (torch.linalg.vector_norm(x, ord=2, dim=dim, keepdim=True) + eps)


def mac(x: torch.Tensor) -> torch.Tensor:
    """MAC, Tolias et al. 2016 eq. (1): ``f_c = max_{p in X_c} x_p``. ``(B,C,H,W) -> (B,C)``."""
    return x.amax(dim=(-2, -1))


def spoc(x: torch.Tensor) -> torch.Tensor:
    """SPoC (sum/average pooling, Babenko & Lempitsky 2015): ``f_c = mean_{p} x_p``."""
    return x.mean(dim=(-2, -1))


def gem(x: torch.Tensor, p: float = 3.0, eps: float = EPS) -> torch.Tensor:
    """GeM, Radenović et al. 2018 eq. (2): ``f_c = (mean_p x_p^p)^(1/p)``; p=1 is SPoC, p→∞ MAC."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


@dataclass(frozen=True)
class Region:
    """A square region of a feature map, in map cells: rows ``y:y+h``, columns ``x:x+w``."""

    y: int
    x: int
    h: int
    w: int
    level: int

    def as_fraction(self, H: int, W: int) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)`` as fractions of the map size, for drawing over the image."""
        return (self.x / W, self.y / H, (self.x + self.w) / W, (self.y + self.h) / H)


def rmac_regions(H: int, W: int, L: int = 3, overlap: float = 0.4) -> list[Region]:
    """R-MAC region grid of Tolias et al. 2016 (Sec. 3, "Regional feature vectors").

    At scale ``l = 1..L`` square regions of side ``2·min(W,H)/(l+1)`` are placed uniformly,
    ``l`` (plus a few) along each side, the number along the long side chosen so that
    consecutive regions overlap by about ``overlap`` (40 %). Follows the reference
    implementation (the authors' MATLAB code, mirrored by cirtorch ``rmac``), so a 4:3 map
    gives 20 regions for L = 3 and a square map 14. A map too small for any region
    yields the whole map as one region.
    """
    w = min(W, H)
    regions: list[Region] = []
    # Extra regions along the long side: choose among 1..6 the count whose overlap is nearest.
    wd = hd = 0
    if H != W and w > 0:
        best, best_err = 0, math.inf
        for idx, steps in enumerate(range(2, 8)):
            b = (max(H, W) - w) / (steps - 1)
            err = abs((w * w - w * b) / (w * w) - overlap)
            if err < best_err:
                best, best_err = idx, err
        if H < W:
            wd = best + 1
        else:
            hd = best + 1
    for level in range(1, L + 1):
        wl = math.floor(2 * w / (level + 1))
        if wl == 0:
            continue
        wl2 = math.floor(wl / 2 - 1)
        nw, nh = level + wd, level + hd
        bw = 0.0 if nw == 1 else (W - wl) / (nw - 1)
        bh = 0.0 if nh == 1 else (H - wl) / (nh - 1)
        xs = [int(math.floor(wl2 + i * bw) - wl2) for i in range(nw)]
        ys = [int(math.floor(wl2 + i * bh) - wl2) for i in range(nh)]
        for y in ys:
            for x in xs:
                regions.append(Region(y=y, x=x, h=min(wl, H - y), w=min(wl, W - x), level=level))
    if not regions:
        regions.append(Region(0, 0, H, W, level=0))
    return regions


def regional_pool(x: torch.Tensor, regions: list[Region], reduce: str = "max") -> torch.Tensor:
    """Pool each region of ``x``: ``(B,C,H,W) -> (B,R,C)`` with ``reduce`` in {max, avg}."""
    outs = []
    for r in regions:
        patch = x[..., r.y:r.y + r.h, r.x:r.x + r.w]
        outs.append(patch.amax(dim=(-2, -1)) if reduce == "max" else patch.mean(dim=(-2, -1)))
    return torch.stack(outs, dim=1)


def regional_max_pool(x: torch.Tensor, regions: list[Region]) -> torch.Tensor:
    """Per-region MAC (Tolias et al. 2016 eq. (2)): ``(B,C,H,W) -> (B,R,C)``."""
    return regional_pool(x, regions, "max")


def rmac_regions_with_whole(H: int, W: int, L: int = 3, whole_map: bool = False) -> list[Region]:
    """:func:`rmac_regions`, plus the whole map as one more region when ``whole_map``.

    The extra region is what the public reference code adds (cirtorch ``rmac`` starts from
    the global MAC; RAMAC's "21 regions" are the 20 of a 4:3 map plus the whole map).
    """
    regions = rmac_regions(H, W, L)
    return regions + [Region(0, 0, H, W, level=0)] if whole_map else regions


def rmac(x: torch.Tensor, L: int = 3, whole_map: bool = False) -> torch.Tensor:
    """R-MAC, Tolias et al. 2016 eq. (3) without whitening: ``l2(sum_R l2(f_R))``. ``(B,C)``.

    Regions from :func:`rmac_regions_with_whole`; each region vector is its MAC,
    l2-normalised, the region vectors are summed and the sum l2-normalised. (PCA-whitening of
    the region vectors, when wanted, is learned on the collection in :mod:`engine.descriptors.postprocess`.)
    """
    regions = rmac_regions_with_whole(x.shape[-2], x.shape[-1], L, whole_map)
    return l2n(l2n(regional_max_pool(x, regions)).sum(dim=1))


def multiscale_mean(vectors: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """Multi-scale descriptor (Radenović et al. 2018, Sec. 3.3 "multi-scale representation";
    cirtorch ``extract_ms``): ``l2((1/S · Σ_s v_s^p)^(1/p))`` over the ``S`` per-scale
    descriptors ``vectors (S, B, C)`` (each l2-normalised and non-negative); ``p = 1`` is the
    plain average (p = the GeM power for GeM vectors, as the reference code does).
    """
    if p == 1.0:
        return l2n(vectors.mean(dim=0))
    return l2n(vectors.clamp(min=0).pow(p).mean(dim=0).pow(1.0 / p))
