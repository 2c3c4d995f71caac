"""A query shows the global ranking first and the re-ranked one when spatial verification has
finished (it takes seconds a query): ``Collection.search(preview=...)`` and the Search tab."""
from __future__ import annotations

import pytest

from engine.api import Collection
# The 12 scene photos indexed with rmac (module scope), and a private LOOKALIKE_HOME per test.
from test_gui import WAIT_MS, indexed_catalog, lookalike_home  # noqa: F401


def test_the_preview_is_the_ranking_without_re_ranking_and_comes_before_the_result(indexed_catalog):
    cat, photos = indexed_catalog
    col = Collection.open(cat, create=False)
    try:
        query = photos / "scene1.jpg"
        seen = []
        final = col.search(query, top=12, rerank="sv+aqe", preview=lambda results: seen.append(list(results)))
        plain = col.search(query, top=12, rerank="none")
        assert len(seen) == 1
        assert [r.path for r in seen[0]] == [r.path for r in plain]
        assert [r.score for r in seen[0]] == pytest.approx([r.score for r in plain])
        assert [r.date for r in seen[0]] == [r.date for r in plain] and seen[0][0].size > 0  # with details
        assert [r.path for r in final][:2] == [str(query), str(photos / "trip" / "scene1_copy.jpg")]
        never = []
        col.search(query, top=12, rerank="none", preview=never.append)
        assert never == []  # nothing to wait for: no preview
    finally:
        col.close()


def test_the_search_tab_shows_the_preview_with_a_note_then_the_final_ranking(qtbot, indexed_catalog, tmp_path):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import QSettings

    from gui.main_window import MainWindow

    cat, photos = indexed_catalog
    w = MainWindow(catalog_dir=str(cat), settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   confirm=False)
    qtbot.addWidget(w)
    w.show()
    notes = []
    w.search.query_previewed.connect(lambda: notes.append((w.search.results.searched_note,
                                                           w.search.query_pane.caption.text(),
                                                           w.search.results.model.total())))
    with qtbot.waitSignal(w.search.query_finished, timeout=WAIT_MS):
        w.search.run_query(str(photos / "scene5.jpg"))
    assert len(notes) == 1
    note, caption, total = notes[0]
    assert "Refining the order" in note and caption.endswith("(refining…)") and total == 12
    assert "Refining" not in w.search.results.searched_note
    assert w.search.query_pane.caption.text() == "Query: scene5.jpg"
    assert w.search.results.model.item(1).path == str(photos / "trip" / "scene5_copy.jpg")
    w.close()
