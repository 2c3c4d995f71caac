"""MS-RMAC: multi-layer regional MAC with hedge-learned layer weights (Li et al., IEEE SPL 2017).

Per layer j (a backbone tap), ``F_j = Σ_i f_{R_i}`` sums the MACs of the R-MAC regions
(:func:`engine.descriptors.pooling.rmac_regions`: side ``2·min(W,H)/(l+1)``, l = 1..3, ~40 % overlap);
the multi-layer feature is ``MF = [F_1, …, F_L]`` and the distance
``d(q,p) = Σ_j alpha_j ||F_j(p) − F_j(q)||`` with ``Σ_j alpha_j = 1`` (paper eq. for d(q,p)).

**Our design** (labelled): each ``F_j`` is l2-normalised before concatenation
(``layer_l2=True``). The paper sums raw regional MACs; raw sums of different layers differ in
scale by orders of magnitude, so the unnormalised distance would be dominated by one layer
whatever ``alpha`` is. Region MACs themselves are *not* normalised (as the paper writes).

Search: faiss ranks by the inner product of the per-layer l2 blocks scaled by ``sqrt(alpha_j)``
(exactly ``Σ_j alpha_j ||ΔF_j||²``, a proxy), and :meth:`MsRmacMethod.rescore` re-scores the
shortlist with the exact ``−d(q,p)`` (a sum of *unsquared* norms, not an inner product).

``alpha`` comes from ``main.py train-weights DATASET --method ms-rmac`` (NormalHedge, see
:mod:`engine.descriptors.hedge`), stored with the collection as state kind ``"hedge"``; uniform until then.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from engine.descriptors import pooling
from engine.nn.backbones import deep_taps, get_backbone
from engine.errors import LookalikeError
from engine.descriptors.postprocess import l2n_np
from engine.descriptors.methods.base import ExplainParts, Method, MethodConfig, MethodSpec, State

@dataclass(frozen=True)
class MsRmacConfig(MethodConfig):
    """``layers``: taps (shallow→deep; empty = the backbone's ``deep_taps``, engine/backbones).
    ``levels``/``overlap``: R-MAC region scales L and overlap (paper: 3, 40 %).
    ``layer_l2``: l2-normalise each ``F_j`` (our design, see module doc)."""

    layers: tuple[str, ...] = ()
    levels: int = 3
    overlap: float = 0.4
    layer_l2: bool = True


def region_mac_sum(x: torch.Tensor, levels: int = 3, overlap: float = 0.4) -> torch.Tensor:
    """``F_j = Σ_i f_{R_i}`` (MS-RMAC, Li et al. 2017, eq. for F_j): sum of region MACs. ``(B,C)``.

    Regions from :func:`engine.descriptors.pooling.rmac_regions`; region vectors are *not* normalised.
    """
    regions = pooling.rmac_regions(x.shape[-2], x.shape[-1], levels, overlap)
    return pooling.regional_max_pool(x, regions).sum(dim=1)


def weighted_layer_distance(q_blocks: Sequence[np.ndarray], p_blocks: Sequence[np.ndarray],
                            alpha: np.ndarray) -> np.ndarray:
    """``d(q,p) = Σ_j alpha_j ||F_j(p) − F_j(q)||`` (MS-RMAC distance). ``q_blocks[j]`` (C_j,),
    ``p_blocks[j]`` (N, C_j) -> (N,)."""
    d = np.zeros(len(p_blocks[0]), dtype=np.float64)
    for a, qb, pb in zip(alpha, q_blocks, p_blocks):
        d += float(a) * np.linalg.norm(pb.astype(np.float64) - qb.astype(np.float64), axis=1)
    return d


class MsRmacMethod(Method):
    """Concatenated per-layer ``F_j`` blocks; exact weighted distance by re-scoring."""
    explain_kind: ClassVar[str] = "regions"

    config_type: ClassVar[type[MethodConfig]] = MsRmacConfig
    stored_state_kinds: ClassVar[tuple[str, ...]] = ("hedge",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._dims: tuple[int, ...] | None = None
        self.alpha: np.ndarray | None = None  # None: uniform

    # -- layout -------------------------------------------------------------------------
    def layers(self) -> tuple[str, ...]:
        if self.config.layers:
            return tuple(self.config.layers)
        return deep_taps(self.config.backbone)

    def layer_dims(self) -> tuple[int, ...]:
        """Channels of each layer block (from the backbone; known after the first describe)."""
        if self._dims is None:
            bb = get_backbone(self.config.backbone, None, "cpu")
            self._dims = tuple(int(bb.tap_channels[t]) for t in self.layers())
        return self._dims

    def split(self, raw: np.ndarray) -> list[np.ndarray]:
        """Raw descriptors ``(N, D)`` or ``(D,)`` -> per-layer blocks ``F_j`` (views)."""
        dims = self.layer_dims()
        if raw.shape[-1] != sum(dims):
            raise LookalikeError(f"ms-rmac descriptor has {raw.shape[-1]} dims, expected {sum(dims)} ({dims}).")
        return np.split(raw, np.cumsum(dims)[:-1], axis=-1)

    def weights(self) -> np.ndarray:
        """Layer weights ``alpha`` (trained with NormalHedge, else uniform)."""
        n = len(self.layers())
        if self.alpha is None or len(self.alpha) != n:
            return np.full(n, 1.0 / n)
        return np.asarray(self.alpha, dtype=np.float64)

    def set_stored_state(self, kind: str, state: State | None) -> None:
        if kind == "hedge":
            self.alpha = None if state is None else np.asarray(state["alpha"], dtype=np.float64)

    # -- extraction ---------------------------------------------------------------------
    def layer_blocks_of_maps(self, maps: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per-layer ``F_j`` (l2'd when ``layer_l2``) of one image's ``{tap: (C,h,w)}`` maps."""
        out = []
        for t in self.layers():
            f = region_mac_sum(maps[t].unsqueeze(0), self.config.levels, self.config.overlap)[0]
            out.append(pooling.l2n(f) if self.config.layer_l2 else f)
        return out

    def describe(self, images: Sequence[Image.Image], extractor) -> np.ndarray:
        layers = self.layers()
        self._dims = tuple(int(extractor.backbone.tap_channels[t]) for t in layers)
        maps = extractor.feature_maps(images, self.config.image_side, list(layers))
        return torch.stack([torch.cat(self.layer_blocks_of_maps(m)) for m in maps]).numpy().astype(np.float32)

    # -- search -------------------------------------------------------------------------
    def fit(self, raw: np.ndarray) -> State | None:
        return None  # no learned post-processing (the paper uses neither PCA nor whitening)

    def search_vectors(self, raw: np.ndarray, fit_state: State | None) -> np.ndarray:
        """Blocks scaled by ``sqrt(alpha_j)`` then l2: inner product ranks like ``Σ alpha_j ||ΔF_j||²``."""
        alpha = self.weights()
        blocks = self.split(np.atleast_2d(raw))
        return l2n_np(np.concatenate([np.sqrt(a) * b for a, b in zip(alpha, blocks)], axis=1))

    def rescore(self, query_raw: np.ndarray, candidates_raw: np.ndarray, fit_state: State | None) -> np.ndarray:
        """Exact ``−d(q,p) = −Σ_j alpha_j ||F_j(p) − F_j(q)||`` of the shortlist."""
        return -weighted_layer_distance(self.split(query_raw), self.split(candidates_raw), self.weights())

    def layer_distances(self, query_raw: np.ndarray, db_raw: np.ndarray) -> np.ndarray:
        """``(L, N)`` unweighted per-layer distances ``||F_j(p) − F_j(q)||`` (for the hedge)."""
        return np.stack([np.linalg.norm(pb.astype(np.float64) - qb.astype(np.float64), axis=1)
                         for qb, pb in zip(self.split(query_raw), self.split(np.atleast_2d(db_raw)))])

    # -- explanation --------------------------------------------------------------------
    def explain_parts(self, image: Image.Image, extractor, fit_state: State | None) -> ExplainParts:
        """Kind ``"regions"``: one part per (layer, R-MAC region).

        ``F_j = Σ_i f_{R_i}`` is a plain sum and the search vector's block j is ``c_j · F_j``
        (c_j: the sqrt(alpha_j) weight and the l2 scalings), so region i of layer j owns
        ``c_j · f_{R_i}`` in block j: the parts sum exactly to the search vector (bias 0).
        Masks are the regions on the finest layer's grid (each layer's regions are placed on
        that layer's own map, so the same region index can differ by a cell between layers).
        ``extras``: ``alpha`` (L,), ``layer_of_part`` (P,) and ``level_of_part`` (P,).
        """
        layers = self.layers()
        maps = extractor.feature_maps([image], self.config.image_side, list(layers))[0]
        self._dims = tuple(int(maps[t].shape[0]) for t in layers)
        raw = torch.cat(self.layer_blocks_of_maps(maps)).numpy().astype(np.float32)[None]
        sv = self.search_vectors(raw, fit_state)[0].astype(np.float64)
        sv_blocks = self.split(sv)
        gh, gw = max(((int(maps[t].shape[-2]), int(maps[t].shape[-1])) for t in layers), key=lambda s: s[0] * s[1])
        vectors, masks, labels, layer_of, level_of = [], [], [], [], []
        offsets = np.concatenate([[0], np.cumsum(self._dims)])
        for j, t in enumerate(layers):
            x = maps[t].unsqueeze(0)
            regions = self.regions(x.shape[-2], x.shape[-1])
            f = pooling.regional_max_pool(x, regions)[0].double().numpy()  # (R, C_j)
            F_j = f.sum(0)
            denom = float(F_j @ F_j)
            c_j = float(sv_blocks[j] @ F_j) / denom if denom > 0 else 0.0
            for i, r in enumerate(regions):
                v = np.zeros(sv.shape[0], np.float64)
                v[offsets[j]:offsets[j + 1]] = c_j * f[i]
                vectors.append(v)
                x1, y1, x2, y2 = r.as_fraction(x.shape[-2], x.shape[-1])
                m = np.zeros((gh, gw), np.float32)
                m[int(round(y1 * gh)):max(int(round(y1 * gh)) + 1, int(round(y2 * gh))),
                  int(round(x1 * gw)):max(int(round(x1 * gw)) + 1, int(round(x2 * gw)))] = 1.0
                masks.append(m)
                labels.append(f"{t} region {i + 1} (scale {r.level})")
                layer_of.append(j)
                level_of.append(r.level)
        return ExplainParts("regions", labels, np.stack(masks), np.stack(vectors).astype(np.float32),
                            np.zeros(sv.shape[0], np.float32),
                            {"alpha": self.weights().astype(np.float32), "layer_of_part": np.array(layer_of, np.int64),
                             "level_of_part": np.array(level_of, np.int64)})

    def regions(self, H: int, W: int) -> list[pooling.Region]:
        """The R-MAC regions of an ``H x W`` map (same grid on every layer, in that layer's cells)."""
        return pooling.rmac_regions(H, W, self.config.levels, self.config.overlap)

    def region_maxima(self, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{layer: (R, C) region MACs}`` of one image's maps (for the why-matched view)."""
        out = {}
        for t in self.layers():
            x = maps[t].unsqueeze(0)
            out[t] = pooling.regional_max_pool(x, self.regions(x.shape[-2], x.shape[-1]))[0]
        return out


SPECS = (
    MethodSpec("ms-rmac", MsRmacMethod, MsRmacConfig(),
               "MS-RMAC: regional MAC sums of 3-4 layers, distance weighted per layer by NormalHedge "
               "weights from 'train-weights' (Li et al. 2017)", "medium"),
)
