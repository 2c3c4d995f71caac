"""Indexing on ONNX Runtime: every worker decodes and describes its own photos (no core waits
for another stage), with the same descriptors and failure records as one-stage-per-thread."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.descriptors.methods import create_method
from engine.indexing.indexer import Indexer, ThreadPlan, plan_threads
from engine.nn.features import FeatureExtractor
from engine.store.catalog import CatalogStore
from tests.conftest import make_photo

pytest.importorskip("onnxruntime")


def test_plan_gives_every_core_a_whole_photo_when_the_network_runs_concurrently():
    assert plan_threads(torch.device("cpu"), cores=4, parallel_describe=True) == ThreadPlan(1, 4, True)
    serial = plan_threads(torch.device("cpu"), cores=4)
    assert not serial.describe_in_workers and serial.torch_threads + serial.decode_workers == 4
    assert not plan_threads(torch.device("cuda"), cores=4, parallel_describe=True).describe_in_workers


def _index(tmp_path, name, folder, extractor, method, **kw):
    cat = CatalogStore(tmp_path / name)
    cat.ensure_method(method.name, method.config.to_dict())
    fid = cat.add_folder(folder)
    idx = Indexer(cat, method, extractor, batch_size=4, **kw)
    report = idx.run([(fid, str(folder))])
    ids, paths, desc = cat.load_descriptors(method.name)
    failures = sorted(p for p, _r in cat.failures())
    cat.close()
    return idx, report, dict(zip(paths, desc)), failures


def test_workers_that_describe_store_what_one_describing_thread_stores(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(9):
        make_photo(k, (200 + 8 * k, 150)).save(folder / f"p{k}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    method = create_method("rmac", {"image_side": 128})
    extractor = FeatureExtractor(device="cpu")
    assert extractor.concurrent
    par, rep_par, desc_par, fail_par = _index(tmp_path, "parallel", folder, extractor, method, decode_workers=3)
    assert par.describe_in_workers and par.torch_threads == 1
    monkeypatch.setattr(FeatureExtractor, "concurrent", property(lambda self: False))
    ser, rep_ser, desc_ser, fail_ser = _index(tmp_path, "serial", folder, extractor, method, torch_threads=1)
    assert not ser.describe_in_workers
    assert rep_par.indexed == rep_ser.indexed == 9 and fail_par == fail_ser and len(fail_par) == 1
    assert desc_par.keys() == desc_ser.keys()
    assert all(np.array_equal(desc_par[p], desc_ser[p]) for p in desc_par)
