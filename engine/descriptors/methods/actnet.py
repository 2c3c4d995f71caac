"""ACTNET: learnable activations before average pooling, multi-stream aggregation (``papers/actnet.txt``).

Per stream ``j`` (a backbone tap; the last two conv stages), ACTNET Sec. 3.3 eqs. (18)-(21):

    X̂ = X / s(X)                (our design: s = mean channel maximum, see activations.stream_scale)
    A = f_j(X̂)                  (eq. (18): learnable activation, SinH / Exp / modified Weibull)
    y = mean_{h,w} A            (eq. (19): global average pooling)
    z_j = gamma_j * (y + eps)^rho_j   (eq. (20): fractional power normalisation, learnable)

the descriptor is ``[z_1, z_2]`` (eq. (23): concatenation), then PCA+whitening implemented as a
fully connected layer (``W = P``, ``b = -P·mean``) initialised from the collection's PCA in
:meth:`ActnetMethod.fit`, then l2. The activation forms and initial values are OUR DESIGN
(the paper's were lost): see :mod:`engine.descriptors.activations`. ``actnet-direct`` is the paper's
"direct aggregation" baseline: identity activation, everything else equal.

Raw descriptors (stored in the catalog) are the concatenation before whitening. Parameters
trained by ``main.py train`` (the activations and power normalisation only: the backbone is
frozen, and whitening is re-fit on each collection) are stored per collection as state kind
``"trained"`` and loaded by :meth:`set_stored_state`, which checks method and backbone.
Mobile-ACTNET (MobileNetV2, taps ``block17`` + ``head``) is registered only when MobileNetV2
ImageNet weights are on this machine.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from engine.descriptors import pooling
from engine.descriptors.activations import FractionalPower, make_activation, stream_scale
from engine.nn.backbones import deep_taps
from engine.descriptors.postprocess import fit_pca_whitening, l2n_np
from engine.descriptors.methods.base import Method, MethodConfig, MethodSpec, State

log = logging.getLogger(__name__)

X_MAX = 20.0  # normalised inputs are clamped here so exp/sinh cannot overflow float32


@dataclass(frozen=True)
class ActnetConfig(MethodConfig):
    """``activation``: identity | sinh | exp | weibull. ``taps``: streams (empty = last two stages).
    ``whiten``: PCA+whitening layer fitted on the collection (paper: yes), used only when the
    collection has at least ``whiten_min_images`` photos (None: as many as descriptor dims;
    our rule: on 300 photos, 1600-d, whitening dropped oxford mAP from 0.84 to 0.51).
    ``initial_rate``: SinH's / Exp's initial ``alpha`` (None: 1.5, the value collections indexed
    before this setting existed were described with, so their stored configs still match)."""

    omitted_when_none: ClassVar[tuple[str, ...]] = ("initial_rate",)

    activation: str = "weibull"
    initial_rate: float | None = None
    taps: tuple[str, ...] = ()
    whiten: bool = True
    whiten_min_images: int | None = None


class ActnetHead(nn.Module):
    """The trainable part of ACTNET: one (activation, power normalisation) pair per stream."""

    def __init__(self, taps: Sequence[str], activation: str, rate: float | None = None):
        super().__init__()
        self.taps = tuple(taps)
        self.acts = nn.ModuleList([make_activation(activation, rate) for _ in self.taps])
        self.powers = nn.ModuleList([FractionalPower() for _ in self.taps])

    def stream(self, j: int, x: torch.Tensor) -> torch.Tensor:
        """Stream ``j`` on maps ``(B,C,H,W)`` -> ``(B,C)`` (eqs. (18)-(20))."""
        xh = (x / stream_scale(x)).clamp(max=X_MAX)
        return self.powers[j](self.acts[j](xh).mean(dim=(-2, -1)))

    def raw(self, items: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Concatenated streams ``(B, sum C_j)`` of per-image ``{tap: (C,h,w)}`` maps (eq. (23))."""
        rows = []
        for it in items:
            rows.append(torch.cat([self.stream(j, it[t].float().unsqueeze(0))[0] for j, t in enumerate(self.taps)]))
        return torch.stack(rows)

    def forward(self, items: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Training descriptors: l2 of the concatenation (whitening is per collection, not trained)."""
        return pooling.l2n(self.raw(items))


def whitening_layer(fit_state: State) -> nn.Linear:
    """The PCA+whitening transform as a fully connected layer: ``W = proj``, ``b = -proj·mean``."""
    proj = torch.as_tensor(fit_state["proj"], dtype=torch.float32)
    mean = torch.as_tensor(fit_state["mean"], dtype=torch.float32)
    fc = nn.Linear(proj.shape[1], proj.shape[0], bias=True)
    with torch.no_grad():
        fc.weight.copy_(proj)
        fc.bias.copy_(-proj @ mean)
    return fc


def whitening_fit(config, raw: np.ndarray) -> State | None:
    """PCA-whitening of the collection's raw descriptors when ``config.whiten`` and the
    collection is big enough (``whiten_min_images``, default: the descriptor dimension)."""
    need = config.whiten_min_images if config.whiten_min_images is not None else raw.shape[1]
    if config.whiten and len(raw) >= max(2, need):
        return fit_pca_whitening(raw, config.whiten_dims)
    return None


class TrainedHeadMixin:
    """Shared handling of the ``"trained"`` catalog state (head parameters + meta JSON)."""

    stored_state_kinds: ClassVar[tuple[str, ...]] = ("trained",)

    def head_arrays(self) -> dict[str, np.ndarray]:
        return {f"param:{k}": v.detach().cpu().numpy() for k, v in self.head.state_dict().items()}

    def load_head_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        sd = {k[len("param:"):]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("param:")}
        self.head.load_state_dict(sd)

    def set_stored_state(self, kind: str, state: State | None) -> None:
        if kind != "trained":
            return
        from engine.training.pipeline import decode_meta

        self.trained_meta = None
        if state is None:
            return
        meta = decode_meta(state)
        problems = []
        if meta.get("method") != self.name:
            problems.append(f"it was trained for method '{meta.get('method')}'")
        if meta.get("backbone") != self.config.backbone:
            problems.append(f"it was trained with backbone '{meta.get('backbone')}', not '{self.config.backbone}'")
        if problems:
            log.warning("Ignoring trained weights of %s: %s.", self.name, "; ".join(problems))
            return
        try:
            self.load_head_arrays(state)
        except (RuntimeError, KeyError) as exc:
            log.warning("Ignoring trained weights of %s: they do not fit this configuration (%s).", self.name, exc)
            return
        self.trained_meta = meta


class ActnetMethod(TrainedHeadMixin, Method):
    config_type: ClassVar[type[MethodConfig]] = ActnetConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head = ActnetHead(self.taps(), self.config.activation, self.config.initial_rate)
        self.head.eval()
        self.trained_meta: dict[str, Any] | None = None

    def taps(self) -> tuple[str, ...]:
        if self.config.taps:
            return tuple(self.config.taps)
        # ACTNET: "the final two convolutional blocks".
        return deep_taps(self.config.backbone, last=2)

    # -- training interface (engine.training.pipeline) ----------------------------------
    def training_encode(self, images: Sequence[Image.Image], extractor) -> list[dict[str, torch.Tensor]]:
        """Per-image cached inputs of the head: the stream maps, float16."""
        maps = extractor.feature_maps(images, self.config.image_side, list(self.taps()))
        return [{t: m[t].half() for t in self.taps()} for m in maps]

    # -- extraction ---------------------------------------------------------------------
    @torch.no_grad()
    def describe(self, images: Sequence[Image.Image], extractor) -> np.ndarray:
        maps = extractor.feature_maps(images, self.config.image_side, list(self.taps()))
        return self.head.raw(maps).numpy().astype(np.float32)

    def fit(self, raw: np.ndarray) -> State | None:
        return whitening_fit(self.config, raw)

    @torch.no_grad()
    def search_vectors(self, raw: np.ndarray, fit_state: State | None) -> np.ndarray:
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float32))
        if fit_state is not None and "proj" in fit_state:
            return l2n_np(whitening_layer(fit_state)(torch.from_numpy(raw)).numpy())
        return l2n_np(raw)


def _mobilenet_weights_present() -> bool:
    try:
        import torchvision.models as tvm

        from engine.nn.backbones.torchvision_nets import hub_checkpoint_dir

        return any((hub_checkpoint_dir() / w.url.rsplit("/", 1)[-1]).is_file() for w in tvm.MobileNet_V2_Weights)
    except (ImportError, AttributeError, OSError):  # no weights API, unreadable cache: the registry still loads
        return False


_ACT_TEXT = {
    "identity": "direct aggregation (plain average; the ACTNET paper's baseline)",
    "sinh": "learnable SinH activation",
    "exp": "learnable Exp activation",
    "weibull": "learnable modified-Weibull activation",
}
# SinH / Exp start at alpha 0.25, not 1.5 (chosen on paris_dev, every positive as a query, 122
# queries, no re-ranking: 1.5 -> 0.25 took actnet-sinh from 0.79 to 0.93 whole-photo; 0.5 and 1.0
# scored 0.927 / 0.843): at 1.5 the few strongest channels carried most of the untrained
# descriptor (top-5 channels 66 % of its energy). Training moves alpha from there.
_INITIAL_RATE = {"sinh": 0.25, "exp": 0.25}
SPECS = tuple(
    MethodSpec(f"actnet-{suffix}", ActnetMethod, ActnetConfig(activation=act, initial_rate=_INITIAL_RATE.get(act)),
               f"ACTNET ({_ACT_TEXT[act]}) on the last two stages, average pooling, fractional power, "
               "concatenation, PCA-whitening; trainable with 'train' (activation forms are our design)", "fast")
    for suffix, act in (("direct", "identity"), ("sinh", "sinh"), ("exp", "exp"), ("weibull", "weibull"))
) + ((MethodSpec("mobile-actnet", ActnetMethod, ActnetConfig(backbone="mobilenet_v2", activation="weibull"),
                 "Mobile-ACTNET: Weibull ACTNET head on MobileNetV2 (block17 + head)", "fast"),)
     if _mobilenet_weights_present() else ())
