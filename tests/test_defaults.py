"""What a new collection uses: the default method and re-ranking, in the app, search and eval."""
from __future__ import annotations

from conftest import make_photo
from engine.search import rerank as rerank_module
from engine.api import Collection, list_methods
from engine.descriptors.methods import DEFAULT_METHOD, METHODS
from engine.search.rerank import DEFAULT_RERANK, RERANKERS


def test_the_default_method_and_rerank_are_registered_and_marked():
    assert DEFAULT_METHOD in METHODS and DEFAULT_RERANK in RERANKERS
    entries = {m["name"]: m for m in list_methods()}
    assert [n for n, m in entries.items() if m["default"]] == [DEFAULT_METHOD]
    assert entries[DEFAULT_METHOD]["recommended"]
    cfg = entries[DEFAULT_METHOD]["config"]
    assert tuple(cfg["resolutions"]) == (550, 800, 1050) and cfg["cam"] and cfg["pfa"]
    assert cfg["backbone"] == "efficientnet-lite0-sympad"


def test_search_without_a_rerank_argument_uses_the_default_rerank(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        make_photo(i).save(photos / f"p{i}.jpg", quality=92)
    col = Collection.open(tmp_path / "catalog")
    try:
        col.add_folder(photos)
        col.index(method="rmac", overrides={"image_side": 128})
        calls = []

        def recording(query, database, scores, order, cache=None, context=None):
            calls.append(context.query_path)
            return scores, order

        monkeypatch.setitem(rerank_module.RERANKERS, DEFAULT_RERANK, recording)
        results = col.search(photos / "p1.jpg", method="rmac", top=2)
        assert calls == [str((photos / "p1.jpg").resolve())] and len(results) == 2
        col.search(photos / "p1.jpg", method="rmac", top=2, rerank="none")
        assert len(calls) == 1  # an explicit choice is kept
    finally:
        col.close()


class _Stop(Exception):
    pass


def test_eval_without_method_or_rerank_evaluates_what_a_new_collection_uses(tmp_path, monkeypatch):
    import argparse

    import pytest

    from engine.cli import eval as eval_cli

    for group in ("a", "b"):
        (tmp_path / "ds" / group).mkdir(parents=True)
        for i in range(2):
            make_photo(i + (10 if group == "b" else 0)).save(tmp_path / "ds" / group / f"{i}.jpg")
    seen = []

    def fake_evaluate(ds, name, **kw):
        seen.append((name, kw["rerank"]))
        raise _Stop

    monkeypatch.setattr("engine.evaluation.evaluate", fake_evaluate)
    p = argparse.ArgumentParser()
    eval_cli.add_arguments(p)
    with pytest.raises(_Stop):
        eval_cli.run(p.parse_args([str(tmp_path / "ds"), "--layout", "folders"]))
    assert seen == [(DEFAULT_METHOD, DEFAULT_RERANK)]


def test_methods_listing_shows_measured_numbers_or_says_none_were_measured():
    from engine.cli.methods import measured_summary

    entry = {"measured": {"images_per_s": 2.5, "images_per_s_on": "paris_dev (cpu)",
                          "oxford_dev:image+sv+aqe": 0.6471, "paris_dev:none": 0.982}}
    line = measured_summary(entry)
    assert "oxford_dev:image+sv+aqe 0.647" in line and "paris_dev:none 0.982" in line and "2.5 img/s" in line
    assert "not measured" in measured_summary({"measured": None})
