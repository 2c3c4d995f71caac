"""Indexing pipeline performance settings: thread plan, batching and memory format keep results."""
import numpy as np
import torch

from engine.api import Collection, get_extractor
from engine.store.catalog import CatalogStore
from engine.nn.features import FeatureExtractor
from engine.indexing.indexer import Indexer, plan_threads, query_threads, torch_threads
from engine.descriptors.methods import create_method
from tests.conftest import make_photo

SMALL = {"image_side": 128}


def test_thread_plan_never_asks_for_more_threads_than_cores_on_cpu():
    for cores in (1, 2, 4, 8, 16):
        p = plan_threads(torch.device("cpu"), cores)
        assert p.decode_workers >= 1 and p.torch_threads >= 1
        assert p.torch_threads + p.decode_workers <= max(2, cores)
    assert plan_threads(torch.device("cpu"), 2) == plan_threads(torch.device("cpu"), 2).__class__(1, 1)


def test_thread_plan_on_an_accelerator_decodes_on_every_other_core():
    p = plan_threads(torch.device("cuda"), 8)
    assert (p.torch_threads, p.decode_workers) == (1, 7)


def test_torch_threads_block_restores_the_previous_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_query_uses_only_the_cores_that_are_not_busy():
    assert query_threads(cores=2, load=0.0) == 2
    assert query_threads(cores=2, load=2.3) == 1  # indexer or another program busy: one thread
    assert query_threads(cores=8, load=3.0) == 5
    assert query_threads(cores=4, load=40.0) == 1


def test_channels_last_extractor_gives_the_same_feature_maps_as_nchw():
    images = [make_photo(i, (160, 120)) for i in range(2)]
    fast = FeatureExtractor(device="cpu", channels_last=True)
    a = fast.feature_maps(images, 128, ["stage5", "head"])
    fast.backbone.to(memory_format=torch.contiguous_format)
    plain = FeatureExtractor(device="cpu", channels_last=False)
    b = plain.feature_maps(images, 128, ["stage5", "head"])
    fast.backbone.to(memory_format=torch.channels_last)
    for x, y in zip(a, b):
        for tap in ("stage5", "head"):
            assert x[tap].is_contiguous()
            torch.testing.assert_close(x[tap], y[tap], atol=1e-4, rtol=1e-4)


def test_forward_batch_size_does_not_change_descriptors_and_settings_are_restored(tmp_path, photo_folder):
    method = create_method("mac", SMALL)
    ex = get_extractor(method.config.backbone, "cpu")
    threads_before, batch_before = torch.get_num_threads(), ex.batch_size
    descs = []
    for fb in (1, 5):
        cat = CatalogStore(tmp_path / f"cat{fb}")
        cat.ensure_method(method.name, method.config.to_dict())
        fid = cat.add_folder(photo_folder)
        idx = Indexer(cat, method, ex, batch_size=4, forward_batch=fb, torch_threads=1, decode_workers=2)
        report = idx.run([(fid, str(photo_folder))])
        assert report.indexed == 12 and not report.failed
        descs.append(cat.load_descriptors(method.name))
        cat.close()
    assert descs[0][1] == descs[1][1]  # same paths, same order
    np.testing.assert_allclose(descs[0][2], descs[1][2], atol=1e-5)
    assert torch.get_num_threads() == threads_before and ex.batch_size == batch_before


def test_search_index_accepts_an_approximate_index_config(tmp_path, photo_folder):
    from engine.search.ann import AnnConfig
    from engine.search.index import SearchIndex

    col = Collection.open(tmp_path / "cat", device="cpu")
    col.index(method="mac", overrides=SMALL, folders=[str(photo_folder)])
    m = col.method("mac")
    exact = SearchIndex(col.catalog, m)
    approx = SearchIndex(col.catalog, m, ann=AnnConfig(kind="hnsw", pca_dims=8))
    q = exact.raw[3]
    a = [r.path for r in exact.search(q, top=5)]
    b = [r.path for r in approx.search(q, top=5)]
    assert a[0] == b[0] == exact.paths[3]
    assert set(a) == set(b)  # 12 photos: the refined shortlist covers them all
    col.close()


def test_bench_synthetic_photos_vary_and_descriptor_helpers_are_exact():
    from bench.descriptors import DescriptorModel, exact_top_k, recall_at
    from bench.jpegs import make_photo as bench_photo

    a = np.asarray(bench_photo(0, (400, 300), sources=[]), np.float32)
    b = np.asarray(bench_photo(1, (400, 300), sources=[]), np.float32)
    assert a.std() > 20 and np.abs(a - b).mean() > 10  # real content variation, not flat colour
    x = DescriptorModel(64, rank=16, themes=10).sample(300, 1)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    q = x[:4] + 0.01
    truth = np.argsort(-(q @ x.T), axis=1)[:, :7]
    got = exact_top_k(x.astype(np.float16), q, 7, chunk=50)
    assert recall_at(got, truth, 7) >= 6 / 7  # fp16 store may swap near ties
    assert recall_at(truth, truth, 7) == 1.0
