"""Calibrated similarity: 0 / 50 / 100 % anchors, its inverse, "no good match", and the stored fit."""
from __future__ import annotations

import numpy as np
import pytest

from engine.search.score_calibration import (CHANCE_Z, ScoreCalibration, fit_from_scores, score_calibration,
                                      stored_calibration)


def test_fit_puts_0_at_the_typical_pair_50_at_chance_and_100_at_a_copy():
    rng = np.random.default_rng(0)
    pairs = rng.normal(0.4, 0.1, 20000)
    cal = fit_from_scores("m", pairs, copy_score=0.95, photos=200)
    assert cal.typical == pytest.approx(0.4, abs=0.005)
    assert cal.spread == pytest.approx(0.1, abs=0.005)
    assert cal.chance == pytest.approx(cal.typical + CHANCE_Z * cal.spread)
    assert (cal.percent(cal.typical), cal.percent(cal.chance), cal.percent(0.95)) == pytest.approx((0, 50, 100))
    assert cal.percent(-1.0) == 0 and cal.percent(2.0) == 100
    scores = np.linspace(0, 1, 41)
    assert np.all(np.diff(cal.percents(scores)) >= 0)  # monotone
    for p in (0, 10, 50, 75, 100):
        assert cal.percent(cal.score_at(p)) == pytest.approx(p)
    assert not cal.is_good_match(cal.chance - 1e-6) and cal.is_good_match(cal.chance + 1e-6)


def test_a_copy_level_below_chance_still_gives_an_increasing_scale():
    cal = fit_from_scores("m", np.random.default_rng(1).normal(0.05, 0.02, 5000), copy_score=0.06, photos=100)
    assert cal.copy > cal.chance and cal.percent(cal.copy) == 100 and cal.percent(cal.chance) == 50


def test_meaning_states_the_three_anchors():
    cal = ScoreCalibration("rmac", 0.443, 0.703, 0.947, 0.094, 1008)
    text = cal.meaning()
    assert "0.443" in text and "0.703" in text and "0.947" in text and "random" in text


def test_the_fit_of_an_indexed_collection_is_stored_for_its_generation(tmp_path, photo_folder):
    from engine.api import Collection

    col = Collection.open(tmp_path / "cat")
    col.add_folder(photo_folder)
    col.index(method="rmac", overrides={"image_side": 160})
    assert stored_calibration(col, "rmac") is None
    cal = score_calibration(col, "rmac")
    assert cal is not None and cal.photos == 12 and cal.typical < cal.chance < cal.copy
    assert stored_calibration(col, "rmac") == cal
    # A copy of a photo reads as (nearly) a copy; the photo itself as 100 %.
    results = col.search(str(photo_folder / "scene1.jpg"), top=2)
    assert cal.percent(results[0].score) == 100
    assert results[1].path.endswith("scene1_copy.jpg") and cal.percent(results[1].score) > 50
    col.close()
