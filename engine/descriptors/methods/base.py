"""The method interface every descriptor method implements, and its typed config.

Life of a descriptor:

1. ``prepare`` (optional, once per collection, on a sample of its photos): state the
   extraction itself needs, e.g. cluster-MAC's local-feature PCA. Stored in the catalog as
   kind ``"prepare"`` and given back with :meth:`Method.set_prepared` before describing.
2. ``describe``: a batch of upright RGB images -> raw descriptors ``(B, D)`` float32, stored
   in the catalog. Raw descriptors never depend on other photos of the collection (beyond
   the prepared state), so incremental indexing stays valid.
3. ``fit`` (optional, whenever the collection changed): post-processing learned on all raw
   descriptors (PCA-whitening, PFA...). Stored as kind ``"fit"`` with the generation.
4. ``search_vectors``: raw + fit state -> l2-normalised vectors for the faiss
   inner-product index. ``rescore`` (optional) re-scores a faiss shortlist exactly when the
   method's similarity is not an inner product (MS-RMAC's weighted distance, min L1...).

Methods are registered in :mod:`engine.descriptors.methods` by a :class:`MethodSpec`: a name, the
class and a default config (variants are the same class with another config).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
from PIL import Image

from engine.nn.backbones import DEFAULT_BACKBONE
from engine.errors import LookalikeError
from engine.imaging.images import crop_box
from engine.descriptors.postprocess import apply_pca_whitening, fit_pca_whitening, l2n_np

State = dict[str, np.ndarray]


@dataclass
class ExplainParts:
    """Additive parts of one image's search vector, for overlays and the why-matched view.

    ``kind``: ``"regions"``, ``"clusters"``, ``"cam"``, ``"layers"`` or ``"image"``.
    ``labels``: one name per part. ``masks``: ``(P, h, w)`` float32 in [0, 1] on a grid that
    covers the whole (upright) image; the overlay scales it to the picture. ``vectors``:
    ``(P, D)`` float32 with ``vectors.sum(0) + bias == search_vectors(raw)`` of the image, so
    ``vectors @ other_search_vector`` splits an inner-product score into per-part shares that
    sum to it. ``bias``: the part of the search vector owned by no part (e.g. whitening's mean
    shift; zeros when there is none). ``extras``: method-specific arrays for the GUI (CAM heat
    map, cluster label map, ...).
    """

    kind: str
    labels: list[str]
    masks: np.ndarray
    vectors: np.ndarray
    bias: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodConfig:
    """Settings shared by every method (subclass it for a method's own settings).

    ``image_side``: longest side of the network input in pixels (the image is scaled to it).
    ``whiten``: learn PCA-whitening on the collection's descriptors (``whiten_dims`` keeps
    that many components; None keeps all the data supports).
    """

    backbone: str = DEFAULT_BACKBONE
    image_side: int = 512
    whiten: bool = False
    whiten_dims: int | None = None

    #: Settings added after collections were indexed, whose ``None`` means "as before the
    #: setting existed": left out of :meth:`to_dict` while ``None``, so the config stored by
    #: such a collection (which lacks them) still equals the method's config read back from it.
    omitted_when_none: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in self.omitted_when_none:
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(names)
        if unknown:
            raise LookalikeError(f"Unknown setting(s) {sorted(unknown)} for {cls.__name__}; known: {sorted(names)}.")
        values = {}
        for k, v in data.items():
            if isinstance(v, list):  # JSON has no tuples
                v = tuple(v)
            values[k] = v
        return cls(**values)


def is_trainable(method) -> bool:
    """A method whose head ``train`` can fit: it has the trainable-head interface of
    :mod:`engine.training.pipeline` (``head``, ``training_encode``, ``head_arrays``, ...)."""
    return all(hasattr(method, a) for a in ("head", "training_encode", "head_arrays", "load_head_arrays"))


class Method:
    """Base class of descriptor methods. Subclasses implement :meth:`describe`."""

    config_type: ClassVar[type[MethodConfig]] = MethodConfig
    prepare_sample_size: ClassVar[int] = 0  # > 0: prepare() needs that many sample photos
    supports_activation_crop: ClassVar[bool] = False
    # Extra learned states (catalog kinds, e.g. MS-RMAC's "hedge" weights) given back by
    # Collection.method() through set_stored_state() (None when the catalog has none).
    stored_state_kinds: ClassVar[tuple[str, ...]] = ()
    # The ``ExplainParts.kind`` that explain_parts() returns ("regions", "clusters", ...).
    explain_kind: ClassVar[str] = "image"

    def __init__(self, name: str, config: MethodConfig, description: str = "", cost: str = ""):
        if not isinstance(config, self.config_type):
            raise TypeError(f"{type(self).__name__} needs a {self.config_type.__name__}")
        self.name = name
        self.config = config
        self.description = description
        self.cost = cost
        self.prepared: State | None = None

    # -- extraction ---------------------------------------------------------------------
    def decode_side(self) -> int:
        """Longest side the indexer must decode images at (the largest input resolution)."""
        return self.config.image_side

    def describe(self, images: Sequence[Image.Image], extractor) -> np.ndarray:
        """Raw descriptors ``(len(images), D)`` float32 for upright RGB images."""
        raise NotImplementedError

    def describe_query(self, image: Image.Image, extractor, box=None, box_mode: str = "image") -> np.ndarray:
        """Raw descriptor ``(D,)`` of a query, optionally restricted to ``box`` (x1,y1,x2,y2 px).

        ``box_mode="image"`` crops the image (crop I); ``"activations"`` crops the feature maps
        (crop X) and is available where ``supports_activation_crop`` is true.
        """
        if box is not None:
            if box_mode == "activations":
                if not self.supports_activation_crop:
                    raise LookalikeError(f"Method '{self.name}' cannot crop activations; use box mode 'image'.")
                return self.describe_with_activation_crop(image, extractor, box)
            return self.describe_crop(crop_box(image, box), image.size, extractor)
        return self.describe([image], extractor)[0]

    def describe_crop(self, crop: Image.Image, photo_size: tuple[int, int], extractor) -> np.ndarray:
        """Raw descriptor of a query box cut from a photo of ``photo_size`` (crop I). Default:
        the crop is described like a whole photo (enlarged to the method's input side)."""
        return self.describe([crop], extractor)[0]

    def describe_with_activation_crop(self, image: Image.Image, extractor, box) -> np.ndarray:
        raise NotImplementedError

    # -- learned state ------------------------------------------------------------------
    def prepare(self, images: Sequence[Image.Image], extractor) -> State:
        raise NotImplementedError

    def set_prepared(self, state: State | None) -> None:
        self.prepared = state

    def set_stored_state(self, kind: str, state: State | None) -> None:
        """Receive a stored state of a kind listed in ``stored_state_kinds`` (default: ignore)."""

    def fit(self, raw: np.ndarray) -> State | None:
        """Learn post-processing on the collection's raw descriptors (default: whitening if set)."""
        if self.config.whiten and len(raw) >= 2:
            return fit_pca_whitening(raw, self.config.whiten_dims)
        return None

    def search_vectors(self, raw: np.ndarray, fit_state: State | None) -> np.ndarray:
        """l2-normalised vectors whose inner product is the method's similarity (or its proxy)."""
        if fit_state is not None and "proj" in fit_state:
            return apply_pca_whitening(raw, fit_state)
        return l2n_np(raw)

    def rescore(self, query_raw: np.ndarray, candidates_raw: np.ndarray, fit_state: State | None) -> np.ndarray | None:
        """Exact similarity of a shortlist (higher is better), or None when inner product is exact."""
        return None

    # -- explanation ----------------------------------------------------------------------
    def explain_parts(self, image: Image.Image, extractor, fit_state: State | None) -> ExplainParts:
        """Split the image's search vector into parts (default: one part, the whole image).

        Methods with regions or clusters override this (see :class:`ExplainParts`).
        """
        vec = self.search_vectors(self.describe([image], extractor), fit_state)[0].astype(np.float32)
        return ExplainParts("image", ["whole image"], np.ones((1, 1, 1), np.float32), vec[None, :],
                            np.zeros_like(vec))

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "cost": self.cost, "config": self.config.to_dict()}

    def capabilities(self) -> frozenset[str]:
        """What the method offers beyond search, known without computing anything: its
        explanation kind (``"regions"``, ``"clusters"``, ``"layers"``, ``"cam"``; ``"image"`` is
        no overlay), ``"cam"`` where the backbone has a linear classifier (the CAM overlay),
        ``"activation_crop"`` and ``"train"`` ("Adapt to my photos")."""
        from engine.nn.backbones import backbone_has_classifier

        caps = {self.explain_kind} - {"image"}
        if backbone_has_classifier(self.config.backbone):
            caps.add("cam")
        if self.supports_activation_crop:
            caps.add("activation_crop")
        if is_trainable(self):
            caps.add("train")
        return frozenset(caps)


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: how to build method ``name``."""

    name: str
    cls: type[Method]
    config: MethodConfig
    description: str
    cost: str = "fast"
    # For people choosing a method: a plain-words line (speed, what it is good at) and whether
    # it is in the short list the app shows first (the rest are research variants).
    summary: str = ""
    recommended: bool = False

    def create(self, overrides: dict[str, Any] | None = None) -> Method:
        cfg = self.config
        if overrides:
            cfg = type(cfg).from_dict({**cfg.to_dict(), **overrides})
        return self.cls(self.name, cfg, self.description, self.cost)

    def info(self, default_name: str, measured: dict[str, dict] | None = None) -> dict[str, Any]:
        """The registry entry as ``list_methods`` shows it: names, words, what the method
        supports, and its measured speed and accuracy (``measured``: name -> numbers from
        ``make results``, see :mod:`engine.descriptors.methods.measured`; None where not measured)."""
        m = (measured or {}).get(self.name, {})
        method = self.create()
        return {"name": self.name, "description": self.description, "cost": self.cost,
                "summary": self.summary or self.description, "recommended": self.recommended,
                "default": self.name == default_name, "supports": sorted(method.capabilities()),
                "images_per_s": m.get("images_per_s"), "measured": m or None,
                "config": method.config.to_dict()}
