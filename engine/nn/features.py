"""Feature extraction: PIL images -> named feature maps of a backbone, batched on a device.

Images are resized so their longest side equals the requested side, grouped by the
resulting shape and sent through the network in batches; a failing or out-of-memory
accelerator falls back to smaller batches and then the CPU (never a crash).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from engine.nn.backbones import DEFAULT_BACKBONE, Backbone, get_backbone
from engine.nn.device import run_batched_with_fallback, select_device
from engine.nn.onnx_trunk import OnnxTrunk, cpu_runtime_wanted, onnxruntime_version
from engine.imaging.images import resize_longest_side

log = logging.getLogger(__name__)
MIN_SIDE = 32  # smallest input side: below this the deepest taps would be empty


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float tensor ``(3,H,W)`` in [0,1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


# Images per forward pass. On the CPU one at a time is the fastest and leanest: indexing
# 12 MP JPEGs on 2 cores ran at 9.36 images/s with forward batch 1 and 4.46 with 8
# (docs/BENCHMARKS.md), 1024x768 photos at 8.6 vs 7.8, and seddati's 1050 px maps peaked at
# 1.8 GB with batch 2 vs 2.6 GB with 8. An accelerator needs batches to be kept busy.
CPU_FORWARD_BATCH = 1
ACCELERATOR_FORWARD_BATCH = 8


def _runtime_words(onnx: bool, device: torch.device) -> str:
    if onnx:
        return f"ONNX Runtime {onnxruntime_version()} on the CPU"
    return f"PyTorch {torch.__version__.split('+')[0]} on {device.type.upper()}"


def planned_runtime(device: str = "auto") -> str:
    """What will run the network for ``device`` (as :meth:`FeatureExtractor.runtime_description`
    says once running), without loading a model."""
    chosen = select_device(device)
    return _runtime_words(chosen.type == "cpu" and cpu_runtime_wanted(), chosen)


class FeatureExtractor:
    """A backbone on a device, turning images into feature maps of selected taps."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE, device: str | torch.device = "auto",
                 weights: str | Path | None = None, batch_size: int | None = None, half: bool | None = None,
                 channels_last: bool = True, runtime: str = "auto"):
        """``batch_size``: images per forward pass (None: ``CPU_FORWARD_BATCH`` on the CPU,
        ``ACCELERATOR_FORWARD_BATCH`` on an accelerator). ``half``: fp16 weights and inputs on CUDA
        (None = on CUDA only; never on the CPU, where fp16 convolutions are slow).
        ``channels_last``: NHWC memory format (on 2 CPU cores ~1.5x faster for the default
        backbone, see docs/BENCHMARKS.md); outputs are the same up to float rounding.
        ``runtime``: "auto" runs the trunk on ONNX Runtime when the device is the CPU and it is
        installed (:mod:`engine.nn.onnx_trunk`; ``LOOKALIKE_RUNTIME=torch`` turns it off),
        "torch" always uses PyTorch."""
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.backbone_name = backbone
        self.weights = weights
        self.batch_size = batch_size or (CPU_FORWARD_BATCH if self.device.type == "cpu" else ACCELERATOR_FORWARD_BATCH)
        self.half = (self.device.type == "cuda") if half is None else (half and self.device.type == "cuda")
        self.channels_last = channels_last
        self.backbone: Backbone = self._optimised(get_backbone(backbone, weights, self.device))
        # fp16 copy used only by feature_maps (code that uses ``self.backbone`` directly keeps fp32).
        self._half_backbone: Backbone | None = copy.deepcopy(self.backbone).half() if self.half else None
        self._cpu_backbone: Backbone | None = None
        self._lock = threading.Lock()
        self.use_onnx = runtime != "torch" and cpu_runtime_wanted()
        self._onnx_trunks: dict[tuple[str, ...], OnnxTrunk | None] = {}
        self._onnx_lock = threading.Lock()

    @property
    def concurrent(self) -> bool:
        """Several threads may run forward passes at once (ONNX Runtime sessions are thread
        safe; the PyTorch path is serialised by a lock): the indexer then describes photos in
        every worker (:func:`engine.indexing.indexer.plan_threads`)."""
        return self.device.type == "cpu" and self.use_onnx

    def runtime_description(self) -> str:
        """What runs the network, as the app and ``methods`` show it."""
        if self.concurrent and not self._onnx_trunks:
            return _runtime_words(True, self.device) + " (exported at the first photo)"
        return _runtime_words(self.concurrent and any(self._onnx_trunks.values()), self.device)

    def _onnx_trunk(self, taps: tuple[str, ...]) -> OnnxTrunk | None:
        """The exported trunk for ``taps``, or None (PyTorch) when export or its check fails."""
        with self._onnx_lock:
            return self._onnx_trunk_locked(taps)

    def _onnx_trunk_locked(self, taps: tuple[str, ...]) -> OnnxTrunk | None:
        if taps not in self._onnx_trunks:
            try:
                self._onnx_trunks[taps] = OnnxTrunk(self._model_on(torch.device("cpu")), taps)
            except (RuntimeError, ValueError, OSError, ImportError, torch.onnx.errors.OnnxExporterError) as exc:
                log.warning("ONNX Runtime not used for %s taps %s, PyTorch runs them: %s",
                            self.backbone_name, list(taps), exc)
                self._onnx_trunks[taps] = None
        return self._onnx_trunks[taps]

    def _optimised(self, model: Backbone) -> Backbone:
        # The backbone is cached per (name, weights, device) and shared: converting its memory
        # format changes neither its results nor its interface.
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _model_on(self, device: torch.device) -> Backbone:
        if device == self.device:
            return self._half_backbone if self._half_backbone is not None else self.backbone
        if self._cpu_backbone is None:
            self._cpu_backbone = self._optimised(get_backbone(self.backbone_name, self.weights, device))
        return self._cpu_backbone

    def prepare(self, img: Image.Image, side: int | None) -> torch.Tensor:
        """Resize (longest side = ``side``, shorter side >= 32) and convert to ``(3,H,W)``."""
        if side:
            img = resize_longest_side(img, side, min_side=MIN_SIDE)
        elif min(img.size) < MIN_SIDE:
            s = MIN_SIDE / min(img.size)
            img = img.resize((max(MIN_SIDE, round(img.width * s)), max(MIN_SIDE, round(img.height * s))))
        return image_to_tensor(img)

    @torch.inference_mode()
    def feature_maps(self, images: Sequence[Image.Image | torch.Tensor], side: int | None,
                     taps: Sequence[str]) -> list[dict[str, torch.Tensor]]:
        """For each image, ``{tap: (C,h,w) float32 CPU tensor}`` at input longest side ``side``.

        Images may also be given as prepared ``(3,H,W)`` tensors in [0,1].
        """
        tensors = [im if isinstance(im, torch.Tensor) else self.prepare(im, side) for im in images]
        out: list[dict[str, torch.Tensor] | None] = [None] * len(tensors)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault(tuple(t.shape[-2:]), []).append(i)

        def run(chunk: Sequence[int], device: torch.device) -> list[dict[str, torch.Tensor]]:
            trunk = self._onnx_trunk(tuple(taps)) if device.type == "cpu" and self.use_onnx else None
            if trunk is not None:
                arrays = trunk.run(torch.stack([tensors[i] for i in chunk]).numpy())
                return [{t: torch.from_numpy(a[j]) for t, a in zip(trunk.taps, arrays)} for j in range(len(chunk))]
            model = self._model_on(device)
            dtype = next(model.parameters()).dtype
            x = torch.stack([tensors[i] for i in chunk])
            if device.type == "cuda":
                x = x.pin_memory()  # page-locked, so the copy below can overlap host work
            x = x.to(device, non_blocking=True).to(dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            feats = model.forward_taps(model.normalize(x), list(taps))
            cpu = {k: v.float().cpu().contiguous() for k, v in feats.items()}
            return [{k: v[j] for k, v in cpu.items()} for j in range(len(chunk))]

        onnx = self.device.type == "cpu" and self.use_onnx and self._onnx_trunk(tuple(taps)) is not None
        with contextlib.nullcontext() if onnx else self._lock:  # ONNX Runtime runs concurrently
            for idx in groups.values():
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s:s + self.batch_size]
                    for i, res in zip(chunk, run_batched_with_fallback(chunk, run, self.device)):
                        out[i] = res
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def class_activation_map(self, cam_tap_features: torch.Tensor) -> tuple[torch.Tensor, int]:
        """CAM of one image's ``cam_tap`` features ``(C,h,w)`` -> ``((h,w) map, top class)``."""
        model = self.backbone
        feats = cam_tap_features.unsqueeze(0).to(next(model.parameters()).device)
        maps, cls = model.class_activation_map(feats)
        return maps[0].float().cpu(), int(cls[0])
