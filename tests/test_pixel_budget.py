"""Decode memory is bounded by pixels in flight: photos whose pixels together exceed the
budget wait for each other, small ones decode side by side, and one over the budget still
goes (alone)."""
from __future__ import annotations

import threading
import time

from engine.indexing.pixel_budget import PixelBudget


def _run_concurrently(budget: PixelBudget, sizes: list[int]) -> int:
    """Hold each size in its own thread for a moment; the most threads holding at once."""
    holding, most, lock = [0], [0], threading.Lock()

    def job(n):
        with budget.hold(n):
            with lock:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            time.sleep(0.05)
            with lock:
                holding[0] -= 1

    threads = [threading.Thread(target=job, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert budget.in_flight == 0
    return most[0]


def test_two_photos_over_the_budget_never_decode_at_once():
    budget = PixelBudget(limit=200)
    assert _run_concurrently(budget, [150, 150, 150]) == 1
    assert budget.peak == 150


def test_small_photos_share_the_budget():
    budget = PixelBudget(limit=200)
    assert _run_concurrently(budget, [12] * 8) == 8


def test_a_photo_bigger_than_the_budget_still_goes_alone():
    budget = PixelBudget(limit=100)
    assert _run_concurrently(budget, [500, 10]) == 1 and budget.peak == 500


def test_the_indexer_holds_each_photos_pixels_while_it_decodes(tmp_path):
    from engine.descriptors.methods import create_method
    from engine.indexing.indexer import Indexer
    from engine.nn.features import FeatureExtractor
    from engine.store.catalog import CatalogStore
    from tests.conftest import make_photo

    folder = tmp_path / "photos"
    folder.mkdir()
    for k, size in enumerate([(400, 300), (300, 200), (640, 480)]):
        make_photo(k, size).save(folder / f"p{k}.jpg")
    cat = CatalogStore(tmp_path / "cat")
    method = create_method("mac", {"image_side": 96})
    cat.ensure_method(method.name, method.config.to_dict())
    fid = cat.add_folder(folder)
    idx = Indexer(cat, method, FeatureExtractor(device="cpu"), decode_workers=3)
    idx.pixel_budget = PixelBudget(limit=640 * 480)  # the largest photo fills it alone
    assert idx.run([(fid, str(folder))]).indexed == 3
    assert idx.pixel_budget.peak <= 640 * 480 and idx.pixel_budget.in_flight == 0
    cat.close()
