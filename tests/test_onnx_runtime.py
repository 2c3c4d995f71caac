"""The CPU inference path: the trunk exported to ONNX Runtime gives PyTorch's feature maps (to
float rounding), is exported once and reused, refuses a graph that baked its input size in,
and can be turned off."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.nn.backbones import get_backbone
from engine.nn.features import FeatureExtractor
from tests.conftest import make_photo

pytest.importorskip("onnxruntime")
from engine.nn import onnx_trunk  # noqa: E402
from engine.nn.onnx_trunk import MAX_RELATIVE_ERROR, OnnxTrunk  # noqa: E402

TAPS = ("stage5", "head")


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


def test_onnx_feature_maps_equal_pytorch_at_several_input_sizes(onnx_folder, monkeypatch):
    monkeypatch.setattr(onnx_trunk, "cache_dir", lambda: onnx_folder)
    torch_path = FeatureExtractor(device="cpu", runtime="torch")
    onnx_path = FeatureExtractor(device="cpu", runtime="auto")
    images = [make_photo(1, (320, 240)), make_photo(2, (203, 311))]  # landscape and odd portrait
    for side in (160, 257):
        want = torch_path.feature_maps(images, side, TAPS)
        got = onnx_path.feature_maps(images, side, TAPS)
        for w, g in zip(want, got):
            for tap in TAPS:
                assert g[tap].shape == w[tap].shape and g[tap].dtype == torch.float32
                rel = float((g[tap] - w[tap]).abs().max() / w[tap].abs().max())
                assert rel < MAX_RELATIVE_ERROR, (tap, side, rel)
    assert onnx_path.runtime_description().startswith("ONNX Runtime")
    assert torch_path.runtime_description().startswith("PyTorch")


def test_the_export_is_cached_and_reused(onnx_folder, monkeypatch):
    backbone = get_backbone("efficientnet-lite0-sympad", None, torch.device("cpu"))
    first = OnnxTrunk(backbone, ["head"], folder=onnx_folder)
    exported = []
    monkeypatch.setattr(OnnxTrunk, "_export", lambda self: exported.append(self.path))
    again = OnnxTrunk(backbone, ["head"], folder=onnx_folder)
    assert again.path == first.path and exported == []
    monkeypatch.undo()
    assert OnnxTrunk(backbone, ["stage6"], folder=onnx_folder).path != first.path  # other taps: other file
    out = again.run(np.zeros((2, 3, 64, 96), np.float32))  # batches too
    assert out[0].shape == (2, backbone.tap_channels["head"], 2, 3)


def test_a_graph_that_bakes_its_input_size_in_is_refused_and_pytorch_runs_it(onnx_folder, monkeypatch):
    # TF "same" padding is computed from the traced input's size, so the exported graph is
    # only right at that size: the probe check must catch it.
    backbone = get_backbone("efficientnet-lite0", None, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        OnnxTrunk(backbone, ["stage5"], folder=onnx_folder)
    monkeypatch.setattr(onnx_trunk, "cache_dir", lambda: onnx_folder)
    fe = FeatureExtractor("efficientnet-lite0", device="cpu")
    img = make_photo(3, (200, 150))
    got = fe.feature_maps([img], 160, ["stage5"])[0]["stage5"]
    want = FeatureExtractor("efficientnet-lite0", device="cpu", runtime="torch").feature_maps([img], 160, ["stage5"])[0]["stage5"]
    assert torch.equal(got, want) and fe.runtime_description().startswith("PyTorch")


def test_lookalike_runtime_torch_turns_onnx_off(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "torch")
    assert not FeatureExtractor(device="cpu").use_onnx
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "auto")
    assert FeatureExtractor(device="cpu").use_onnx


def test_methods_says_what_runs_the_network(monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.setenv("LOOKALIKE_RUNTIME", "auto")
    assert main(["methods"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("the network runs on: ONNX Runtime")
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "torch")
    assert main(["methods"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("the network runs on: PyTorch")


def test_the_window_device_picker_says_what_runs_the_network(qtbot, monkeypatch):
    from PySide6.QtCore import Qt

    from gui.collection.methods import device_combo

    monkeypatch.setenv("LOOKALIKE_RUNTIME", "auto")
    combo = device_combo(None)
    assert combo.itemText(1) == "CPU (ONNX Runtime)" and "ONNX Runtime" in combo.itemText(0)
    assert combo.itemData(1, Qt.ItemDataRole.ToolTipRole).startswith("ONNX Runtime 1.")
    monkeypatch.setenv("LOOKALIKE_RUNTIME", "torch")
    assert device_combo(None).itemText(1) == "CPU (PyTorch)"
