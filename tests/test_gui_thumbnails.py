"""Thumbnails: the Qt-free disk cache (engine.imaging.thumbnails) and the GUI's ThumbnailProvider."""
from __future__ import annotations

import os

import pytest

from conftest import make_photo
from engine.errors import ImageLoadError
from engine.imaging.thumbnails import bucket_for, cache_path, load_thumbnail


@pytest.fixture(autouse=True)
def lookalike_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))


def test_thumbnail_is_cached_on_disk_and_keyed_by_mtime_and_size(tmp_path):
    p = tmp_path / "a.jpg"
    make_photo(1, (640, 480)).save(p, quality=90)
    thumb = load_thumbnail(p, 150)
    assert thumb.size == (256, 192)  # bucket 256, aspect kept
    entry = cache_path(p, 150)
    assert entry.is_file() and "thumbnails" in str(entry)
    assert cache_path(p, 200) == entry  # same bucket, same entry
    make_photo(2, (640, 480)).save(p, quality=70)  # edited: other size and mtime
    os.utime(p, ns=(1, 2_000_000_000))
    assert cache_path(p, 150) != entry
    load_thumbnail(p, 150)
    assert cache_path(p, 150).is_file()


def test_a_damaged_cache_entry_is_decoded_again(tmp_path):
    p = tmp_path / "a.png"
    make_photo(3, (200, 100)).save(p)
    load_thumbnail(p, 100)
    entry = cache_path(p, 100)
    entry.write_bytes(b"garbage")
    assert load_thumbnail(p, 100).size == (128, 64)
    assert entry.read_bytes()[:2] == b"\xff\xd8"  # rewritten as a JPEG


def test_small_images_are_never_enlarged_and_bad_files_raise_a_reason(tmp_path):
    p = tmp_path / "small.png"
    make_photo(4, (60, 40)).save(p)
    assert load_thumbnail(p, 500).size == (60, 40)
    assert bucket_for(10) == 128 and bucket_for(1000) == 512
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_thumbnail(bad, 128)
    with pytest.raises(ImageLoadError, match="no longer exists"):
        load_thumbnail(tmp_path / "gone.jpg", 128)


def test_provider_returns_none_while_loading_then_the_pixmap_after_ready(qtbot, tmp_path):
    from gui.thumbnails import ThumbnailProvider

    p = str(tmp_path / "a.jpg")
    make_photo(5, (320, 240)).save(p)
    bad = str(tmp_path / "b.jpg")
    with open(bad, "wb") as fh:
        fh.write(b"not an image")
    tp = ThumbnailProvider()
    failures = []
    tp.failed.connect(lambda path, reason: failures.append((path, reason)))
    with qtbot.waitSignals([tp.ready, tp.ready], timeout=60000):
        assert tp.request(p, 100) is None
        assert tp.request(bad, 100) is None
    pix = tp.request(p, 100)
    assert pix is not None and (pix.width(), pix.height()) == (100, 75)
    broken = tp.request(bad, 100)
    assert broken is not None and tp.error(bad) and failures[0][0] == bad
    assert tp.pending() == 0


def test_ten_thousand_results_only_decode_the_visible_thumbnails(qtbot, tmp_path):
    from PySide6.QtCore import QSize
    from PySide6.QtWidgets import QListView

    from gui.search.results_model import ResultItem, ResultsModel
    from gui.thumbnails import ThumbnailProvider

    p = tmp_path / "a.jpg"
    make_photo(6, (64, 48)).save(p)
    tp = ThumbnailProvider()
    asked: set[str] = set()
    real_request = tp.request

    def counting(path, size):
        asked.add(path)
        return real_request(path, size)

    tp.request = counting
    model = ResultsModel(tp)
    model.set_results([ResultItem(f"{p}.{i}" if i else str(p), 1 - i / 1e5, i + 1) for i in range(10_000)], None)
    view = QListView()
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setUniformItemSizes(True)
    view.setGridSize(QSize(100, 100))
    view.setModel(model)
    view.resize(420, 320)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    view.grab()
    assert 0 < len(asked) < 100  # a screenful, not 10,000
    view.scrollToBottom()
    view.grab()
    assert f"{p}.9999" in asked and len(asked) < 200
    tp.wait_idle()
