"""The backbone trunk on ONNX Runtime: the CPU inference path (PyTorch stays for training,
for accelerators and as the fallback).

Why: on this project's CPU machine, one thread, the EfficientNet-Lite0 trunk to its ``head``
tap took 195-289 ms in ONNX Runtime vs 764-849 ms in PyTorch eager at 1024x768 (the same graph,
outputs equal to 2.7e-6 relative; docs/BENCHMARKS.md). ORT fuses conv + batch-norm + activation
and runs NCHWc kernels that eager PyTorch does not.

The trunk with the taps a method needs (and the input normalisation) is exported once per
(backbone, taps, weights) with height and width dynamic, cached under the user cache folder,
its file name a hash of everything that shapes the graph: backbone name, taps, a hash of the
weights, torch version and opset. Each export is checked against PyTorch on two odd-sized
probes before use: a backbone whose graph bakes the input size in (TF "same" padding computed
from the traced shape) fails the check and stays on PyTorch, logged, never silently wrong.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from engine.nn.backbones import Backbone
from engine.store.atomic import atomic_write_bytes
from engine.store.paths import cache_dir

log = logging.getLogger(__name__)
OPSET = 17
EXPORT_VERSION = 1  # bump when the export wrapper changes what the graph computes
# Largest |ORT - torch| / max|torch| accepted on the probes (measured 2-3e-6: float rounding).
MAX_RELATIVE_ERROR = 1e-4
_PROBE_SHAPES = ((1, 3, 67, 93), (1, 3, 101, 75))
RUNTIME_ENV = "LOOKALIKE_RUNTIME"  # "torch" forces PyTorch on the CPU; "auto" (default)


def onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def cpu_runtime_wanted() -> bool:
    """ONNX Runtime for CPU inference unless it is missing or ``LOOKALIKE_RUNTIME=torch``."""
    return os.environ.get(RUNTIME_ENV, "auto").lower() != "torch" and onnxruntime_version() is not None


class _TapsGraph(torch.nn.Module):
    """Image in [0,1] ``(1,3,H,W)`` -> the backbone's taps, in ``taps`` order."""

    def __init__(self, backbone: Backbone, taps: Sequence[str]):
        super().__init__()
        self.backbone = backbone
        self.taps = list(taps)

    def forward(self, x: torch.Tensor):
        feats = self.backbone.forward_taps(self.backbone.normalize(x), self.taps)
        return tuple(feats[t] for t in self.taps)


def weights_digest(backbone: Backbone) -> str:
    h = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class OnnxTrunk:
    """One exported trunk with its ONNX Runtime sessions (one per intra-op thread count, since
    a session's thread pool is fixed when it is created and the indexer changes the count)."""

    def __init__(self, backbone: Backbone, taps: Sequence[str], folder: Path | None = None):
        self.taps = tuple(taps)
        self._backbone = backbone
        key = hashlib.blake2b("|".join([backbone.name, ",".join(self.taps), weights_digest(backbone),
                                        torch.__version__, str(OPSET), str(EXPORT_VERSION)]).encode(),
                              digest_size=10).hexdigest()
        self.path = (folder or cache_dir() / "onnx") / f"{backbone.name}-{key}.onnx"
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        if not self.path.is_file():
            self._export()
        self._check_against_torch()

    def _export(self) -> None:
        import io

        graph = _TapsGraph(self._backbone, self.taps).eval()
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(graph, (torch.rand(_PROBE_SHAPES[0]),), buf, input_names=["image"],
                              output_names=list(self.taps), dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
                              opset_version=OPSET, dynamo=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, lambda f: f.write(buf.getvalue()), durable=False)  # a cache
        log.info("exported %s taps %s for ONNX Runtime to %s", self._backbone.name, self.taps, self.path)

    def _check_against_torch(self) -> None:
        graph = _TapsGraph(self._backbone, self.taps).eval()
        for shape in _PROBE_SHAPES:
            x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
            with torch.inference_mode():
                want = [t.numpy() for t in graph(x)]
            got = self.run(x.numpy())
            for tap, a, b in zip(self.taps, want, got):
                err = float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-12)) if a.shape == b.shape else np.inf
                if err > MAX_RELATIVE_ERROR:
                    raise RuntimeError(f"the ONNX export of {self._backbone.name} differs from PyTorch on tap "
                                       f"{tap} at input {shape[2]}x{shape[3]} (relative error {err:.2g})")

    def _session(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                self._sessions[threads] = ort.InferenceSession(str(self.path), opts,
                                                               providers=["CPUExecutionProvider"])
            return self._sessions[threads]

    def run(self, images: np.ndarray, threads: int | None = None) -> list[np.ndarray]:
        """``(B,3,H,W)`` float32 in [0,1] -> one array per tap; ``threads``: intra-op threads
        (default: torch's current count, so the indexer's thread plan holds for both runtimes)."""
        session = self._session(threads or torch.get_num_threads())
        return session.run(None, {"image": np.ascontiguousarray(images, dtype=np.float32)})
