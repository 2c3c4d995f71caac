"""Duplicates tab (pytest-qt, offscreen): tiers kept apart, nothing of the similar tier pre-selected,
keyboard review with remembered decisions, apply-to-all with one confirmation, compare view,
safe moves. Uses the Browse tests' indexed collection (4 scenes with 3 copies each, 4 others)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from engine.api import Collection  # noqa: E402
from engine.services.duplicates import DISTINCT, RESOLVED  # noqa: E402
from tests.test_gui_browse import SMALL, WAIT_MS, FakeThumbnails, col, collection_dir, lookalike_home  # noqa: E402,F401


def _duplicates(qtbot, c):
    from gui.duplicates.view import DuplicatesView

    v = DuplicatesView(lambda: c, FakeThumbnails(), None)
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    qtbot.waitUntil(lambda: v.finder is not None and not v.busy(), timeout=WAIT_MS)
    return v


def _scene(path: str) -> str:
    return Path(path).name.split("_")[0].split(".")[0]


def test_tiers_are_kept_apart_and_only_exact_and_near_photos_are_pre_selected(qtbot, col):
    v = _duplicates(qtbot, col)
    near = v.tier_groups("near")
    assert len(near) == 4 and v.tier == "near"
    for g in near:  # each scene with its 75 % copy, its re-encoded copy and its byte copy
        assert len({_scene(p) for p in g.paths}) == 1 and len(g.members) == 4
        assert g.keep.pixels == max(m.pixels for m in g.members)
    assert len(v.checked_paths()) == 12
    for w in v.group_widgets:
        assert not w.cards[0].check.isChecked() and "keep" in w.cards[0].badge.text()
        # Same resolution as its re-encoded copy: the larger file decides (the rule is on the card).
        assert "larger file" in w.cards[0].badge.text()
        assert all(c.check.isChecked() for c in w.cards[1:])
    assert "near-duplicates" in v.overview.text().lower() and "could go" in v.overview.text()
    # Generated scenes look alike to R-MAC: at a loose threshold they are "similar shots".
    v.set_threshold(0.6)
    v.show_tier("similar")
    assert v.tier_groups("similar") and v.group_widgets
    assert v.checked_paths() == []  # never pre-selected
    assert all(not c.is_keep for c in v.cards())
    # The bulk action never includes them.
    from engine.services.duplicates import suggested_moves

    moved = {p for _g, ps in suggested_moves(v.groups) for p in ps}
    assert moved == {p for g in near for p in g.others}
    # The slider only changes the similar tier; the near tier is verified, not thresholded.
    v.slider.setValue(99)
    qtbot.waitUntil(lambda: v.threshold() == 0.99 and len(v.tier_groups("similar")) == 0, timeout=5000)
    assert len(v.tier_groups("near")) == 4


def test_cards_show_the_full_folder_and_the_tab_titles_count_groups(qtbot, col):
    v = _duplicates(qtbot, col)
    card = v.group_widgets[0].cards[1]
    assert card.info.folder in card.facts.text() and os.path.basename(card.info.path) in card.facts.text()
    assert v.tabs.tabText(1).endswith("(4)")


def test_the_calibrated_threshold_is_offered_and_a_users_own_is_kept(qtbot, col, monkeypatch):
    import gui.duplicates.view as dv
    from engine.services.duplicate_threshold import ThresholdChoice

    choice = ThresholdChoice(0.3, True, (0.1, 0.3, 0.5, 0.7))
    monkeypatch.setattr(dv, "duplicate_threshold", lambda c: choice)
    v = _duplicates(qtbot, col)
    assert v.slider.minimum() == 1 and v.slider.value() == 30 and v.threshold_label.text() == "0.30"
    assert "calibrated for rmac" in v.slider.toolTip()
    assert v.finder.config.threshold == 0.3 and v.finder.config.floor == 0.01 and v.finder.config.candidate <= 0.3
    v.slider.setValue(95)
    v.find_duplicates(force=True)
    qtbot.waitUntil(lambda: not v.busy() and v.finder is not None, timeout=WAIT_MS)
    assert v.slider.value() == 95


def test_work_runs_in_a_worker_thread_with_progress_and_a_scope(qtbot, col, collection_dir):
    _cat, photos = collection_dir
    v = _duplicates(qtbot, col)
    v.set_scope(str(photos / "copies"))  # only the copies: 4 groups of 3
    qtbot.waitUntil(lambda: not v.busy() and v._finder_key is not None
                    and v._finder_key[-1] == str(photos / "copies"), timeout=WAIT_MS)
    assert len(v.tier_groups("near")) == 4 and all(len(g.members) == 3 for g in v.tier_groups("near"))
    assert all(Path(p).parent.name == "copies" for g in v.groups for p in g.paths)
    assert v.progress.isHidden()


def _private_collection(tmp_path, collection_dir):
    _cat, photos = collection_dir
    mine = tmp_path / "photos"
    shutil.copytree(photos, mine)
    c = Collection.open(tmp_path / "cat")
    c.add_folder(mine)
    c.index(method="rmac", overrides=SMALL)
    return c, mine


def test_keyboard_review_keeps_and_remembers_not_a_duplicate_across_a_reopen(qtbot, tmp_path, collection_dir):
    c, _mine = _private_collection(tmp_path, collection_dir)
    v = _duplicates(qtbot, c)
    v.review.setFocus()
    assert v.current == 0
    QTest.keyClick(v.review, Qt.Key.Key_N)
    assert v.current == 1 and "#1e88e5" in v.group_widgets[1].styleSheet()
    QTest.keyClick(v.review, Qt.Key.Key_3)  # keep the third photo of group 2
    w = v.group_widgets[1]
    assert [c_.check.isChecked() for c_ in w.cards] == [True, True, False, True] and w.cards[2].is_keep
    target = set(w.group.paths)
    QTest.keyClick(v.review, Qt.Key.Key_X)  # not a duplicate
    assert len(v.tier_groups("near")) == 3 and all(set(g.paths) != target for g in v.groups)
    assert DISTINCT in c.catalog.pair_decisions().values()
    QTest.keyClick(v.review, Qt.Key.Key_R)  # the (new) current group: keep all
    assert len(v.tier_groups("near")) == 2 and RESOLVED in c.catalog.pair_decisions().values()
    c.close()
    c = Collection.open(tmp_path / "cat")
    again = _duplicates(qtbot, c)
    assert len(again.tier_groups("near")) == 2
    assert not any(target <= set(g.paths) for g in again.groups if g.removable)
    c.close()


def test_apply_suggestion_to_all_asks_once_saying_what_moves_where_and_deletes_nothing(qtbot, tmp_path,
                                                                                        collection_dir):
    c, mine = _private_collection(tmp_path, collection_dir)
    before = {p.name: p.read_bytes() for p in mine.rglob("*.jpg")}
    v = _duplicates(qtbot, c)
    dest = tmp_path / "moved"
    dest.mkdir()
    (dest / "scene0_q80.jpg").write_bytes(b"do not overwrite me")
    v.set_destination(str(dest))
    asked = []
    v.confirm = lambda title, text, details: asked.append((text, details)) or False
    assert v.apply_suggestions() == [] and len(asked) == 1
    text, details = asked[0]
    assert f"Move 12 photos to {dest}" in text and "4 near-duplicate groups" in text and "Similar shots are not" in text
    assert len(details) == 12 and all(f"→  {dest}" in d and "(keeps " in d for d in details)
    assert all(os.path.exists(p) for g in v.groups for p in g.paths)  # cancelled: nothing moved
    v.confirm = lambda title, text, details: True
    removed = []
    v.photos_removed.connect(lambda: removed.append(c.catalog.image_count()))
    moved = v.apply_suggestions()
    assert len(moved) == 12
    assert removed == [8]  # told once, after the catalog forgot them (the window's panel re-reads its count)
    assert (dest / "scene0_q80.jpg").read_bytes() == b"do not overwrite me"
    assert (dest / "scene0_q80 (1).jpg").read_bytes() == before["scene0_q80.jpg"]
    after = {p.name: p.read_bytes() for p in list(mine.rglob("*.jpg")) + list(dest.iterdir())}
    assert sorted(before.values()) == sorted(b for n, b in after.items() if n != "scene0_q80.jpg")
    assert v.tier_groups("near") == [] and c.catalog.image_count() == 8
    assert RESOLVED in c.catalog.pair_decisions().values()  # the moved copies stay resolved
    c.close()


def test_compare_view_zooms_both_photos_together_and_flickers(qtbot, col):
    v = _duplicates(qtbot, col)
    g = v.group_widgets[0]
    g.cards[2].compare_btn.click()
    cmp_ = v.compare
    assert v.stack.currentWidget() is cmp_ and cmp_.paths == (g.cards[0].info.path, g.cards[2].info.path)
    left, right = cmp_.left, cmp_.right
    ev = QWheelEvent(QPointF(50, 50), QPointF(50, 50), QPoint(0, 0), QPoint(0, 120), Qt.MouseButton.NoButton,
                     Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    left.wheelEvent(ev)
    assert cmp_.shared.zoom > 1
    # Both show the same part: the same fraction of their photo at the same place.
    rl, rr = left.image_rect(), right.image_rect()
    assert abs(rl.width() / left.width() - rr.width() / right.width()) < 0.05 or rl.width() > left.width()
    cmp_.flicker.setChecked(True)
    assert not right.isVisibleTo(cmp_) and cmp_.timer.isActive()
    first = left.pixmap
    cmp_.swap()
    assert left.pixmap is not first and "[B]" in cmp_.left_label.text()
    QTest.keyClick(cmp_, Qt.Key.Key_Escape)
    assert v.stack.currentWidget() is v.review and not cmp_.timer.isActive()


def test_keep_rules_are_adjustable_shown_on_the_card_and_stored(qtbot, tmp_path, collection_dir):
    from engine.services.duplicates import KEEP_RULES, KeepRules, load_keep_rules
    from gui.duplicates.keep_rules import KeepRulesDialog

    c, mine = _private_collection(tmp_path, collection_dir)
    v = _duplicates(qtbot, c)
    rules = KeepRules(order=("folder",) + tuple(r for r in KEEP_RULES if r != "folder"), folders=(str(mine / "copies"),))
    v.set_keep_rules(rules)
    qtbot.waitUntil(lambda: not v.busy() and v.finder is not None and v.finder.config.keep == rules, timeout=WAIT_MS)
    for w in v.group_widgets:
        # In copies/ now: the byte copy (the q80 and 75 % copies there are smaller files).
        assert Path(w.group.keep.path).name.endswith("_same.jpg") and not w.cards[0].check.isChecked()
        assert "larger file" in w.cards[0].badge.text()
    assert load_keep_rules(c.catalog) == rules
    dlg = KeepRulesDialog(rules)
    qtbot.addWidget(dlg)
    assert dlg.rules() == rules  # what the dialog shows is what it gives back
    c.close()
